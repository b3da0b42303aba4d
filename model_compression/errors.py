"""Errors the library raises on purpose, beyond ``ValueError`` for bad input."""


class NotApplicable(ValueError):
    """A technique cannot apply to this model, e.g. an ONNX graph with no weight large
    enough to prune. The pipeline records the reason, skips the technique and goes on."""
