"""The protocol every model kind implements, so that stages never compare kind strings.

A kind adapter turns a catalogue entry into what the stages need: where the model comes
from, its fp32 baseline, the torch model and its export, calibration samples, an
evaluator (aggregate metrics and the headline per example), training for distillation
and fine-tuning, lineage fields and the default eval settings.

Capabilities that import heavy library code (evaluation, training) are methods marked
``@capability(name)``; they import what they use inside the method. A stage declares the
capabilities it calls (``Stage.uses``), and its code set (``tasks/core/codehash``) takes
in exactly those imports: a change to the evaluation code re-runs the stages that
evaluate, not the baseline training. Calling an undeclared capability from a stage is an
error, so a declaration cannot silently fall behind the code.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from model_compression.config import from_dict, load

if TYPE_CHECKING:
    from torch import nn

    from model_compression.evaluate.result import Evaluation
    from tasks.core.project import Project

CAPABILITIES = (
    "baseline", "load", "export", "calibration", "evaluate", "teach", "distill", "finetune", "token_counts",
)  # fmt: skip
_ALLOWED: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar("capabilities", default=None)
F = TypeVar("F", bound=Callable[..., Any])
Evaluate = Callable[[Path, "np.ndarray | None"], "Evaluation"]


class UndeclaredCapability(RuntimeError):
    """A stage called a kind capability it does not list in ``uses``."""


def capability(name: str) -> Callable[[F], F]:
    """Mark a kind method as capability ``name`` (one of ``CAPABILITIES``)."""
    if name not in CAPABILITIES:
        raise ValueError(f"unknown capability {name!r}; known: {list(CAPABILITIES)}")

    def mark(fn: F) -> F:
        @functools.wraps(fn)
        def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
            allowed = _ALLOWED.get()
            if allowed is not None and name not in allowed:
                raise UndeclaredCapability(
                    f"{type(self).__name__}.{fn.__name__} is capability {name!r}, which the running stage "
                    f"does not declare in its uses {sorted(allowed)}"
                )
            return fn(self, *args, **kwargs)

        return checked  # type: ignore[return-value]

    return mark


@contextmanager
def only(uses: frozenset[str]) -> Iterator[None]:
    """Within the block, kind capabilities outside ``uses`` raise ``UndeclaredCapability``."""
    token = _ALLOWED.set(uses)
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def only_test(kind: str, split: str) -> None:
    """Refuse ``split`` for a kind whose evaluation data has no validation split."""
    if split != "test":
        raise ValueError(f"kind {kind!r} has no {split!r} split: its choices are made on its evaluation data")


@dataclass(frozen=True)
class FileRef:
    """A file a catalogue entry names: fetched into ``fetch/<local>`` and checked."""

    role: str
    uri: str
    sha256: str
    local: str


@dataclass(frozen=True)
class DataCheck:
    """The Great Expectations suite that gates a kind's evaluation data: the name of a
    function in ``tasks/gates/expectations.py`` and its arguments (``docs`` is added)."""

    suite: str
    kwargs: dict[str, Any]


_EXPORT = threading.Lock()  # the ONNX exporter keeps global state: one export at a time


@contextmanager
def exporting() -> Iterator[None]:
    """Hold the export lock (search trials export side by side)."""
    with _EXPORT:
        yield


class Kind:
    """The base every kind adapter derives from; ``tasks/kinds/__init__.py`` registers them.

    Attributes:
        name: the ``kind`` value of a catalogue entry.
        recipe_steps: the recipe steps (``model_compression.registry.STEPS``) the kind supports.
        distill_config: ``"module:Class"`` of its ``distill`` section's config, or None.
        teach_config: ``"module:Class"`` of its ``teach`` section's config (the teacher
            cache distillation reads), or None: the kind's distillation runs the teacher itself.
        default_eval: the ``eval`` section an entry gets when it has none (None: required).
        baseline_sections: the entry sections building the baseline reads.
    """

    name = ""
    baseline_sections: tuple[str, ...] = ()
    recipe_steps: frozenset[str] = frozenset()
    distill_config: str | None = None
    teach_config: str | None = None
    default_eval: ClassVar[dict[str, Any] | None] = None

    # -- light: no heavy imports; every stage of the kind may call these -----------------
    def distill_settings(self, project: Project, model: str) -> Any:
        """The validated config of the entry's ``distill`` section."""
        if self.distill_config is None:
            raise ValueError(f"kind {self.name!r} has no distillation")
        return from_dict(load(self.distill_config), project.section(model, "distill") or {}, f"{model}.distill")

    def teach_settings(self, project: Project, model: str) -> Any:
        """The validated config of the entry's ``teach`` section."""
        if self.teach_config is None:
            raise ValueError(f"kind {self.name!r} has no teacher cache")
        return from_dict(load(self.teach_config), project.section(model, "teach") or {}, f"{model}.teach")

    def check(self, project: Project, model: str) -> None:
        """Parse the entry's kind-specific sections, so a malformed one fails before any work."""

    def source(self, project: Project, model: str) -> str:
        """The URI the model (or, for a trained kind, its dataset) comes from."""
        uri = str(project.entry(model).get("source") or "")
        if not uri:
            raise ValueError(f"catalogue entry {model!r} has no 'source' URI")
        return uri

    def files(self, project: Project, model: str) -> list[FileRef] | None:
        """Files fetched one by one with their sha256 (None: the zoo's manifest lists them)."""
        return None

    def baseline_inputs(self, project: Project, model: str) -> dict[str, Path]:
        """Inputs of the baseline stage besides the fetched files (a factory's source file)."""
        return {}

    def data_inputs(self, project: Project, model: str) -> dict[str, Path]:
        """What calibration, evaluation and training read besides the baseline folder."""
        return {"data": project.stage_dir(model, "fetch")}

    def eval_settings(self, project: Project, model: str) -> dict[str, Any]:
        """The effective ``eval`` section."""
        value = project.section(model, "eval")
        if not isinstance(value, dict):
            raise ValueError(f"{model}.eval must be a mapping, got {value!r}")
        return value

    def quality_columns(self, project: Project, model: str) -> list[str]:
        """The quality metrics, headline first."""
        raise NotImplementedError

    def embeds(self, project: Project, model: str) -> bool:
        """Whether the outputs are embeddings (the release suite bounds their norms)."""
        return False

    def skip_reason(self, project: Project, model: str, technique: str) -> str | None:
        """Why ``technique`` cannot apply to this model (its stage records it), or None."""
        if technique == "teach" and self.teach_config is None:
            return f"kind {self.name!r} distils against its teacher directly: no teacher cache"
        return None

    def lineage(self, project: Project, model: str) -> dict[str, Any]:
        """``{"input_model_sha256", "data_sha256"}``: what the published version came from."""
        raise NotImplementedError

    def eval_data_check(self, project: Project, model: str) -> DataCheck:
        """The suite that gates the evaluation data."""
        raise NotImplementedError

    # -- capabilities: each imports its own library code --------------------------------
    def build_baseline(self, project: Project, model: str, out: Path) -> dict[str, Any]:
        raise NotImplementedError

    def load(self, project: Project, model: str) -> nn.Module | None:
        """The fp32 torch model, or None when the kind's techniques work on its ONNX graph."""
        raise NotImplementedError

    def export(self, project: Project, model: str, module: nn.Module, path: Path) -> None:
        raise NotImplementedError

    def calibration(self, project: Project, model: str) -> list[dict[str, np.ndarray]]:
        """Calibration batches (never evaluation data), as ONNX feed dicts."""
        raise NotImplementedError

    def evaluator(self, project: Project, model: str, split: str = "test") -> Evaluate:
        """``evaluate(path, reference outputs or None) -> Evaluation`` on ``split``: "test"
        (what validate reports and gates on) or "validation" (where ``selection_split``
        says the kind has one); data read once."""
        raise NotImplementedError

    def selection_split(self, project: Project, model: str) -> str:
        """The split the pipeline's choices are made on (search picks, int8 accuracy
        control): "validation" where the kind carves one from its training data, else
        "test" (a kind whose evaluation data is all it has; the choice records it)."""
        return "test"

    def teach(self, project: Project, model: str, out: Path) -> dict[str, Any]:
        """Write the teacher's outputs on the training text to ``out`` (``stages/teach.py``),
        for ``distill`` to train against; the stage's summary."""
        raise NotImplementedError

    def distill(
        self, project: Project, model: str, teacher: nn.Module
    ) -> tuple[nn.Module, list[float] | dict[str, Any]]:
        """A smaller student trained against ``teacher``; (student, losses per step, or
        ``{"losses": [...], ...}`` with what else the training measured)."""
        raise NotImplementedError

    def finetune(self, project: Project, model: str, net: nn.Module, teacher: nn.Module, cfg: Any) -> list[float]:
        raise NotImplementedError

    def token_counts(self, project: Project, model: str) -> np.ndarray | None:
        """Occurrences of each vocabulary row in the kind's training text (never held-out
        or evaluation text), or None for a model that reads no tokens."""
        return None


class KindContext:
    """What the library's chain runner asks of a model (``model_compression.chain.ChainContext``),
    answered by its kind: export, calibration samples (read once), fine-tuning, the preset."""

    def __init__(self, kind: Kind, project: Project, model: str, preset: str, teacher: nn.Module | None) -> None:
        self.kind, self.project, self.model = kind, project, model
        self.preset, self.teacher = preset, teacher
        self.kernels: dict[str, Any] | None = None  # the pool's kernel profile: tasks/chains.py sets it
        self._calibration: list[dict[str, np.ndarray]] | None = None

    def export(self, module: nn.Module, path: Path) -> None:
        with exporting():
            self.kind.export(self.project, self.model, module, path)

    def calibration(self) -> list[dict[str, np.ndarray]]:
        if self._calibration is None:
            self._calibration = self.kind.calibration(self.project, self.model)
        return self._calibration

    def finetune(self, net: nn.Module, teacher: nn.Module, cfg: Any) -> list[float]:
        return self.kind.finetune(self.project, self.model, net, teacher, cfg)

    def token_counts(self) -> np.ndarray | None:
        return self.kind.token_counts(self.project, self.model)
