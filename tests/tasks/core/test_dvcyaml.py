"""dvc.yaml is written from the stage declarations: its deps are each stage's code set."""

from __future__ import annotations

from pathlib import Path

import yaml

from tasks.core import dvcyaml
from tasks.core.project import Project

REPO = Path(__file__).resolve().parents[3]


def test_the_committed_dvc_yaml_is_what_the_declarations_give():
    current = (REPO / "dvc.yaml").read_text()
    assert current == dvcyaml.render(Project.at(REPO)), "dvc.yaml is stale: run python -m tasks dvc-yaml"


def test_each_stage_depends_on_the_code_it_runs_and_no_other():
    stages = yaml.safe_load(dvcyaml.render(Project.at(REPO)))["stages"]

    def deps(name: str) -> set[str]:
        return set(stages[name]["deps"])

    prune, package = "model_compression/prune/magnitude.py", "model_compression/info/package.py"
    assert prune in deps("prune.fashion-cnn") and prune in deps("search.fashion-cnn")
    assert prune in deps("recipe.fashion-cnn")  # deep-compression prunes
    assert prune not in deps("recipe.minilm")  # drop-in and re-embed: table coding and int8 only
    assert "model_compression/quantize/embedding_tiers.py" in deps("recipe.minilm")
    # the student trains against the teacher cache; the cache never depends on the student's code
    assert "data/minilm/teach" in deps("distill.minilm")
    assert "model_compression/distill/embedding.py" not in deps("teach.minilm")
    assert "teach.fashion-cnn" in stages and "model_compression/distill/teacher_cache.py" not in deps(
        "teach.fashion-cnn"
    )
    assert prune not in deps("baseline.fashion-cnn") and prune not in deps("validate.minilm")
    assert package in deps("package.minilm") and package not in deps("prune.minilm")
    # evaluation code re-runs the stages that evaluate, never the CNN's training
    assert "model_compression/evaluate/images.py" in deps("validate.fashion-cnn")
    assert "model_compression/evaluate/images.py" not in deps("baseline.fashion-cnn")
    assert "model_compression/evaluate/sentence.py" not in deps("validate.fashion-cnn")
    assert "tasks/stages/prune.py" not in deps("quantize.minilm")  # stages never depend on each other's code
    assert {"data/minilm/baseline", "tasks/core/runtime.py"} <= deps("prune.minilm")
    assert stages["quantize.minilm"]["params"] == [
        "models.minilm.eval", "models.minilm.kind", "models.minilm.quantize", "pools", "seed", "threads"
    ]  # fmt: skip
    assert stages["prune.minilm"]["outs"] == [
        {"data/minilm/prune": {"persist": True}},
        {"data/minilm/prune.record.json": {"persist": True}},
    ]


def test_a_section_left_to_its_default_is_tracked_where_the_default_lives(tmp_path: Path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    del params["models"]["fashion-cnn"]["prune"]
    project = Project(REPO)
    object.__setattr__(project, "params", params)  # the repo's code, these params
    stages = dvcyaml.document(project)["stages"]
    assert "defaults.prune" in stages["prune.fashion-cnn"]["params"]
    assert "models.fashion-cnn.prune" not in stages["prune.fashion-cnn"]["params"]
    assert project.section("fashion-cnn", "prune") == params["defaults"]["prune"]
