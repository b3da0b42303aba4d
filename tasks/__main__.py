"""Run one stage for one model: ``python -m tasks <stage> <model> [--root DIR]``.

This is the ``cmd`` of every DVC stage; the Prefect tasks call the same stage functions.
"""

from __future__ import annotations

import argparse
import sys

from tasks import logs
from tasks.stages import STAGES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__)
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("model")
    parser.add_argument("--root", default=".")
    args = parser.parse_args(argv)
    logs.setup()
    try:
        STAGES[args.stage].run(args.model, args.root)
    except (ValueError, OSError, RuntimeError) as e:  # FileNotFoundError is an OSError
        print(f"error: {args.stage} {args.model}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
