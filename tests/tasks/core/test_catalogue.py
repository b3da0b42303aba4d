from pathlib import Path

import pytest
import yaml

from tasks.core import catalogue
from tasks.core.project import Project

ENTRY = {
    "kind": "custom",
    "source": {"uri": "/models/a.onnx", "sha256": "ab" * 32},
    "arch": {"input": {"name": "pixels", "shape": [64], "dtype": "float32"}},
    "tolerance": {"accuracy": 0.01},
}
TEXT = """\
# documentation that must survive
seed: 0
catalogue: [a, b]   # what runs
models:
  # the first model
  a: {kind: zoo, source: s3://z/a, tolerance: {x: 1}}

  b:
    kind: zoo     # inline comment
    source: s3://z/b
    tolerance: {x: 1}
"""


def test_the_entry_is_appended_and_every_other_byte_kept():
    new = catalogue.with_entry(TEXT, "digits", ENTRY, {"tolerance": "the default"})
    assert new.startswith(TEXT.replace("[a, b]", "[a, b, digits]"))
    assert new[len(TEXT) + len(", digits") :] == (
        "\n"
        "  digits:\n"
        "    kind: custom\n"
        f"    source: {{uri: /models/a.onnx, sha256: {'ab' * 32}}}\n"
        "    arch: {input: {name: pixels, shape: [64], dtype: float32}}\n"
        "    tolerance: {accuracy: 0.01}  # the default\n"
    )
    parsed = yaml.safe_load(new)
    assert parsed["catalogue"] == ["a", "b", "digits"] and parsed["models"]["digits"] == ENTRY


def test_a_block_catalogue_gains_a_line_and_a_later_section_keeps_its_comment():
    text = "catalogue:\n  - a\nmodels:\n  a: {kind: zoo}\n\n# the next section\nseed: 0\n"
    new = catalogue.with_entry(text, "c", {"kind": "zoo", "source": "s3://z/c"})
    assert new == (
        "catalogue:\n  - a\n  - c\nmodels:\n  a: {kind: zoo}\n\n  c:\n    kind: zoo\n    source: s3://z/c\n"
        "\n# the next section\nseed: 0\n"
    )


@pytest.mark.parametrize("line", ["", "catalogue: []\n", "catalogue: null\n"])
def test_without_a_catalogue_every_model_runs_and_the_line_is_left_alone(line: str):
    text = f"{line}models:\n  a: {{kind: zoo}}\n"
    new = catalogue.with_entry(text, "c", {"kind": "zoo"})
    assert new.startswith(text) and yaml.safe_load(new)["models"]["c"] == {"kind": "zoo"}


@pytest.mark.parametrize("models", ["models: {}  # none yet\n", "models:\n"])
def test_the_first_model_of_a_project(models: str):
    new = catalogue.with_entry(f"seed: 0\n{models}", "c", {"kind": "zoo"})
    assert new == f"seed: 0\n{models.replace(' {}', '')}\n  c:\n    kind: zoo\n"  # the comment kept


def test_a_long_section_is_written_one_field_per_line():
    long = {"task": "classification", "data": "/data/" + "x" * 80 + ".npz", "sha256": "cd" * 32}
    new = catalogue.with_entry(TEXT, "digits", {**ENTRY, "eval": long})
    assert "    eval:\n      task: classification\n      data: /data/x" in new
    assert yaml.safe_load(new)["models"]["digits"]["eval"] == long


def test_a_catalogue_it_cannot_edit_is_an_error_that_says_how_to_write_it():
    with pytest.raises(ValueError, match=r"write it as one line \(catalogue: \[a, b\]\)"):
        catalogue.with_entry("catalogue: [a,\n  b]\nmodels:\n  a: {}\n  b: {}\n", "c", {"kind": "zoo"})


def test_names_must_be_new_and_valid(tmp_path: Path):
    (tmp_path / "params.yaml").write_text(TEXT)
    project = Project.at(tmp_path)
    with pytest.raises(ValueError, match=r"'b' is already in params.yaml"):
        catalogue.check_name(project, "b")
    with pytest.raises(ValueError, match=r"model name 'My_Model' must be lower-case letters"):
        catalogue.check_name(project, "My_Model")


def test_replace_writes_atomically_unless_the_file_changed_meanwhile(tmp_path: Path):
    (tmp_path / "params.yaml").write_text(TEXT)
    new = catalogue.with_entry(TEXT, "c", {"kind": "zoo"})
    with pytest.raises(ValueError, match=r"changed while the entry was being prepared: nothing written"):
        catalogue.replace(tmp_path, TEXT + "# edited\n", new)
    assert (tmp_path / "params.yaml").read_text() == TEXT
    catalogue.replace(tmp_path, TEXT, new)
    assert (tmp_path / "params.yaml").read_text() == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no temporary file left
