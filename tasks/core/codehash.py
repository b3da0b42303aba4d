"""The code a stage runs, and its hash: what re-runs a stage when its code changes.

Definition (one for the Prefect tasks, ``python -m tasks`` and the ``deps:`` of
``dvc.yaml``): a stage's *code set* is the closure, under Python's imports, of its entry
points. An entry point is a module (``tasks.stages.prune``), or a module and one of its
capabilities (``tasks.kinds.text_encoder@evaluate``: the functions decorated with
``@capability("evaluate")``). Reaching a module takes in the imports at its top level and
in class bodies (they run when the module is imported) and its parent packages'
``__init__``; reaching a capability takes in the imports inside its functions as well.
Only the project's own packages count; third-party code is pinned by constraints.txt.

Registries name techniques and model kinds as ``"module:attr"`` strings, imported on use,
so a stage's closure holds the techniques its params name and no others.

A module's hash is the sha256 of its syntax tree without docstrings: comments,
formatting and docstrings re-run nothing, any change to code does.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout holding model_compression/ and tasks/
PACKAGES = ("model_compression", "tasks")
# The stage runner itself: how keys are computed and records written, not what a stage
# computes. Its changes re-run nothing; a change of record format bumps stage.RUNNER_VERSION.
# tasks.core.progress only tells the console's live display which stage runs: no output depends on it.
INFRASTRUCTURE = frozenset(
    {"tasks.core.stage", "tasks.core.codehash", "tasks.core.dvcyaml", "tasks.core.logs", "tasks.core.progress"}
)


def module_file(module: str) -> Path | None:
    """The source file of project ``module`` (a package's ``__init__.py``), or None."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _tree(module: str) -> ast.Module:
    path = module_file(module)
    if path is None:
        raise ModuleNotFoundError(f"{module!r} is not a module of this project ({', '.join(PACKAGES)})")
    return ast.parse(path.read_text(), filename=str(path))


def _is_package(module: str) -> bool:
    path = module_file(module)
    return path is not None and path.name == "__init__.py"


def _imported(node: ast.Import | ast.ImportFrom, module: str) -> Iterator[str]:
    """The project modules one import statement in ``module`` loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = module if _is_package(module) else module.rpartition(".")[0]
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    for name in names:
        if module_file(name) is not None:
            yield name


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(module: str) -> set[str]:
    """Imports that run when ``module`` is imported: outside function bodies and outside
    ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(nodes: Iterable[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.update(_imported(node, module))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            elif isinstance(node, ast.If) and _type_checking(node):
                visit(node.orelse)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, []) or [])

    visit(_tree(module).body)
    return found


def _capability(decorator: ast.expr) -> str | None:
    if isinstance(decorator, ast.Call) and decorator.args:
        fn = decorator.func
        name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
        arg = decorator.args[0]
        if name == "capability" and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def capability_imports(module: str, capability: str) -> set[str]:
    """Project modules imported inside the functions of ``module`` that carry
    ``@capability(<capability>)``; an unknown capability is an error."""
    found: set[str] = set()
    seen = False
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.FunctionDef) and capability in {_capability(d) for d in node.decorator_list}:
            seen = True
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    found.update(_imported(inner, module))
    if not seen:
        raise ValueError(f"{module} has no function with @capability({capability!r})")
    return found


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(entries: Iterable[str]) -> list[str]:
    """The sorted project modules the ``entries`` (``module`` or ``module@capability``) run."""
    todo: list[str] = []
    for entry in entries:
        module, _, cap = entry.partition("@")
        todo.append(module)
        if cap:
            todo.extend(capability_imports(module, cap))
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen or module in INFRASTRUCTURE:
            continue
        seen.add(module)
        todo.extend(_parents(module))
        todo.extend(_top_level_imports(module))
    return sorted(seen)


def _strip_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            first = body[0] if body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def module_hash(module: str) -> str:
    """sha256 of ``module``'s syntax tree without docstrings (comments and layout ignored)."""
    path = module_file(module)
    assert path is not None
    tree = _strip_docstrings(ast.parse(path.read_text()))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def code_hashes(entries: Iterable[str]) -> dict[str, str]:
    """``{module: hash}`` of the code set of ``entries``."""
    return {m: module_hash(m) for m in closure(entries)}


def files(modules: Iterable[str]) -> list[str]:
    """The source files of ``modules``, relative to the checkout, for ``dvc.yaml``."""
    out = []
    for m in modules:
        path = module_file(m)
        assert path is not None
        out.append(path.relative_to(ROOT).as_posix())
    return sorted(out)


def forget() -> None:
    """Drop the parsed trees and hashes (a test that edits code calls this)."""
    _tree.cache_clear()
    module_hash.cache_clear()
