"""Console logging for the command-line entry points: what happens, in words, no noise."""

from __future__ import annotations

import logging
import os
import warnings


def setup() -> None:
    """Pipeline messages at INFO; third-party chatter (onnxruntime's quantizer logs every
    tensor at INFO, gensim logs dictionary events) only from WARNING up."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("pipeline").setLevel(logging.INFO)
    os.environ.setdefault("TQDM_DISABLE", "1")  # Great Expectations draws a progress bar per suite
    # The ONNX exporter and transformers warn about tracing details that do not affect output.
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
