"""Prefect flows: they only compose the stages of ``tasks``."""

from pathlib import Path

from tasks.core import isa

# before prefect, torch or NumPy load: the flows' own process runs under params.yaml's kernel pins
isa.pin_at_start(Path.cwd())
