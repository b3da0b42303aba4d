"""The regression gate: tonight's candidates against the version last published for the
same model and pool, not only against fp32.

For every artifact name published both then and now (e.g. ``quantize``), with different
bytes, the previous file is fetched from S3 (sha256-checked) and both are run here:

- quality: the headline metric on the same evaluation examples, from the kind's own
  evaluator (its per-example form), with a paired bootstrap confidence interval of
  (tonight - previous). The gate fails when the whole interval lies
  below ``-quality_margin``: a drop beyond the noise of the eval set.
- latency (this machine's pool only: another pool's hardware is not here): ``rounds``
  alternating rounds of ``runs`` timed calls each, pinned intra-op threads, per-round
  medians; the gate fails when the bootstrap interval of median(tonight)/median(previous)
  lies above ``1 + latency_margin``.

A failing gate raises ``RegressionGateError`` naming the artifact, the metric, the
interval and the previous version; the publish stops before uploading anything.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_compression.config import from_dict
from model_compression.hashing import sha256_file
from model_compression.runtime.isolated import declared_inputs, synthetic_feeds
from model_compression.runtime.session import make_session, measure_latency
from model_compression.stats.bootstrap import Bootstrap, paired, ratio_of_medians
from tasks.core.project import Project

log = logging.getLogger("pipeline")


class RegressionGateError(ValueError):
    """Tonight's candidate is worse than the previously published artifact beyond the noise."""


@dataclass(frozen=True)
class RegressionConfig:
    """params.yaml ``regression``.

    Attributes:
        confidence: two-sided confidence of the bootstrap intervals (default 0.95).
        resamples: bootstrap resamples (default 1000).
        quality_margin: a drop must exceed this, in metric units, with confidence (default 0).
        latency_margin: a slow-down must exceed this fraction with confidence (default 0.1).
        rounds: alternating timing rounds per artifact (default 7).
        runs: timed calls per round, after 3 warm-up calls (default 20).
    """

    confidence: float = 0.95
    resamples: int = 1000
    quality_margin: float = 0.0
    latency_margin: float = 0.1
    rounds: int = 7
    runs: int = 20

    def __post_init__(self) -> None:
        for name, ok in (
            ("confidence", 0 < self.confidence < 1),
            ("resamples", self.resamples >= 100),
            ("quality_margin", self.quality_margin >= 0),
            ("latency_margin", self.latency_margin >= 0),
            ("rounds", self.rounds >= 2),
            ("runs", self.runs >= 1),
        ):
            if not ok:
                raise ValueError(f"RegressionConfig.{name} is out of range: {getattr(self, name)!r}")


def config(project: Project) -> RegressionConfig:
    return from_dict(RegressionConfig, project.params.get("regression") or {}, "regression")


def bootstrap(project: Project) -> Bootstrap:
    """The bootstrap settings of ``regression`` (confidence, resamples), seeded from params:
    what every interval against fp32 is drawn with."""
    cfg = config(project)
    return Bootstrap(cfg.confidence, cfg.resamples, project.seed)


def _timings(a: Path, b: Path, feeds: dict[str, np.ndarray], cfg: RegressionConfig, threads: int) -> tuple[Any, Any]:
    """Per-round p50 (ms) of ``a`` and ``b``, rounds alternating so drift hits both."""
    sa, sb = make_session(a, threads), make_session(b, threads)
    ta, tb = [], []
    for _ in range(cfg.rounds):
        ta.append(measure_latency(sa, feeds, warmup=3, runs=cfg.runs, threads=threads).p50_ms)
        tb.append(measure_latency(sb, feeds, warmup=3, runs=cfg.runs, threads=threads).p50_ms)
    return np.array(ta), np.array(tb)


def check(
    project: Project,
    model: str,
    files: dict[str, Path],
    names: list[str],
    previous: dict[str, Any],
    fetch: Callable[[str, Path], None],
    measure_latency_here: bool,
    batch: int,
    seq_len: int,
) -> dict[str, Any]:
    """Compare each of ``names`` with the same artifact of the ``previous`` manifest;
    ``fetch(name, dest)`` downloads the previous file. Returns the gate's record, or
    raises ``RegressionGateError``."""
    cfg = config(project)
    prev_version = previous.get("version")
    record: dict[str, Any] = {"previous_version": prev_version, "config": cfg.__dict__, "artifacts": {}}
    common = [n for n in names if n in previous.get("artifacts", {})]
    if not common:
        record["note"] = "no artifact in common with the previous version"
        return record
    evaluate = project.kind(model).evaluator(project, model)
    reference = evaluate(files["baseline"], None).outputs  # agreement-style headlines compare to fp32
    failures = []
    with tempfile.TemporaryDirectory(prefix="regression-") as tmp:
        for name in common:
            art = previous["artifacts"][name]
            if art["sha256"] == sha256_file(files[name]):
                record["artifacts"][name] = {"same_bytes": True}
                continue
            old = Path(tmp) / name / "model.onnx"
            fetch(name, old)
            if sha256_file(old) != art["sha256"]:
                log.warning("%s: previous %s of version %s fails its sha256; not compared", model, name, prev_version)
                record["artifacts"][name] = {"previous_corrupt": True}
                continue
            row: dict[str, Any] = {}
            new_q, old_q = evaluate(files[name], reference), evaluate(old, reference)
            if new_q.statistic is not None and old_q.statistic is not None:
                metric, n = new_q.headline, new_q.examples
                iv = paired(new_q.statistic, old_q.statistic, n, cfg.resamples, cfg.confidence, seed=project.seed)
                row["quality"] = {"metric": metric, "delta": iv.as_dict(), "examples": n}
                if iv.high < -cfg.quality_margin:
                    failures.append(
                        f"{name}: {metric} {iv.estimate:+.4f} against version {prev_version} "
                        f"({iv.confidence:.0%} CI [{iv.low:+.4f}, {iv.high:+.4f}] below -{cfg.quality_margin:g})"
                    )
            else:
                row["quality"] = {"note": "no per-example statistic for this task: quality not compared"}
            if measure_latency_here:
                feeds = synthetic_feeds(declared_inputs(files[name]), batch, seq_len, seed=project.seed)
                new_t, old_t = _timings(files[name], old, feeds, cfg, project.threads)
                iv = ratio_of_medians(new_t, old_t, cfg.resamples, cfg.confidence, seed=project.seed)
                row["latency"] = {"ratio": iv.as_dict(), "batch": batch, "rounds": cfg.rounds, "runs": cfg.runs}
                if iv.low > 1 + cfg.latency_margin:
                    failures.append(
                        f"{name}: p50 latency x{iv.estimate:.2f} of version {prev_version} "
                        f"({iv.confidence:.0%} CI [{iv.low:.2f}, {iv.high:.2f}] above {1 + cfg.latency_margin:.2f})"
                    )
            else:
                row["latency"] = {"note": "another pool's hardware: latency compared by its own benchmark"}
            record["artifacts"][name] = row
    record["passed"] = not failures
    if failures:
        raise RegressionGateError(f"regression gate failed for {model}: " + "; ".join(failures))
    log.info("%s: regression gate passed against version %s (%s)", model, prev_version, ", ".join(common))
    return record
