"""The console shows the pipeline; third-party warnings and stage detail go to the log file."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.core import logs


@pytest.fixture
def clean_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give the root logger back as it was: the test process shares it with other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.delenv(logs.LOG_FILE_ENV, raising=False)
    monkeypatch.delenv(logs.CONSOLE_ENV, raising=False)
    # an earlier test's setup() may have left logging 'capturing' while pytest has since put
    # its own warnings.showwarning back: start from not capturing, as a fresh process does
    logging.captureWarnings(False)
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    for h in handlers:
        h.filters[:] = [f for f in h.filters if not isinstance(f, logs.ConsoleFilter)]
    root.setLevel(level)
    logging.captureWarnings(False)


def record(name: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "m", None, None)


def test_the_console_shows_the_pipeline_and_errors_only(monkeypatch: pytest.MonkeyPatch):
    shown = logs.ConsoleFilter().filter
    assert shown(record("pipeline", logging.INFO)) and shown(record("pipeline.x", logging.WARNING))
    assert not shown(record("root", logging.WARNING)) and not shown(record("py.warnings", logging.WARNING))
    assert shown(record("onnxruntime", logging.ERROR))
    assert not shown(record("prefect.flow_runs", logging.ERROR))  # the entry point reports the failure itself
    monkeypatch.setenv(logs.CONSOLE_ENV, "quiet")  # a live display owns the terminal
    assert not shown(record("pipeline", logging.INFO)) and shown(record("pipeline", logging.WARNING))


def test_third_party_warnings_go_to_the_log_file_not_the_console(
    clean_logging: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    target = logs.setup(tmp_path / "logs" / "run.log")
    assert target is not None and logs.LOG_FILE_ENV in os.environ
    logging.getLogger("pipeline").info("tiny-cnn/quantize: running")
    logging.warning("Please consider pre-processing before quantization")  # what onnxruntime does
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a tracer warning", UserWarning, stacklevel=1)
    logging.getLogger("onnxruntime.quantization").info("quantizing tensor 17")  # third-party INFO: dropped
    for h in logging.getLogger().handlers:
        h.flush()
    text = target.read_text()
    assert "tiny-cnn/quantize: running" in text and "pre-processing" in text and "a tracer warning" in text
    assert "quantizing tensor 17" not in text
    console = capsys.readouterr().err
    assert "pre-processing" not in console and "a tracer warning" not in console
