"""Pipeline stages: path-to-path functions over the library, and their Prefect tasks.

Each stage module defines a plain stage function ``<stage>(model, root=".") -> record``;
the DVC stage runs it through ``python -m tasks <stage> <model>``, the Prefect task wraps
the very same function. Stages never import ``flows``.
"""

import os

# Progress bars from transformers, tqdm and Great Expectations flood CI logs and Prefect's
# log view; tqdm reads this variable when it is first imported, so it is set here.
os.environ.setdefault("TQDM_DISABLE", "1")
