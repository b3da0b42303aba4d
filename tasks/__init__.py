"""Pipeline stages: path-to-path functions over the library, and their Prefect tasks.

Each stage module defines a plain stage function ``<stage>(model, root=".") -> record``;
the DVC stage runs it through ``python -m tasks <stage> <model>``, the Prefect task wraps
the very same function. Stages never import ``flows``.
"""

import os
from pathlib import Path

from tasks.core import isa

# Progress bars from transformers, tqdm and Great Expectations flood CI logs and Prefect's
# log view; tqdm reads this variable when it is first imported, so it is set here.
os.environ.setdefault("TQDM_DISABLE", "1")

# Kernel-ISA pins are read when torch and NumPy load: an entry point (python -m tasks, the
# flows) sets them from params.yaml before either does; later, a pinned stage runs in a child.
isa.pin_at_start(Path.cwd())
