from pathlib import Path

import pytest
import yaml

from model_compression.hashing import sha256_tree
from tasks import onboard
from tasks.core.project import Project
from tasks.onboard import Missing, Request


def test_flags_are_parsed_or_named():
    assert onboard.parse_shape("1,28,28") == onboard.parse_shape("1x28x28") == onboard.parse_shape("[1, 28, 28]")
    assert onboard.parse_tolerance(["accuracy=0.01", "top5_accuracy=2%", "agreement_to_fp32=interval"]) == {
        "accuracy": 0.01,
        "top5_accuracy": {"relative": 0.02},
        "agreement_to_fp32": "interval",
    }
    assert onboard.parse_numbers("0.5, 0.25,1", "--mean") == (0.5, 0.25, 1.0)
    assert onboard.parse_assignments(["hidden=64", "act=relu"], "--factory-arg") == {"hidden": 64, "act": "relu"}
    with pytest.raises(ValueError, match=r"--shape must be positive integers such as 1,28,28"):
        onboard.parse_shape("1,-2")
    with pytest.raises(ValueError, match=r"--tolerance accuracy: the drop must be a number, N% or 'interval'"):
        onboard.parse_tolerance(["accuracy=nan"])


def _request(byo_files, fmt: str, **fields) -> Request:  # type: ignore[no-untyped-def]
    return Request(name="digits", model=str(byo_files[fmt]), eval=str(byo_files["data"]), **fields)


def test_what_the_file_cannot_say_is_asked_for_when_there_is_a_way(tiny_project: Path, byo_files):
    with pytest.raises(Missing, match=r"a torchscript file does not record its input shape: give --shape") as e:
        onboard.add(tiny_project, _request(byo_files, "torchscript"))
    assert e.value.flag == "--shape"
    asked = []

    def ask(flag: str, question: str, default: str | None) -> str:
        asked.append((flag, default))
        return {"--shape": "64", "--mean": "0", "--std": "16"}[flag]

    added = onboard.add(tiny_project, _request(byo_files, "torchscript", task="agreement"), ask)
    assert asked == [("--shape", None), ("--mean", "0"), ("--std", "1")]
    assert added.entry["arch"] == {"input": {"shape": [64], "std": 16.0}}  # the default mean is left out
    assert added.entry["tolerance"] == {"top1_agreement": 0.02}
    assert ("tolerance", "top1_agreement may drop by 0.02 against fp32 (the default for agreement; "
            "--tolerance METRIC=DROP sets it)") in added.notes  # fmt: skip
    assert ("defaults", "none: params.yaml defaults: requests nothing") in added.notes  # the tiny project has none
    assert Project.at(tiny_project).catalogue() == ["tiny-text", "tiny-cnn", "digits"]


def test_a_text_model_needs_its_tokenizer(tiny_project: Path, byo_files):
    with pytest.raises(Missing, match=r"a text model, whose tokenizer folder is not in the file: give --tokenizer"):
        onboard.add(tiny_project, _request(byo_files, "onnx", task="text-embedding"))  # pairs_spearman: known


def test_files_on_s3_are_read_hashed_and_named_by_their_uri(tiny_project: Path, byo_files):
    from tasks.storage import s3 as s3io

    settings = s3io.S3Settings.from_project(Project.at(tiny_project))
    client = s3io.client(settings)
    s3io.ensure_buckets(client, settings, [settings.publish_bucket])
    bucket = settings.publish_bucket  # unique to the test
    for role in ("onnx", "data"):
        client.upload_file(str(byo_files[role]), bucket, f"team/{byo_files[role].name}")
    model, data = f"s3://{bucket}/team/mlp.onnx", f"s3://{bucket}/team/digits_test.npz"
    before = (tiny_project / "params.yaml").read_bytes()
    with pytest.raises(s3io.S3Error, match=rf"no object at s3://{bucket}/team/gone.npz"):
        onboard.add(tiny_project, Request("digits", model, f"s3://{bucket}/team/gone.npz"))
    assert (tiny_project / "params.yaml").read_bytes() == before
    added = onboard.add(tiny_project, Request("digits", model, data, std=16.0))
    entry = yaml.safe_load((tiny_project / "params.yaml").read_text())["models"]["digits"]
    assert entry == added.entry
    assert entry["source"] == {"uri": model, "sha256": sha256_tree(byo_files["onnx"])}
    assert entry["eval"] == {"task": "classification", "data": data, "sha256": sha256_tree(byo_files["data"])}
    assert entry["arch"] == {"input": {"name": "pixels", "shape": [64], "dtype": "float32", "std": 16.0}}
