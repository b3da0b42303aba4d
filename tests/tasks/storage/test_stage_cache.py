"""The S3 stage cache against a real SeaweedFS: built on one machine, fetched on another."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.core.pipeline import stage
from tasks.core.project import Project
from tasks.core.stage import Stage, read_record
from tasks.storage import S3_UP_ENV, stage_cache
from tasks.storage import s3 as s3io

MODEL, STAGES = "tiny-cnn", ("zoo", "fetch", "baseline")


@pytest.fixture
def machine_a(tiny_project: Path) -> Path:
    """The tiny project with a stage-cache bucket of its own."""
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["s3"]["cache_bucket"] = params["s3"]["publish_bucket"].replace("-published", "-cache")
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tiny_project


def another_machine(a: Path, root: Path) -> Path:
    """A clone of ``a``'s project with nothing built: the same params.yaml, no ``data/``."""
    root.mkdir()
    shutil.copy(a / "params.yaml", root / "params.yaml")
    return root


def build(root: Path) -> dict[str, dict[str, Any]]:
    with s3io.available(Project.at(root)):
        return {name: stage_cache.run(stage(name), MODEL, root) for name in STAGES}


@pytest.fixture
def bodies_run(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The stages whose runner was called (a fetched stage never reaches it)."""
    ran: list[str] = []
    real = Stage.run

    def counted(self: Stage, model: str, root: str | Path = ".") -> dict[str, Any]:
        ran.append(self.name)
        return real(self, model, root)

    monkeypatch.setattr(Stage, "run", counted)
    return ran


def test_a_stage_built_anywhere_is_fetched_verified_and_never_built_again(machine_a: Path, tmp_path: Path, bodies_run):
    built = build(machine_a)
    assert bodies_run == list(STAGES) and not any("fetched_from" in r for r in built.values())
    bodies_run.clear()
    b = another_machine(machine_a, tmp_path / "b")
    fetched = build(b)
    assert bodies_run == []  # no stage body ran on machine b
    for name in STAGES:
        assert fetched[name]["key"] == built[name]["key"]
        assert fetched[name]["outputs"] == built[name]["outputs"]  # the same bytes, sha256 by sha256
        assert fetched[name]["fetched_from"].startswith("s3://")
        assert read_record(Project.at(b).stage_dir(MODEL, name)) == fetched[name]  # committed as a local output
    assert stage("baseline").up_to_date(Project.at(b), MODEL) is not None


def test_a_cached_output_that_does_not_check_out_is_built_instead(
    machine_a: Path, tmp_path: Path, bodies_run, caplog: pytest.LogCaptureFixture
):
    built = build(machine_a)
    project = Project.at(machine_a)
    settings = s3io.S3Settings.from_project(project)
    with s3io.available(project) as (s3, _):
        key = built["fetch"]["key"]
        record = s3io.get_bytes(s3, settings, settings.cache_bucket, f"{stage_cache.prefix(key)}/record.json")
        tar = yaml.safe_load(record)["tar"]  # JSON is YAML
        s3io.put_bytes(s3, settings, settings.cache_bucket, f"{stage_cache.prefix(key)}/{tar}", b"not a tar")
    bodies_run.clear()
    b = another_machine(machine_a, tmp_path / "b")
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        again = build(b)
    assert bodies_run == ["fetch"]  # zoo and baseline fetched; the damaged fetch output built here
    assert "is not the tar its record names; building" in caplog.text
    assert again["fetch"]["outputs"] == built["fetch"]["outputs"] and "fetched_from" not in again["fetch"]
    assert not list(Project.at(b).stage_dir(MODEL, "fetch").parent.glob("*.partial-*"))


def test_the_cache_is_off_where_s3_was_not_made_available(machine_a: Path, bodies_run, monkeypatch):
    monkeypatch.delenv(S3_UP_ENV, raising=False)
    assert stage_cache.settings_if_on(Project.at(machine_a)) is None
    with s3io.available(Project.at(machine_a)):
        assert stage_cache.settings_if_on(Project.at(machine_a)) is not None
        monkeypatch.setenv("PIPELINE_STAGE_CACHE", "off")
        assert stage_cache.settings_if_on(Project.at(machine_a)) is None
