"""The parts of a ``custom`` catalogue entry: model format, declared inputs, eval spec.

Every field is checked on construction and an error names it, e.g.
``InputSpec.dtype must be one of [...]``. Build them from params with
``model_compression.registry.from_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

FORMATS = ("onnx", "safetensors", "torchscript", "pt2")
SUFFIXES = {".onnx": "onnx", ".safetensors": "safetensors", ".pt": "torchscript", ".ts": "torchscript", ".pt2": "pt2"}
TASKS = ("classification", "text-embedding", "agreement")
DTYPES = ("float32", "float16", "int64", "int32", "uint8")


def format_of(uri: str, declared: str | None) -> str:
    """The model format: ``declared``, or inferred from the file suffix of ``uri``."""
    if declared is not None:
        if declared not in FORMATS:
            raise ValueError(f"arch.format must be one of {list(FORMATS)}, got {declared!r}")
        return declared
    suffix = PurePosixPath(uri).suffix
    if suffix not in SUFFIXES:
        raise ValueError(
            f"cannot tell the model format of {uri!r} from its suffix {suffix!r}: "
            f"set arch.format to one of {list(FORMATS)}"
        )
    return SUFFIXES[suffix]


def _per_channel(value: float | tuple[float, ...], what: str) -> tuple[float, ...]:
    values = value if isinstance(value, tuple) else (value,)
    if not values or not all(isinstance(v, int | float) for v in values):
        raise ValueError(f"InputSpec.{what} must be a number or a list of numbers, got {value!r}")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class InputSpec:
    """How examples are fed to the model.

    Attributes:
        name: the model's input name (tensor models; default ``"input"``).
        shape: one example's shape without the batch axis, e.g. ``[1, 28, 28]`` or ``[64]``.
        dtype: the input dtype (default float32).
        mean, std: normalization ``(x - mean) / std``; a list gives one value per channel
            (axis 1 of the batch). Images from a folder are scaled to [0, 1] first.
        tokenizer: a Hugging Face tokenizer folder, for text models (then ``name`` and
            ``shape`` are unused: the inputs are ``input_ids``/``attention_mask``).
        max_length: token limit per text (default 128).
    """

    name: str = "input"
    shape: tuple[int, ...] = ()
    dtype: str = "float32"
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    tokenizer: str | None = None
    max_length: int = 128

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"InputSpec.dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.tokenizer is None and not self.shape:
            raise ValueError("InputSpec.shape is required (one example's shape, without the batch axis)")
        if not all(isinstance(d, int) and d > 0 for d in self.shape):
            raise ValueError(f"InputSpec.shape must be positive integers, got {list(self.shape)}")
        if any(s == 0 for s in _per_channel(self.std, "std")):
            raise ValueError("InputSpec.std must not be 0")
        _per_channel(self.mean, "mean")
        if self.max_length < 1:
            raise ValueError(f"InputSpec.max_length must be >= 1, got {self.max_length}")

    @property
    def is_text(self) -> bool:
        return self.tokenizer is not None

    def channel_values(self, what: str) -> tuple[float, ...]:
        return _per_channel(getattr(self, what), what)


@dataclass(frozen=True)
class ModelSpec:
    """The ``arch`` section of a custom entry: what the source file is and how to feed it.

    Attributes:
        format: ``onnx``, ``safetensors``, ``torchscript`` or ``pt2``; default: from the suffix.
        factory: ``package.module:function`` returning the ``nn.Module`` the safetensors
            weights belong to (required for, and only for, ``safetensors``).
        factory_args: keyword arguments of ``factory``.
        input: the declared inputs (``InputSpec``).
        output: the name given to the model's output in the exported ONNX (default ``output``).
    """

    input: InputSpec
    format: str | None = None
    factory: str | None = None
    factory_args: dict[str, Any] = field(default_factory=dict)
    output: str = "output"

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"arch.format must be one of {list(FORMATS)}, got {self.format!r}")
        if self.factory is not None and (":" not in self.factory or self.factory.startswith(":")):
            raise ValueError(f"arch.factory must look like 'package.module:function', got {self.factory!r}")
        if not isinstance(self.factory_args, dict):
            raise ValueError(f"arch.factory_args must be a mapping, got {type(self.factory_args).__name__}")


@dataclass(frozen=True)
class EvalSpec:
    """The ``eval`` section of a custom entry.

    Attributes:
        task: ``classification``, ``text-embedding`` or ``agreement``.
        data: URI (path, ``file://`` or ``s3://``) of the evaluation file: ``.npz`` (arrays
            ``x`` and, for classification, ``y``), ``.parquet`` or ``.csv`` (a ``label``
            column and feature columns, or a ``text`` column), or an image folder with a
            ``labels.csv`` (``file,label``). For text-embedding: a pairs file with columns
            ``text1, text2, score``. Optional for ``agreement``, and for ``text-embedding``
            when a probe file is given (then the probe file is split for calibration).
        sha256: the data file's sha256 (a folder, or an ``s3://`` prefix ending in ``/``:
            ``hashing.sha256_tree``, over its sorted relative paths and file hashes).
        probe: text-embedding only: a labelled sentences file (``text, label``) for a
            linear-probe accuracy.
        probe_sha256: its sha256.
        calibration: URI of a separate calibration file; when absent, ``calibration_split``
            of the examples are split off (seeded) and never evaluated on.
        calibration_sha256: its sha256.
        calibration_split: fraction split off for calibration, in (0, 0.9] (default 0.2).
        samples: agreement without data: examples drawn from the input spec (default 256).
        top_k: the k of top-k accuracy / agreement (default 5).
        batch_size: examples per ONNX call (default 64).
        folds: folds of the text-embedding linear probe (default 5).
    """

    task: str
    data: str | None = None
    sha256: str | None = None
    probe: str | None = None
    probe_sha256: str | None = None
    calibration: str | None = None
    calibration_sha256: str | None = None
    calibration_split: float = 0.2
    samples: int = 256
    top_k: int = 5
    batch_size: int = 64
    folds: int = 5

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"eval.task must be one of {list(TASKS)}, got {self.task!r}")
        if self.task == "text-embedding" and self.data is None and self.probe is None:
            raise ValueError(
                "text-embedding needs eval.data (similarity pairs), eval.probe (labelled sentences) or both"
            )
        if self.data is None and self.task == "classification":
            raise ValueError("eval.data is required for task 'classification' (only 'agreement' can draw samples)")
        for uri, digest, what in (
            (self.data, self.sha256, "sha256"),
            (self.probe, self.probe_sha256, "probe_sha256"),
            (self.calibration, self.calibration_sha256, "calibration_sha256"),
        ):
            if uri is not None and (not isinstance(digest, str) or len(digest) != 64):
                raise ValueError(f"eval.{what} must be the 64-hex-digit sha256 of {uri!r}, got {digest!r}")
        if not 0.0 < self.calibration_split <= 0.9:
            raise ValueError(f"eval.calibration_split must be in (0, 0.9], got {self.calibration_split}")
        for name in ("samples", "top_k", "batch_size", "folds"):
            if getattr(self, name) < 1:
                raise ValueError(f"eval.{name} must be >= 1, got {getattr(self, name)}")

    def files(self) -> dict[str, tuple[str, str]]:
        """``{role: (uri, sha256)}`` of every file this spec reads."""
        out = {}
        for role, uri, digest in (
            ("data", self.data, self.sha256),
            ("probe", self.probe, self.probe_sha256),
            ("calibration", self.calibration, self.calibration_sha256),
        ):
            if uri is not None:
                out[role] = (uri, str(digest))
        return out
