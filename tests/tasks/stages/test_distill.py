"""Stages teach and distill on the tiny encoder: the teacher runs once, the student trains
against its cache, and a change of the student's settings re-runs distill alone."""

import json
from pathlib import Path

import yaml

from tasks.core.pipeline import stage
from tasks.core.project import Project
from tests.conftest import run_until


def test_the_teacher_cache_is_reused_when_the_student_changes(tiny_built: Path):
    p = Project.at(tiny_built)
    teach = json.loads((p.data / "tiny-text" / "teach.record.json").read_text())
    distill = json.loads((p.data / "tiny-text" / "distill.record.json").read_text())["summary"]
    assert teach["summary"]["sentences"] > 1000 and teach["summary"]["config"]["hidden"]
    assert teach["summary"]["heldout_sentences"] == 40 and len(teach["summary"]["heldout_sha256"]) == 64
    assert distill["steps"] == 6 and [s for s, _ in distill["val_cosine"]] == [3, 6]
    assert not (p.data / "tiny-text" / ".checkpoints" / "distill.pt").exists()  # removed once the student is out

    params = yaml.safe_load((tiny_built / "params.yaml").read_text())
    params["models"]["tiny-text"]["distill"]["steps"] = 3
    (tiny_built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stage("teach").up_to_date(p, "tiny-text") is not None  # the cache's key holds no student setting
    assert stage("distill").up_to_date(p, "tiny-text") is None
    rerun = run_until(tiny_built, "tiny-text", "distill")
    assert rerun["summary"]["steps"] == 3
    assert json.loads((p.data / "tiny-text" / "teach.record.json").read_text()) == teach  # not rebuilt


def test_a_kind_that_distils_against_its_teacher_directly_skips_the_cache(tiny_built: Path):
    record = json.loads((Project.at(tiny_built).data / "tiny-cnn" / "teach.record.json").read_text())
    assert "no teacher cache" in record["summary"]["skipped"]
