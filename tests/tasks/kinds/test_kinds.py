"""The kind registry and the capability discipline that keeps code sets exact."""

from __future__ import annotations

import pytest

from tasks.core import codehash
from tasks.kinds import KINDS, adapter
from tasks.kinds.base import CAPABILITIES, Kind, UndeclaredCapability, only


def test_every_registered_kind_is_a_kind_with_its_name():
    for name in KINDS:
        kind = adapter(name)
        assert isinstance(kind, Kind) and kind.name == name


def test_an_unknown_kind_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model kind 'speech'; known kinds: \['custom', 'image-classifier'"):
        adapter("speech")


def test_a_capability_outside_the_running_stage_declaration_is_refused(tiny_project):
    from tasks.core.project import Project

    p = Project.at(tiny_project)
    with only(frozenset({"load"})), pytest.raises(UndeclaredCapability, match=r"capability 'evaluate', which the"):
        p.kind("tiny-cnn").evaluator(p, "tiny-cnn")


def test_each_capability_imports_its_own_library_code():
    # the image classifier's evaluation never enters the code set of the stage that trains it
    module = KINDS["image-classifier"].partition(":")[0]
    assert "model_compression.evaluate.images" in codehash.capability_imports(module, "evaluate")
    assert "model_compression.evaluate.images" not in codehash.closure([module, f"{module}@baseline"])
    for name in KINDS:
        module = KINDS[name].partition(":")[0]
        for cap in ("load", "export", "calibration", "evaluate"):
            assert cap in CAPABILITIES
            codehash.capability_imports(module, cap)  # every kind offers the core capabilities
