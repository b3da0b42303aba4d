"""The live display: stages done per model, the stage running, and a training stage's loss."""

from __future__ import annotations

import os
from pathlib import Path

from tasks.core import logs
from tasks.core import progress as status
from tasks.core.pipeline import ORDER
from tasks.core.project import Project
from tasks.present.live import now_text, progress
from tests.conftest import run_until


def test_progress_counts_the_stages_and_shows_the_training_loss(tiny_project: Path):
    project = Project.at(tiny_project)
    with progress(project, ["tiny-cnn"]) as bars:
        run_until(tiny_project, "tiny-cnn", "baseline")  # zoo, fetch, baseline (which trains the CNN)
    task = bars.tasks[0]
    assert (task.description, task.completed, task.total) == ("tiny-cnn", 3, len(ORDER))
    state = status.read(project.data, "tiny-cnn")
    assert state["stage"] == "baseline" and state["step"] == state["steps"] > 1 and state["loss"] > 0
    assert task.fields["now"] == f"baseline {state['steps']}/{state['steps']} loss {state['loss']:.4f}"
    with progress(project, ["tiny-cnn"]) as bars:  # a later run starts from what is up to date
        pass
    assert bars.tasks[0].completed == 3
    assert os.environ.get(logs.CONSOLE_ENV) is None  # the display gives the console back


def test_a_status_shows_what_runs_and_nothing_when_absent(tmp_path: Path):
    assert status.read(tmp_path, "m") == {} and now_text({}, finished=False) == "waiting"
    with status.stage(tmp_path, "m", "validate"):
        assert now_text(status.read(tmp_path, "m"), finished=False) == "validate"
    assert now_text({"stage": "distill"}, finished=True) == "done"
    try:
        with status.stage(tmp_path, "m", "fetch"):
            raise OSError("checksum mismatch")
    except OSError:
        pass
    assert now_text(status.read(tmp_path, "m"), finished=False) == "failed in fetch"
