"""Pure model-compression library: functions on tensors, torch modules and ONNX files.

This package never imports Prefect, boto3, DVC or Great Expectations (checked by the
import-linter contract in ``pyproject.toml``); orchestration lives in ``tasks/`` and ``flows/``.
"""

__version__ = "0.1.0"
