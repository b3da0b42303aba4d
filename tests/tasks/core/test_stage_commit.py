"""A stage and a stopping run: the stage's swap is all or nothing against the clean-up.

Stages run in worker threads while a signal handler runs in the main thread; a stage that
finishes while the handler cleans up must not put its output in place."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tasks.core import stage
from tests.conftest import make_project, tiny_params


def _project(tmp_path: Path, tiny_bert_dir: Path, tiny_fmnist_dir: Path) -> Path:
    return make_project(tmp_path / "project", tiny_params("http://127.0.0.1:9", tiny_bert_dir, tiny_fmnist_dir, "c"))


def _blocking_stage(release: threading.Event, started: threading.Event) -> stage.Stage:
    def body(project, model, out: Path) -> dict:
        (out / "weights.bin").write_bytes(b"x" * 10)
        started.set()
        release.wait(30)
        return {"ok": True}

    body.__module__ = "tasks.stages.fetch"  # the code set must be the project's: borrow a stage's
    return stage.Stage("probe", body=body, inputs=lambda p, m: {}, params=lambda p, m: [])


def test_a_stage_finishing_after_the_stop_is_not_committed(
    tmp_path: Path, tiny_bert_dir: Path, tiny_fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(stage, "_STOPPING", False)
    root = _project(tmp_path, tiny_bert_dir, tiny_fmnist_dir)
    release, started = threading.Event(), threading.Event()
    probe = _blocking_stage(release, started)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            probe.run("tiny-cnn", root)
        except BaseException as e:  # the test inspects it
            errors.append(e)

    worker = threading.Thread(target=work)
    worker.start()
    assert started.wait(30)
    in_flight = stage.stop_commits()  # what the signal handler does first
    assert [p.name.split("-")[0] for p in in_flight] == ["probe.partial"]
    release.set()
    worker.join(30)
    assert len(errors) == 1 and isinstance(errors[0], stage.StageStopped)
    assert "the run is stopping" in str(errors[0])
    out = root / "data/tiny-cnn/probe"
    assert not out.exists() and not stage.record_path(out).exists()
    assert not list(out.parent.glob("probe.partial-*")) and not stage.ACTIVE


def test_a_stage_commits_normally_when_no_stop_came(
    tmp_path: Path, tiny_bert_dir: Path, tiny_fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(stage, "_STOPPING", False)
    root = _project(tmp_path, tiny_bert_dir, tiny_fmnist_dir)
    release, started = threading.Event(), threading.Event()
    release.set()
    record = _blocking_stage(release, started).run("tiny-cnn", root)
    out = root / "data/tiny-cnn/probe"
    assert record["summary"] == {"ok": True} and (out / "weights.bin").read_bytes() == b"x" * 10
    assert stage.record_path(out).is_file() and not stage.ACTIVE
