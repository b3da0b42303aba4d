"""Code sets and their hashes, on a small package tree of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core import codehash


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tasks/`` and ``model_compression/`` packages in ``tmp_path``, as codehash's root."""
    files = {
        "model_compression/__init__.py": '"""The library."""\n',
        "model_compression/a.py": "import numpy as np\n\nfrom model_compression import b\n\nX = b.Y + 1\n",
        "model_compression/b.py": "Y = 1\n",
        "model_compression/c.py": "Z = 3\n",
        "model_compression/d.py": "W = 4\n",
        "tasks/__init__.py": "",
        "tasks/stage.py": (
            "from typing import TYPE_CHECKING\n\nfrom model_compression.a import X\n\n"
            "if TYPE_CHECKING:\n    from model_compression import d\n\n\n"
            "def later():\n    from model_compression import c\n    return c.Z\n"
        ),
        "tasks/kind.py": (
            "from tasks.core.base import capability\n\n\nclass K:\n"
            "    @capability('evaluate')\n    def evaluator(self):\n        from model_compression import c\n"
            "        return c.Z\n\n    @capability('load')\n    def load(self):\n        return 1\n"
        ),
        "tasks/core/__init__.py": "",
        "tasks/core/base.py": "def capability(name):\n    return lambda f: f\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(codehash, "ROOT", tmp_path)
    codehash.forget()
    yield tmp_path
    codehash.forget()


def test_a_module_runs_its_top_level_imports_and_parents_not_its_functions_imports(tree: Path):
    assert codehash.closure(["tasks.stage"]) == [
        "model_compression",
        "model_compression.a",
        "model_compression.b",
        "tasks",
        "tasks.stage",
    ]  # c is imported inside a function, d only for type checking; numpy is not the project's


def test_a_capability_adds_the_imports_inside_its_functions(tree: Path):
    assert "model_compression.c" not in codehash.closure(["tasks.kind"])
    assert "model_compression.c" in codehash.closure(["tasks.kind@evaluate"])
    assert "model_compression.c" not in codehash.closure(["tasks.kind@load"])
    with pytest.raises(ValueError, match=r"tasks.kind has no function with @capability\('train'\)"):
        codehash.closure(["tasks.kind@train"])


def test_comments_layout_and_docstrings_do_not_change_a_hash_code_does(tree: Path):
    before = codehash.module_hash("model_compression.a")
    (tree / "model_compression/a.py").write_text(
        '"""Now documented."""\nimport numpy as np  # a comment\n\n\nfrom model_compression import b\nX = b.Y  +  1\n'
    )
    codehash.forget()
    assert codehash.module_hash("model_compression.a") == before
    (tree / "model_compression/a.py").write_text(
        "import numpy as np\n\nfrom model_compression import b\n\nX = b.Y + 2\n"
    )
    codehash.forget()
    assert codehash.module_hash("model_compression.a") != before


def test_files_are_relative_to_the_checkout_and_an_unknown_module_is_named(tree: Path):
    assert codehash.files(["tasks.stage", "tasks"]) == ["tasks/__init__.py", "tasks/stage.py"]
    with pytest.raises(ModuleNotFoundError, match=r"'tasks.nope' is not a module of this project"):
        codehash.closure(["tasks.nope"])
