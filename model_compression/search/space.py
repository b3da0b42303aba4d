"""The recipe search space: which chains of prune -> factorize -> int8 a search tries.

A recipe is one point of the grid ``sparsity x energy x int8``. Sensitivity scores
(``score/sensitivity.py``) prune the grid before any trial runs: a layer that alone
distorts the model's output more than ``max_layer_distortion`` at a level is left out of
that technique at that level, and a level whose summed distortion over the remaining
layers exceeds ``max_total_distortion`` is dropped from the space. Distortion is
1 - cosine between the perturbed and the fp32 model's outputs (dimensionless, >= 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SearchConfig:
    """A model's ``search`` section of params.yaml.

    Attributes:
        budget_s: wall-clock budget of the trials, seconds (default 600). When it expires
            no new trial starts, trials running stop at their next step, and the search
            returns the best passing trial so far.
        max_trials: the most trials run (default 12), in the order ``candidates`` gives.
        workers: trials run side by side through a Prefect thread task runner (default 2).
        sparsity: magnitude-pruning levels tried; 0 means no pruning.
        energy: SVD energy levels tried (the rank keeps this share of the squared singular
            values); 1 means no factorization.
        int8: whether to try the recipe without and/or with onnxruntime int8 after it.
        student: whether to start from the fp32 model (false) and/or from the distilled
            student of the model's ``distill`` section (true: the student size dimension;
            prune and SVD then work on the student's ONNX graph).
        probe_samples: calibration inputs the sensitivity probe runs (default 16).
        max_layer_distortion: per-layer distortion above which a layer is skipped at a level.
        max_total_distortion: summed distortion above which a level leaves the space.
        latency_runs: timed runs per trial (after 3 warm-up runs) at batch 1.
    """

    budget_s: float = 600.0
    max_trials: int = 12
    workers: int = 2
    sparsity: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7)
    energy: tuple[float, ...] = (1.0, 0.95, 0.9)
    int8: tuple[bool, ...] = (False, True)
    student: tuple[bool, ...] = (False,)
    probe_samples: int = 16
    max_layer_distortion: float = 0.02
    max_total_distortion: float = 0.1
    latency_runs: int = 20

    def __post_init__(self) -> None:
        checks = [
            ("budget_s", self.budget_s > 0, "must be > 0 seconds"),
            ("max_trials", self.max_trials >= 1, "must be >= 1"),
            ("workers", self.workers >= 1, "must be >= 1"),
            ("sparsity", bool(self.sparsity) and all(0 <= s < 1 for s in self.sparsity), "levels must lie in [0, 1)"),
            ("energy", bool(self.energy) and all(0 < e <= 1 for e in self.energy), "levels must lie in (0, 1]"),
            ("int8", bool(self.int8) and all(isinstance(b, bool) for b in self.int8), "must list true and/or false"),
            (
                "student",
                bool(self.student) and all(isinstance(b, bool) for b in self.student),
                "must list true and/or false",
            ),
            ("probe_samples", self.probe_samples >= 1, "must be >= 1"),
            ("max_layer_distortion", self.max_layer_distortion > 0, "must be > 0"),
            ("max_total_distortion", self.max_total_distortion > 0, "must be > 0"),
            ("latency_runs", self.latency_runs >= 1, "must be >= 1"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ValueError(f"SearchConfig.{name} {why}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Recipe:
    """One trial: from the fp32 model (or the distilled ``student``), prune to ``sparsity``,
    factorize at ``energy``, then int8 if ``int8``; the layers in ``prune_skip`` /
    ``factorize_skip`` are left alone (sensitivity)."""

    sparsity: float
    energy: float
    int8: bool
    student: bool = False
    prune_skip: tuple[str, ...] = ()
    factorize_skip: tuple[str, ...] = ()
    predicted_distortion: float = field(default=0.0, compare=False)

    @property
    def name(self) -> str:
        parts = ["student"] if self.student else []
        if self.sparsity > 0:
            parts.append(f"prune{self.sparsity:g}")
        if self.energy < 1:
            parts.append(f"svd{self.energy:g}")
        if self.int8:
            parts.append("int8")
        return "+".join(parts) or "fp32"


# {layer: {level: distortion}} for one technique
Sensitivity = dict[str, dict[float, float]]


def _level_filter(
    sens: Sensitivity | None, level: float, cfg: SearchConfig, technique: str
) -> tuple[tuple[str, ...], float, str | None]:
    """(layers to skip, predicted distortion of the rest, why the level is dropped or None)."""
    if sens is None:
        return (), 0.0, None
    per_layer = {layer: by_level.get(level, 0.0) for layer, by_level in sens.items()}
    skip = tuple(sorted(layer for layer, d in per_layer.items() if d > cfg.max_layer_distortion))
    total = sum(d for layer, d in per_layer.items() if layer not in skip)
    if per_layer and len(skip) == len(per_layer):  # a trial would have nothing to apply it to
        why = (
            f"{technique} at {level:g}: every layer's predicted distortion exceeds max_layer_distortion "
            f"{cfg.max_layer_distortion:g}, so no layer is left to apply it to"
        )
        return skip, total, why
    if total > cfg.max_total_distortion:
        why = (
            f"{technique} at {level:g}: predicted distortion {total:.4f} > max_total_distortion "
            f"{cfg.max_total_distortion:g} even without its {len(skip)} most sensitive layer(s)"
        )
        return skip, total, why
    return skip, total, None


def candidates(
    cfg: SearchConfig,
    prune_sens: Sensitivity | None = None,
    svd_sens: Sensitivity | None = None,
    allow_int8: bool = True,
    student_distortion: float | None = None,
) -> tuple[list[Recipe], list[str]]:
    """The recipes worth trying, most likely to pass first, and why others were dropped.

    Order: predicted distortion ascending, then the more compressing recipe first (int8,
    higher sparsity, lower energy), so a budget cut keeps the safest trials and still
    reaches compressing ones. ``fp32`` (nothing applied) is never a candidate, nor is the
    bare ``student`` (the distill stage's own artifact). A student recipe is predicted at
    the student's own distortion plus the fp32 model's sensitivity at its levels (a rough
    guide: the student's layers differ), with no layer skipped; ``student_distortion``
    None means there is no student to start from.
    """
    dropped: list[str] = []
    prune_levels: dict[float, tuple[tuple[str, ...], float]] = {}
    for s in sorted(set(cfg.sparsity)):
        skip, total, why = _level_filter(prune_sens, s, cfg, "prune") if s > 0 else ((), 0.0, None)
        if why:
            dropped.append(why)
        else:
            prune_levels[s] = (skip, total)
    svd_levels: dict[float, tuple[tuple[str, ...], float]] = {}
    for e in sorted(set(cfg.energy), reverse=True):
        skip, total, why = _level_filter(svd_sens, e, cfg, "svd") if e < 1 else ((), 0.0, None)
        if why:
            dropped.append(why)
        else:
            svd_levels[e] = (skip, total)
    int8 = sorted(set(cfg.int8))
    if not allow_int8 and True in int8:
        dropped.append("int8: the model's quantize section is null")
        int8 = [b for b in int8 if not b]
    students = sorted(set(cfg.student))
    if True in students and student_distortion is None:
        dropped.append("student: the model has no distilled student (its distill stage was skipped)")
        students = [b for b in students if not b]
    out = []
    for st in students:
        for s, (pskip, pd) in prune_levels.items():
            for e, (fskip, fd) in svd_levels.items():
                for q in int8:
                    if st:
                        r = Recipe(s, e, q, True, (), (), pd + fd + float(student_distortion or 0.0))
                    else:
                        r = Recipe(s, e, q, False, pskip, fskip, pd + fd)
                    if r.name not in ("fp32", "student"):
                        out.append(r)
    out.sort(key=lambda r: (round(r.predicted_distortion, 6), not r.int8, -r.sparsity, r.energy))
    if len(out) > cfg.max_trials:
        dropped.append(f"{len(out) - cfg.max_trials} recipe(s) beyond max_trials={cfg.max_trials}")
    return out[: cfg.max_trials], dropped


EPSILON = 1e-12  # metric units: float error, never a real drop (0.75 - 0.72 > 0.03 in binary floating point)


def allowed_drop(spec: float | dict[str, float], baseline: float) -> float:
    """The largest tolerated drop of a metric whose fp32 value is ``baseline``:
    a number is an absolute drop; ``{relative: r}`` is r x |baseline|."""
    if isinstance(spec, dict):
        return float(spec["relative"]) * abs(baseline)
    return float(spec)


def shortfall(drops: dict[str, float], allowed: dict[str, float]) -> tuple[float, list[str]]:
    """How far a candidate misses its tolerances: (summed excess in metric units, one
    sentence per failed constraint). (0, []) means it passes."""
    total, why = 0.0, []
    for metric, limit in allowed.items():
        excess = drops[metric] - limit
        if excess > EPSILON:  # a drop equal to its limit passes, whatever the last bit of either says
            total += excess
            why.append(f"{metric} dropped {drops[metric]:.4f} > tolerance {limit:.4f} (missed by {excess:.4f})")
    return total, why
