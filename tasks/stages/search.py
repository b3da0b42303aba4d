"""Stage ``search``: the best recipe within a tolerance, a wall-clock budget and a trial limit.

1. Sensitivity (``score/sensitivity.py``) of every prunable weight and every Linear layer
   on calibration inputs prunes the grid of ``models.<m>.search`` (``search/space.py``).
2. The remaining recipes run ``workers`` side by side (``tasks/core/parallel.py``: threads,
   or Prefect task runs when a flow runs the stage). Each is a chain prune -> SVD -> int8
   through the one chain runner, from the fp32 model or the distilled student; its ONNX
   file is evaluated with the kind's evaluator against the entry's tolerance, and timed.
   No new trial starts after ``budget_s``; a running one stops at its next step.
3. Every trial is written to ``trials.json``. Among the passing ones the params'
   ``selection`` policy (``search/select.py``) picks ``model.onnx``, which then goes
   through validate, benchmark, package and publish like any other artifact. When none
   passes, ``nearest_miss.onnx`` is kept with the constraint it missed and by how much,
   and nothing of the search is published.

A search stopped by its budget depends on the machine's speed; one that ran every
candidate (``stopped_by`` "exhausted" or "max_trials") is deterministic.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model_compression.chain import probe_forward
from model_compression.config import from_dict
from model_compression.evaluate.result import Evaluation
from model_compression.info.entropy import description_length_bits
from model_compression.prune.magnitude import prunable
from model_compression.runtime.isolated import declared_inputs, synthetic_feeds
from model_compression.runtime.session import make_session, measure_latency
from model_compression.score.sensitivity import Forward, distortion, layer_sensitivity, low_rank_weight, pruned_weight
from model_compression.search.select import select
from model_compression.search.space import Recipe, SearchConfig, candidates
from tasks import chains
from tasks.core import parallel
from tasks.core.project import Project
from tasks.core.skip import skippable
from tasks.core.stage import Stage, write_json
from tasks.evaluation import artifact_row, intervals
from tasks.gates.regression import bootstrap
from tasks.gates.selection import policy
from tasks.gates.tolerance import judge, tolerance
from tasks.kinds.base import Evaluate
from tasks.pools import int8_target, kernel_watch, local_pool, resolve_preset

log = logging.getLogger("pipeline")


class BudgetExpired(RuntimeError):
    """The search's wall-clock budget ran out while this trial was running."""


def search_config(project: Project, model: str) -> SearchConfig:
    cfg: SearchConfig = from_dict(SearchConfig, project.section(model, "search") or {}, f"{model}.search")
    return cfg


@dataclasses.dataclass(frozen=True)
class TrialContext:
    """What every trial of one search shares."""

    project: Project
    model: str
    fp32: nn.Module | None
    base_row: dict[str, Any]
    base: Evaluation  # fp32's: every trial is compared with its outputs and examples
    deadline: float  # time.monotonic() after which trials stop
    workdir: Path
    preset: str
    latency_runs: int
    seq_len: int
    evaluate: Evaluate  # on the kind's selection split: trials are chosen there, never on test

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExpired("budget expired while this trial ran")


# --- sensitivity ---------------------------------------------------------------------------
def student_distortion(
    project: Project, model: str, fp32: nn.Module, cfg: SearchConfig, probe: tuple[Any, Forward]
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
    project: Project, model: str, fp32: nn.Module, cfg: SearchConfig, forward: Forward
) -> tuple[dict[str, dict[float, float]], dict[str, dict[float, float]]]:
    """(prune sensitivity by parameter name, SVD sensitivity by Linear module name)."""
    prune_cfg = chains.config(project, model, "prune")
    svd_cfg = chains.config(project, model, "factorize")
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
    return prune_sens, {name.removesuffix(".weight"): v for name, v in by_param.items()}


# --- one trial -----------------------------------------------------------------------------
def steps_of(project: Project, model: str, recipe: Recipe) -> list[tuple[str, Any]]:
    """The chain a search recipe stands for: prune -> SVD -> int8, each where it applies."""
    steps: list[tuple[str, Any]] = []
    if recipe.sparsity > 0:
        cfg = chains.config(project, model, "prune")
        steps.append(
            chains.prune_step(dataclasses.replace(cfg, sparsity=recipe.sparsity, skip=cfg.skip + recipe.prune_skip))
        )
    if recipe.energy < 1:
        cfg = chains.config(project, model, "factorize")
        steps.append(
            ("factorize", dataclasses.replace(cfg, energy=recipe.energy, skip=cfg.skip + recipe.factorize_skip))
        )
    if recipe.int8:
        steps.append(("int8", chains.config(project, model, "quantize")))
    return steps


def apply_recipe(ctx: TrialContext, recipe: Recipe, folder: Path) -> Path:
    """Write ``recipe`` applied to the fp32 model (or its student's graph) as ONNX in ``folder``."""
    project, model = ctx.project, ctx.model
    dst = folder / "model.onnx"
    on_torch = ctx.fp32 is not None and not recipe.student
    start = project.artifact(model, "distill" if recipe.student else "baseline")
    chains.apply(project, model, steps_of(project, model, recipe), dst, torch_model=ctx.fp32 if on_torch else None,
                 onnx=start, preset=ctx.preset, check=ctx.check)  # fmt: skip
    return dst


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
    try:
        ctx.check()
        path = apply_recipe(ctx, recipe, ctx.workdir / f"{index:03d}")
        ctx.check()
        result = ctx.evaluate(path, ctx.base.outputs)
        metrics = result.metrics
        scored = [dict(ctx.base_row), artifact_row(recipe.name, path, metrics)]
        scored[1]["intervals"] = intervals(result, ctx.base, bootstrap(ctx.project))
        judge(scored, tolerance(ctx.project, ctx.model))
        row.update({k: v for k, v in scored[1].items() if k != "artifact"})
        ctx.check()
        row["p50_ms"] = _latency(ctx, path)
        row["mdl_bits"] = description_length_bits(row["entropy_bound_bytes"], metrics)
        row["status"] = "passed" if row["passed"] else "failed"
        row["file"] = str(path)
    except BudgetExpired as e:
        row.update(status="stopped", reasons=[str(e)])
    except Exception as e:  # one broken recipe never ends the search; it is recorded
        log.warning("%s trial %d (%s) failed: %s", ctx.model, index, recipe.name, e)
        row.update(status="error", reasons=[f"{type(e).__name__}: {e}"])
    row["seconds"] = round(time.monotonic() - t0, 3)
    return row


def run_trials(ctx: TrialContext, recipes: list[Recipe], workers: int) -> tuple[list[dict[str, Any]], str]:
    """Run ``recipes`` ``workers`` at a time until the deadline; returns (one row per
    recipe, in recipe order; why the search stopped)."""
    rows: dict[int, dict[str, Any]] = {}
    queue = list(enumerate(recipes))
    with parallel.executor(workers) as submit:
        running: set[concurrent.futures.Future[Any]] = set()
        while queue or running:
            while queue and len(running) < workers and time.monotonic() < ctx.deadline:
                i, r = queue.pop(0)
                running.add(submit(run_trial, f"trial[{i}]", ctx=ctx, index=i, recipe=r))
            if not running:
                break
            done, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in done:
                row = fut.result()
                rows[row["trial"]] = row
    for i, r in queue:  # never started: the budget ran out first
        rows[i] = {"trial": i, "recipe": r.name, "status": "not-run", "reasons": ["budget expired before it started"]}
    stopped = any(r["status"] in ("stopped", "not-run") for r in rows.values())
    return [rows[i] for i in sorted(rows)], "budget" if stopped else "exhausted"


# --- the stage -----------------------------------------------------------------------------
def pick(rows: list[dict[str, Any]], how: str) -> dict[str, Any] | None:
    """The passing trial the selection policy prefers (smallest, fastest or mdl)."""
    passing = {f"{r['trial']:05d}": r for r in rows if r["status"] == "passed"}
    chosen = {k: {**r, "model_bytes": r["entropy_bound_bytes"]} for k, r in passing.items()}
    name, _ = select(chosen, how)
    return passing[name] if name is not None else None


def nearest_miss(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The evaluated, failing trial that missed its tolerances by the least."""
    failed = [r for r in rows if r["status"] == "failed"]
    return min(failed, key=lambda r: (r["shortfall"], r["trial"])) if failed else None


def _plan(
    project: Project, model: str, cfg: SearchConfig, out: Path
) -> tuple[nn.Module | None, list[Recipe], list[str]]:
    """(fp32 torch model or None, the recipes to try, why others were dropped)."""
    kind = project.kind(model)
    fp32 = kind.load(project, model)
    prune_sens = svd_sens = student = None
    if fp32 is not None:
        probed = probe_forward(kind.calibration(project, model), cfg.probe_samples)  # read and tokenized once
        prune_sens, svd_sens = sensitivities(project, model, fp32, cfg, probed[1])
        student = student_distortion(project, model, fp32, cfg, probed)
        record = {"prune": prune_sens, "svd": svd_sens, "student": student, "metric": "1 - cosine"}
        write_json(out / "sensitivity.json", record)
    quantize = project.section(model, "quantize") is not None
    recipes, dropped = candidates(cfg, prune_sens, svd_sens, allow_int8=quantize, student_distortion=student)
    for why in dropped:
        log.info("%s/search: dropped %s", model, why)
    return fp32, recipes, dropped


def _body(project: Project, model: str, out: Path) -> dict[str, Any]:
    cfg = search_config(project, model)
    if not tolerance(project, model):
        raise ValueError(
            f"models.{model}.search needs models.{model}.tolerance: without a quality metric every "
            "recipe would pass and the search would pick the smallest, however broken"
        )
    t0 = time.monotonic()
    fp32, recipes, dropped = _plan(project, model, cfg, out)
    base, kind = project.artifact(model, "baseline"), project.kind(model)
    split = kind.selection_split(project, model)
    evaluate = kind.evaluator(project, model, split)
    base_eval = evaluate(base, None)
    base_row = artifact_row("baseline", base, base_eval.metrics)
    seq_len = int((project.section(model, "bench") or {}).get("seq_len", 128))
    with tempfile.TemporaryDirectory(prefix=f"search-{model}-") as tmp:
        ctx = TrialContext(
            project, model, fp32, base_row, base_eval, t0 + cfg.budget_s, Path(tmp),
            resolve_preset(local_pool(project)), cfg.latency_runs, seq_len, evaluate,
        )  # fmt: skip
        rows, stopped_by = run_trials(ctx, recipes, cfg.workers)
        if stopped_by == "exhausted" and len(recipes) == cfg.max_trials and any("max_trials" in d for d in dropped):
            stopped_by = "max_trials"
        how = policy(project)
        best, miss = pick(rows, how), nearest_miss(rows)
        if best is not None:
            shutil.copy(best["file"], out / "model.onnx")
        elif miss is not None:
            shutil.copy(miss["file"], out / "nearest_miss.onnx")
    for r in rows:
        r.pop("file", None)
    summary = {
        "stopped_by": stopped_by,
        "budget_s": cfg.budget_s,
        "elapsed_s": round(time.monotonic() - t0, 2),
        "planned": len(recipes),
        "completed": sum(r["status"] in ("passed", "failed") for r in rows),
        "passed": sum(r["status"] == "passed" for r in rows),
        "dropped_by_sensitivity": dropped,
        "selection": how,
        "selected_on": split,  # the split every trial's quality and tolerance was judged on
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
    return {
        k: summary[k] for k in ("stopped_by", "planned", "completed", "passed", "selected_on", "best", "nearest_miss")
    }


def _inputs(project: Project, model: str) -> dict[str, Path]:
    return {
        "baseline": project.stage_dir(model, "baseline"),
        "distill": project.stage_dir(model, "distill"),  # the student recipes start from
        **project.kind(model).data_inputs(project, model),
    }


STAGE = Stage(
    name="search",
    body=skippable(_body, "search"),
    inputs=_inputs,
    params=lambda p, m: [
        "seed",
        "threads",
        "pools",
        "selection",
        "regression",
        "model.kind",
        "model.search",
        "model.tolerance",
        "model.eval",
        "model.prune",
        "model.factorize",
        "model.quantize",
        "model.bench",
    ],
    uses=lambda p, m: ["load", "export", "calibration", "evaluate"],  # calibration: sensitivity, int8
    code=lambda p, m: chains.step_modules("prune", "prune_sensitive", "factorize", "int8"),
    extra=lambda p, m: int8_target(p),
    watches=kernel_watch,
)
