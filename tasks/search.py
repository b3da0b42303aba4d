"""Stage ``search``: the best recipe within a tolerance, a wall-clock budget and a trial limit.

1. Sensitivity (``score/sensitivity.py``) of every prunable weight and every Linear layer
   on calibration inputs prunes the grid of ``models.<m>.search`` (``search/space.py``).
2. The remaining recipes run as Prefect tasks on a thread task runner (``workers`` side by
   side). Each applies prune -> SVD -> int8 to the fp32 model, evaluates the ONNX file with
   the validate stage's own evaluator and tolerance, and times it. No new trial starts
   after ``budget_s``; a running one stops at its next step.
3. Every trial is written to ``trials.json``. Among the passing ones the params'
   ``selection`` policy (smallest, fastest, mdl) picks ``model.onnx``, which then goes
   through validate, benchmark, package and publish like any other artifact. When none
   passes, ``nearest_miss.onnx`` is kept with the constraint it missed and by how much,
   and nothing of the search is published.

A search stopped by its budget depends on the machine's speed; one that ran every
candidate (``stopped_by`` "exhausted" or "max_trials") is deterministic.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import inspect
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote
from torch import nn

from model_compression.factorize.onnx_svd import factorize_onnx
from model_compression.factorize.svd import factorize as svd_factorize
from model_compression.prune.magnitude import prunable
from model_compression.prune.magnitude import prune as magnitude_prune
from model_compression.prune.onnx_magnitude import prune_onnx
from model_compression.registry import SETTINGS, from_dict
from model_compression.runtime.isolated import declared_inputs, synthetic_feeds
from model_compression.runtime.session import make_session, measure_latency
from model_compression.score.sensitivity import distortion, layer_sensitivity, low_rank_weight, pruned_weight
from model_compression.search.space import Recipe, SearchConfig, candidates
from tasks import selection
from tasks.baseline import export, load_fp32
from tasks.compress import calibration_feeds, quantize_to, skippable
from tasks.pools import local_pool, resolve_preset
from tasks.project import Project
from tasks.stage import Stage, write_json
from tasks.validate import artifact_row, evaluator, judge, tolerance

log = logging.getLogger("pipeline")
_EXPORT = threading.Lock()  # the ONNX exporter keeps global state: one export at a time


class BudgetExpired(RuntimeError):
    """The search's wall-clock budget ran out while this trial was running."""


def search_config(project: Project, model: str) -> SearchConfig:
    cfg: SearchConfig = from_dict(SETTINGS["search"], project.entry(model).get("search") or {}, f"{model}.search")
    return cfg


@dataclasses.dataclass(frozen=True)
class TrialContext:
    """What every trial of one search shares (passed to Prefect quoted, never traversed)."""

    project: Project
    model: str
    fp32: nn.Module | None
    base_row: dict[str, Any]
    reference: Any  # the fp32 outputs every trial is compared with
    deadline: float  # time.monotonic() after which trials stop
    workdir: Path
    preset: str
    latency_runs: int
    seq_len: int


# --- sensitivity ---------------------------------------------------------------------------
def probe(project: Project, model: str, n: int) -> Any:
    """(samples, ``forward(module) -> outputs``) on the first ``n`` calibration samples."""
    feeds = calibration_feeds(project, model)
    samples: list[dict[str, torch.Tensor]] = []
    for feed in feeds:
        batch = len(next(iter(feed.values())))
        for i in range(batch):
            samples.append({k: torch.from_numpy(np.asarray(v[i : i + 1])) for k, v in feed.items()})
            if len(samples) >= n:
                break
        if len(samples) >= n:
            break

    def forward(module: nn.Module) -> torch.Tensor:
        wanted = set(inspect.signature(module.forward).parameters)
        outs = []
        for s in samples:
            # keywords where forward names them; a custom factory's forward(x) positionally
            out = module(**s) if set(s) <= wanted else module(*s.values())
            outs.append(out[0] if isinstance(out, tuple) else out)
        return torch.cat([o.reshape(1, -1) for o in outs])

    return samples, forward


def student_distortion(
    project: Project, model: str, fp32: nn.Module, cfg: SearchConfig, probe: tuple[Any, Any]
) -> float | None:
    """1 - cosine of the distilled student's ONNX outputs to fp32's on the ``probe``
    samples; None when the model has no student (distill skipped) or the search does not ask."""
    student = project.artifact(model, "distill")
    if True not in cfg.student or not student.is_file():
        return None
    samples, forward = probe
    session = make_session(student, project.threads)
    outs = [session.run(None, {k: v.numpy() for k, v in s.items()})[0] for s in samples]
    got = torch.cat([torch.from_numpy(np.asarray(o)).reshape(1, -1) for o in outs])
    with torch.no_grad():
        return distortion(got, forward(fp32.eval()))


def sensitivities(
    project: Project, model: str, fp32: nn.Module, cfg: SearchConfig, forward: Any
) -> tuple[dict[str, dict[float, float]], dict[str, dict[float, float]]]:
    """(prune sensitivity by parameter name, SVD sensitivity by Linear module name), with
    ``forward`` from ``probe``."""
    prune_cfg = project.config(model, "prune")
    svd_cfg = project.config(model, "factorize")
    params = [n for n, _ in prunable(fp32, prune_cfg)]
    levels = [s for s in cfg.sparsity if s > 0]
    prune_sens = layer_sensitivity(fp32, params, levels, pruned_weight, forward) if levels else {}
    linears = [n for n, m in fp32.named_modules() if isinstance(m, nn.Linear) and not any(s in n for s in svd_cfg.skip)]
    energies = [e for e in cfg.energy if e < 1]
    by_param = (
        layer_sensitivity(fp32, [f"{n}.weight" for n in linears], energies, low_rank_weight, forward)
        if energies
        else {}
    )
    svd_sens = {name.removesuffix(".weight"): v for name, v in by_param.items()}
    return prune_sens, svd_sens


# --- one trial -----------------------------------------------------------------------------
def _check(ctx: TrialContext) -> None:
    if time.monotonic() > ctx.deadline:
        raise BudgetExpired("budget expired while this trial ran")


def apply_recipe(ctx: TrialContext, recipe: Recipe, folder: Path) -> Path:
    """Write ``recipe`` applied to the fp32 model as ONNX into ``folder``; returns the file."""
    project, model = ctx.project, ctx.model
    prune_cfg = project.config(model, "prune")
    prune_cfg = dataclasses.replace(prune_cfg, sparsity=recipe.sparsity, skip=prune_cfg.skip + recipe.prune_skip)
    svd_cfg = project.config(model, "factorize")
    svd_cfg = dataclasses.replace(svd_cfg, energy=recipe.energy, skip=svd_cfg.skip + recipe.factorize_skip)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fp32.onnx"
    if ctx.fp32 is not None and not recipe.student:
        module = copy.deepcopy(ctx.fp32)
        if recipe.sparsity > 0:
            magnitude_prune(module, prune_cfg)
        _check(ctx)
        if recipe.energy < 1:
            svd_factorize(module, svd_cfg)
        _check(ctx)
        with _EXPORT:
            export(project, model, module, path)
    else:  # the distilled student, or an ONNX-only model: the same techniques on its graph
        shutil.copy(project.artifact(model, "distill" if recipe.student else "baseline"), path)
        if recipe.sparsity > 0:
            prune_onnx(path, folder / "pruned.onnx", prune_cfg)
            path = folder / "pruned.onnx"
        if recipe.energy < 1:
            factorize_onnx(path, folder / "low_rank.onnx", svd_cfg)
            path = folder / "low_rank.onnx"
    _check(ctx)
    if recipe.int8:
        quantize_to(project, model, ctx.preset, folder / "int8.onnx", src=path)
        path = folder / "int8.onnx"
    return path


def _latency(ctx: TrialContext, path: Path) -> float:
    """p50 ms at batch 1, ``project.threads`` intra-op threads."""
    feeds = synthetic_feeds(declared_inputs(path), 1, ctx.seq_len, seed=ctx.project.seed)
    session = make_session(path, ctx.project.threads)
    return measure_latency(session, feeds, warmup=3, runs=ctx.latency_runs).p50_ms


def run_trial(ctx: TrialContext, index: int, recipe: Recipe) -> dict[str, Any]:
    """One trial's row: recipe, status, quality and drops, size, entropy bound, latency.
    Failures are recorded in the row (status ``error`` or ``stopped``), never raised."""
    t0 = time.monotonic()
    row: dict[str, Any] = {
        "trial": index,
        "recipe": recipe.name,
        "sparsity": recipe.sparsity,
        "energy": recipe.energy,
        "int8": recipe.int8,
        "student": recipe.student,
        "prune_skip": list(recipe.prune_skip),
        "factorize_skip": list(recipe.factorize_skip),
        "predicted_distortion": round(recipe.predicted_distortion, 6),
    }
    folder = ctx.workdir / f"{index:03d}"
    try:
        _check(ctx)
        path = apply_recipe(ctx, recipe, folder)
        _check(ctx)
        metrics, _ = evaluator(ctx.project, ctx.model)(path, ctx.reference)
        scored = [dict(ctx.base_row), artifact_row(recipe.name, path, metrics)]
        judge(scored, tolerance(ctx.project, ctx.model))
        row.update({k: v for k, v in scored[1].items() if k != "artifact"})
        _check(ctx)
        row["p50_ms"] = _latency(ctx, path)
        data_bits = metrics.get("test_nll_bits", metrics.get("nll_bits"))
        row["mdl_bits"] = None if data_bits is None else 8 * row["entropy_bound_bytes"] + float(data_bits)
        row["status"] = "passed" if row["passed"] else "failed"
        row["file"] = str(path)
    except BudgetExpired as e:
        row.update(status="stopped", reasons=[str(e)])
    except Exception as e:  # one broken recipe never ends the search; it is recorded
        log.warning("%s trial %d (%s) failed: %s", ctx.model, index, recipe.name, e)
        row.update(status="error", reasons=[f"{type(e).__name__}: {e}"])
    row["seconds"] = round(time.monotonic() - t0, 3)
    return row


trial_task = task(
    run_trial,
    name="search-trial",
    task_run_name="trial[{index}]",
    cache_policy=NO_CACHE,  # a trial's inputs include an in-memory model; nothing to cache
    persist_result=False,
)


def _api_ready() -> None:
    """Reach the Prefect API once from this thread. Outside a flow (``dvc repro``) that
    starts the ephemeral server here; left to the trial threads, two would race to start
    one each and one fails to bind its port."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.api_healthcheck()


def run_trials(ctx: TrialContext, recipes: list[Recipe], workers: int) -> tuple[list[dict[str, Any]], str]:
    """Run ``recipes`` on a Prefect thread task runner, ``workers`` at a time, until the
    deadline; returns (one row per recipe, in recipe order; why the search stopped)."""
    rows: dict[int, dict[str, Any]] = {}
    queue = list(enumerate(recipes))
    _api_ready()
    with ThreadPoolTaskRunner(max_workers=workers) as runner:
        running: dict[concurrent.futures.Future[Any], Any] = {}
        while queue or running:
            while queue and len(running) < workers and time.monotonic() < ctx.deadline:
                i, r = queue.pop(0)
                fut = runner.submit(trial_task, parameters={"ctx": quote(ctx), "index": i, "recipe": r})
                running[fut.wrapped_future] = fut
            if not running:
                break
            done, _ = concurrent.futures.wait(list(running), return_when=concurrent.futures.FIRST_COMPLETED)
            for wrapped in done:
                row = running.pop(wrapped).result()
                rows[row["trial"]] = row
    for i, r in queue:  # never started: the budget ran out first
        rows[i] = {"trial": i, "recipe": r.name, "status": "not-run", "reasons": ["budget expired before it started"]}
    stopped = any(r["status"] in ("stopped", "not-run") for r in rows.values())
    return [rows[i] for i in sorted(rows)], "budget" if stopped else "exhausted"


# --- the stage -----------------------------------------------------------------------------
def pick(rows: list[dict[str, Any]], how: str) -> dict[str, Any] | None:
    """The passing trial the selection policy prefers (smallest, fastest or mdl)."""
    passing = [r for r in rows if r["status"] == "passed"]
    if not passing:
        return None
    key = {"smallest": "size_bytes", "fastest": "p50_ms", "mdl": "mdl_bits"}[how]
    if how == "mdl" and any(r["mdl_bits"] is None for r in passing):
        key = "entropy_bound_bytes"  # no labels to code: the model part alone
    return min(passing, key=lambda r: (r[key], r["trial"]))


def nearest_miss(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The evaluated, failing trial that missed its tolerances by the least."""
    failed = [r for r in rows if r["status"] == "failed"]
    return min(failed, key=lambda r: (r["shortfall"], r["trial"])) if failed else None


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    cfg = search_config(project, model)
    tol = tolerance(project, model)
    if not tol:
        raise ValueError(
            f"models.{model}.search needs models.{model}.tolerance: without a quality metric every "
            "recipe would pass and the search would pick the smallest, however broken"
        )
    t0 = time.monotonic()
    fp32 = load_fp32(project, model)
    prune_sens = svd_sens = student = None
    if fp32 is not None:
        probed = probe(project, model, cfg.probe_samples)  # calibration read and tokenized once
        prune_sens, svd_sens = sensitivities(project, model, fp32, cfg, probed[1])
        student = student_distortion(project, model, fp32, cfg, probed)
        record = {"prune": prune_sens, "svd": svd_sens, "student": student, "metric": "1 - cosine"}
        write_json(out / "sensitivity.json", record)
    quantize = project.entry(model).get("quantize") is not None
    recipes, dropped = candidates(cfg, prune_sens, svd_sens, allow_int8=quantize, student_distortion=student)
    for why in dropped:
        log.info("%s/search: dropped %s", model, why)
    evaluate = evaluator(project, model)
    base = project.artifact(model, "baseline")
    base_metrics, reference = evaluate(base, None)
    base_row = artifact_row("baseline", base, base_metrics)
    bench = project.entry(model).get("bench") or {}
    with tempfile.TemporaryDirectory(prefix=f"search-{model}-") as tmp:
        ctx = TrialContext(
            project, model, fp32, base_row, reference, t0 + cfg.budget_s, Path(tmp),
            resolve_preset(local_pool(project)), cfg.latency_runs, int(bench.get("seq_len", 128)),
        )  # fmt: skip
        rows, stopped_by = run_trials(ctx, recipes, cfg.workers)
        if stopped_by == "exhausted" and len(recipes) == cfg.max_trials and any("max_trials" in d for d in dropped):
            stopped_by = "max_trials"
        how = selection.policy(project)
        best, miss = pick(rows, how), nearest_miss(rows)
        if best is not None:
            shutil.copy(best["file"], out / "model.onnx")
        elif miss is not None:
            shutil.copy(miss["file"], out / "nearest_miss.onnx")
    for r in rows:
        r.pop("file", None)
    elapsed = time.monotonic() - t0
    summary = {
        "stopped_by": stopped_by,
        "budget_s": cfg.budget_s,
        "elapsed_s": round(elapsed, 2),
        "planned": len(recipes),
        "completed": sum(r["status"] in ("passed", "failed") for r in rows),
        "passed": sum(r["status"] == "passed" for r in rows),
        "dropped_by_sensitivity": dropped,
        "selection": how,
        "best": best and {k: best[k] for k in ("trial", "recipe", "size_bytes", "p50_ms", "ratio_vs_fp32")},
        "nearest_miss": None if best or miss is None else {"trial": miss["trial"], "recipe": miss["recipe"],
                                                          "missed": miss["reasons"]},
    }  # fmt: skip
    write_json(out / "trials.json", rows)
    write_json(out / "search.json", summary)
    if best is None:
        why = "; ".join(miss["reasons"]) if miss else "no trial completed"
        log.warning("%s/search: no recipe passed (%s); nearest miss %s: %s", model, stopped_by,
                    miss["recipe"] if miss else "-", why)  # fmt: skip
    else:
        log.info("%s/search: %s of %d trials passed; picked %s (%s)", model, summary["passed"], len(rows),
                 best["recipe"], how)  # fmt: skip
    return {k: summary[k] for k in ("stopped_by", "planned", "completed", "passed", "best", "nearest_miss")}


def _inputs(p: Project, m: str) -> dict[str, Path]:
    inputs = {"baseline": p.stage_dir(m, "baseline"), "distill": p.stage_dir(m, "distill")}  # the student
    if p.kind(m) in ("image-classifier", "custom"):
        inputs["data"] = p.stage_dir(m, "fetch")
    return inputs


def _params(p: Project, m: str) -> dict[str, Any]:
    e = p.entry(m)
    keys = ("search", "tolerance", "eval", "prune", "factorize", "quantize", "distill", "kind", "bench")
    return {
        **{k: e.get(k) for k in keys},
        "seed": p.seed,
        "threads": p.threads,
        "preset": resolve_preset(local_pool(p)),
        "selection": selection.policy(p),
    }


SEARCH = Stage("search", 2, _inputs, _params, skippable(_body, "search"))  # 2: trials scored on WordSim-353 too


def search(model: str, root: str = ".") -> dict[str, Any]:
    """Search ``model``'s recipe space within its tolerance, budget and trial limit."""
    return SEARCH.run(model, root)
