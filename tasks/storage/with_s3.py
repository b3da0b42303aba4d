"""Run a command with the project's S3 endpoint available: ``python -m tasks.storage.with_s3 -- dvc push``.

If the endpoint is the embedded default and nothing answers, SeaweedFS is started for the
command's lifetime (and the buckets created). The command inherits the embedded server's
credentials only when the environment sets none, so ``dvc push``/``pull`` reach it.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tasks.core import logs
from tasks.core.project import Project
from tasks.storage import s3 as s3io
from tasks.storage import seaweed


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m tasks.storage.with_s3 -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    logs.setup()
    project = Project.at(".")
    with s3io.available(project) as (_, settings):
        env = dict(os.environ)
        if settings.embedded and not env.get("AWS_ACCESS_KEY_ID"):
            env["AWS_ACCESS_KEY_ID"] = seaweed.DEFAULT_ACCESS_KEY
            env["AWS_SECRET_ACCESS_KEY"] = seaweed.DEFAULT_SECRET_KEY
        return subprocess.run(argv, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
