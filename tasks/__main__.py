"""Run one stage for one model: ``python -m tasks <stage> <model> [--root DIR]``; this is
the ``cmd`` of every DVC stage, and the Prefect tasks call the same ``Stage.run``.

``python -m tasks kernels [--force]`` measures this machine's kernel profile
(``data/pools/<pool>/kernels.json``) for its int8 preset, if the file lacks one.

``python -m tasks dvc-yaml [--check]`` writes ``dvc.yaml`` from the stage declarations
(with ``--check``: exits 1 if the file on disk differs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tasks.core import logs
from tasks.core.pipeline import ORDER, stage
from tasks.storage import S3_UP_ENV


def _dvc_yaml(argv: list[str]) -> int:
    from tasks.core import dvcyaml
    from tasks.core.project import Project

    parser = argparse.ArgumentParser(prog="python -m tasks dvc-yaml")
    parser.add_argument("--root", default=".")
    parser.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is not what the stages declare")
    args = parser.parse_args(argv)
    project = Project.at(args.root)
    if args.check:
        current = (project.root / "dvc.yaml").read_text() if (project.root / "dvc.yaml").is_file() else ""
        if current != dvcyaml.render(project):
            print("dvc.yaml differs from the stage declarations: run python -m tasks dvc-yaml", file=sys.stderr)
            return 1
        return 0
    print("dvc.yaml " + ("written" if dvcyaml.write(project) else "already current"))
    return 0


def _kernels(argv: list[str]) -> int:
    from tasks.core.project import Project
    from tasks.pools import kernels_path, profile_kernels

    parser = argparse.ArgumentParser(prog="python -m tasks kernels", description="measure this pool's kernel profile")
    parser.add_argument("--root", default=".")
    parser.add_argument("--force", action="store_true", help="re-measure even if the profile has this preset")
    args = parser.parse_args(argv)
    logs.setup()
    project = Project.at(args.root)
    changed = profile_kernels(project, force=args.force)
    print(f"{kernels_path(project)} " + ("measured: int8 stages re-run" if changed else "already holds this preset"))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dvc-yaml"]:
        return _dvc_yaml(argv[1:])
    if argv[:1] == ["kernels"]:
        return _kernels(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__)
    parser.add_argument("stage", choices=[*ORDER, "dvc-yaml"])
    parser.add_argument("model")
    parser.add_argument("--root", default=".")
    args = parser.parse_args(argv)
    logs.setup()
    try:
        run(args.stage, args.model, args.root)
    except (ValueError, OSError, RuntimeError) as e:  # FileNotFoundError is an OSError
        print(f"error: {args.stage} {args.model}: {e}", file=sys.stderr)
        return 1
    _log_imports(args.stage, args.model)
    return 0


def run(name: str, model: str, root: str) -> None:
    """One stage, through the S3 stage cache where S3 was made available to this process
    (``tasks.storage.S3_UP_ENV``); a plain ``dvc repro`` stage process then never loads boto3."""
    if not os.environ.get(S3_UP_ENV):
        stage(name).run(model, root)
        return
    from tasks.storage import stage_cache

    stage_cache.run(stage(name), model, root)


def _log_imports(stage_name: str, model: str) -> None:
    """With ``PIPELINE_IMPORTS_LOG`` set, append the project modules this process imported:
    a test checks them against the stage's declared code set."""
    path = os.environ.get("PIPELINE_IMPORTS_LOG")
    if not path:
        return
    modules = sorted(m for m in sys.modules if m.split(".")[0] in ("tasks", "model_compression"))
    with open(path, "a") as f:
        f.write(json.dumps({"stage": stage_name, "model": model, "modules": modules}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
