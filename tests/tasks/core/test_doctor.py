"""The doctor's runner and its checks of params.yaml, disk and pinned versions."""

import threading
import time
from importlib import metadata
from pathlib import Path

import yaml

from tasks.core import doctor
from tasks.core.doctor import Check, Options, Result
from tests.conftest import make_project, tiny_params


def project(tmp_path: Path, **changes: object) -> Path:
    """The tiny catalogue (nothing on disk behind it: these checks read params.yaml only)."""
    params = tiny_params("http://127.0.0.1:1", tmp_path / "bert", tmp_path / "fmnist", "doctor")
    return make_project(tmp_path / "project", {**params, **changes})


def test_run_keeps_the_order_and_makes_an_error_or_a_hang_one_fail_line():
    release = threading.Event()

    def hangs(opts: Options) -> list[Result]:
        release.wait(30)
        return []

    def breaks(opts: Options) -> list[Result]:
        raise ValueError("no such thing")

    checks = {
        "two": Check(lambda o: [Result("a", True, "fine"), Result("b", False, "bad", "mend it")]),
        "hangs": Check(hangs, timeout_s=0.5),
        "breaks": Check(breaks),
    }
    start = time.monotonic()
    results = doctor.run(checks, Options())
    assert time.monotonic() - start < 3
    release.set()
    assert [(r.name, r.ok) for r in results] == [("a", True), ("b", False), ("hangs", False), ("breaks", False)]
    assert results[2].detail == "did not finish within 0.5 s"
    assert results[3].detail == "could not check: ValueError: no such thing" and results[3].fix


def test_catalogue_passes_then_names_each_broken_entry(tmp_path: Path):
    root = project(tmp_path)
    assert doctor.catalogue(Options(root)) == [Result("catalogue", True, "2 models parse: tiny-text, tiny-cnn")]
    params = yaml.safe_load((root / "params.yaml").read_text())
    del params["models"]["tiny-cnn"]["tolerance"]
    params["models"]["tiny-text"]["recipe"] = ["no-such-recipe"]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    results = doctor.catalogue(Options(root))
    assert [(r.name, r.ok) for r in results] == [("catalogue tiny-text", False), ("catalogue tiny-cnn", False)]
    assert "'no-such-recipe', which is not in recipes" in results[0].detail
    assert "lacks ['tolerance']" in results[1].detail
    assert results[1].fix.startswith("correct models.tiny-cnn in params.yaml")


def test_a_params_file_that_does_not_parse_is_one_fail_line(tmp_path: Path):
    (tmp_path / "params.yaml").write_text("models: {tiny: [unclosed\n")
    [result] = doctor.catalogue(Options(tmp_path))
    assert not result.ok and result.detail.startswith("params.yaml does not load: while parsing")
    [missing] = doctor.catalogue(Options(tmp_path / "nowhere"))
    assert not missing.ok and "no params.yaml in" in missing.detail


def test_disk_fails_below_the_threshold_with_the_fix(tmp_path: Path):
    [enough] = doctor.disk(Options(project(tmp_path / "a", doctor={"min_free_gib": 0.001})))
    assert enough.ok and "needs 0.001 GiB" in enough.detail and not enough.fix
    [short] = doctor.disk(Options(project(tmp_path / "b", doctor={"min_free_gib": 1e9})))
    assert not short.ok and "needs 1e+09 GiB: doctor.min_free_gib" in short.detail
    assert "lower doctor.min_free_gib" in short.fix


def test_pins_name_each_missing_or_other_version(tmp_path: Path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["numpy==0.0.1", "pyyaml", "dvc[s3]>=1"]\n')
    constraints = tmp_path / "constraints.txt"
    packaging = metadata.version("packaging")
    constraints.write_text(
        f"# pins\npackaging=={packaging}\nno-such-dist-xyz==1.0\nnot-here==1; python_version < '3'\n-c other.txt\n"
    )
    [result] = doctor.pins(Options(), [pyproject, constraints])
    numpy = metadata.version("numpy")
    assert result.detail == (
        f"numpy {numpy} is installed, pyproject.toml pins ==0.0.1; "
        "no-such-dist-xyz is not installed (constraints.txt: no-such-dist-xyz==1.0)"
    )
    assert not result.ok and result.fix == f"reinstall the pinned stack: {doctor.REINSTALL}"
    constraints.write_text(f"packaging=={packaging}\n")
    assert doctor.pins(Options(), [constraints]) == [
        Result("pins", True, "the installed versions meet constraints.txt")
    ]
