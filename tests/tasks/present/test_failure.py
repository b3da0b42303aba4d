"""The page of a failed run: the reason first, the earlier report marked as earlier."""

from __future__ import annotations

from pathlib import Path

from tasks.core.project import Project
from tasks.present import failure
from tests.conftest import make_project


def test_a_failed_run_gets_its_reason_on_top_and_a_completed_one_clears_it(tmp_path: Path):
    project = Project.at(make_project(tmp_path, {"models": {}}))
    page = failure.write(project, "cnn", "fetch: checksum mismatch <zoo/cnn.onnx>", "/logs/nightly.log")
    text = page.read_text()
    assert text.index("the run failed") < text.index("checksum mismatch &lt;zoo/cnn.onnx&gt;")  # escaped, on top
    assert "/logs/nightly.log" in text and "from an earlier run" not in text
    earlier = project.stage_dir("cnn", "report") / "report.html"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("<html></html>")
    assert "from an earlier run" in failure.write(project, "cnn", "again").read_text()
    failure.clear(project, "cnn")
    assert not page.exists()
    failure.clear(project, "cnn")  # nothing to clear is fine
