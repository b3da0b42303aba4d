"""The per-model dispatch's refusals, before anything is sent to a work pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.per_model import DispatchConfig, dispatch
from tests.conftest import make_project


def test_a_timeout_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match=r"dispatch.timeout_s must be > 0, got 0"):
        DispatchConfig(timeout_s=0)


def test_dispatch_without_the_stage_cache_is_refused_naming_the_setting(tmp_path: Path):
    """Machines share nothing but S3: without the cache a worker's outputs could not reach this checkout."""
    params = {"models": {}, "s3": {"endpoint_url": "http://127.0.0.1:9", "cache_bucket": None}}
    root = make_project(tmp_path, params)
    with pytest.raises(ValueError, match=r"dispatch needs the S3 stage cache: set s3.cache_bucket in params.yaml"):
        dispatch(["m"], str(root), publish=True, on_busy="wait")
