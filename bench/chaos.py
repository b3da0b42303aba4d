"""Chaos soak: SIGKILL the nightly at seeded moments, then check S3 and that a clean rerun
converges on the undisturbed artifacts.

    python -m bench.chaos MODEL [--kills 20] [--seed 0] [--root .]

Run it on a project where ``make nightly MODELS=MODEL`` has completed once: that run's
stage outputs and published version are the reference. Give the project an S3 endpoint
no other checkout on the machine uses (``s3.endpoint_url``): two checkouts with the
default ``127.0.0.1:8333`` share whichever embedded server is up. Each round picks, from the seed:

- a **moment**: a failpoint (``tasks/core/faults.py``: during training = ``baseline:built``,
  ``quantize:built``, ``package:built``, ``upload``, ``manifest``, ``latest``,
  ``dvc-commit``), a random delay (``timer``: SIGKILL after 2-40 s), or the **S3 server**
  itself (``s3-server``: its ``weed`` is SIGKILLed once the publish stage runs);
- makes that moment reachable: the stage's output (and those after it) is deleted, and for
  the publish moments the model's versions are removed from S3, so the upload is real;
- runs ``python -m flows.nightly MODEL`` and kills it (or its S3) there;
- audits S3 (``tasks/publishing.audit``): no ``latest.json`` may name a version without a
  manifest, no listed object may fail its sha256;
- reruns the nightly undisturbed, and compares every ``data/MODEL/*/model.onnx`` and the
  published versions with the reference.

It prints one row per round and the totals: kills survived / kills tried, divergences.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from model_compression.hashing import sha256_file
from tasks.core import faults
from tasks.core.pipeline import ORDER
from tasks.core.project import Project
from tasks.publishing import audit
from tasks.storage import s3 as s3io

MOMENTS = {  # moment -> the first stage that must re-run for the moment to be reached
    "baseline:built": "baseline",
    "quantize:built": "quantize",
    "package:built": "package",
    "upload": "publish",
    "manifest": "publish",
    "latest": "publish",
    "dvc-commit": "report",
    "timer": "quantize",
    "s3-server": "publish",
}


def _artifacts(root: Path, model: str) -> dict[str, str]:
    return {p.parent.name: sha256_file(p) for p in sorted((root / "data" / model).glob("*/model.onnx"))}


def _forget_from(root: Path, model: str, first: str) -> None:
    for name in ORDER[ORDER.index(first) :]:
        shutil.rmtree(root / "data" / model / name, ignore_errors=True)
        (root / "data" / model / f"{name}.record.json").unlink(missing_ok=True)


def _s3_state(project: Project, model: str, unpublish: bool = False) -> dict[str, Any]:
    with s3io.available(project) as (s3, settings):
        if unpublish:
            for key in s3io.list_keys(s3, settings, settings.publish_bucket, f"{model}/"):
                s3.delete_object(Bucket=settings.publish_bucket, Key=key)
        return audit(s3, settings, model)


def _nightly(root: Path, model: str, kill_at: str | None, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    env["PYTHONPATH"] = str(root)
    if kill_at:
        env[faults.ENV] = kill_at
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "flows.nightly", model], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def _kill_s3_when_publishing(proc: subprocess.Popen[bytes], root: Path, log: Path, budget_s: float) -> bool:
    deadline = time.monotonic() + budget_s
    while proc.poll() is None and time.monotonic() < deadline:
        if "/publish: running" in log.read_text(errors="replace"):
            record = root / "data" / ".s3" / "server.json"
            if not record.is_file():  # S3 here is not this checkout's embedded server: nothing of ours to kill
                return False
            os.killpg(json.loads(record.read_text())["pid"], signal.SIGKILL)
            return True
        time.sleep(0.1)
    return False


def _s3_error(text: str) -> str | None:
    """The first log line naming an S3 failure (what a user sees when S3 dies mid-run)."""
    return next((ln.strip()[-240:] for ln in text.splitlines() if "S3" in ln and "rror" in ln), None)


def one_round(root: Path, model: str, moment: str, rng: random.Random, work: Path, i: int) -> dict[str, Any]:
    project = Project.at(root)
    _forget_from(root, model, MOMENTS[moment])
    publish_moment = MOMENTS[moment] == "publish"
    if publish_moment:
        _s3_state(project, model, unpublish=True)
    log = work / f"round{i:02d}-{moment.replace(':', '-')}.log"
    t0 = time.monotonic()
    failpoint = moment if moment not in ("timer", "s3-server") else None
    proc = _nightly(root, model, failpoint, log)
    hit = True
    if moment == "timer":
        try:
            proc.wait(timeout=rng.uniform(2, 40))
            hit = False  # finished before the timer
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL: no handler runs, as when a machine dies
    elif moment == "s3-server":
        hit = _kill_s3_when_publishing(proc, root, log, 900)
    code = proc.wait(timeout=1800)
    text = log.read_text(errors="replace")
    after = _s3_state(project, model)
    rerun_log = work / f"round{i:02d}-rerun.log"
    rerun = _nightly(root, model, None, rerun_log).wait(timeout=1800)
    return {
        "round": i,
        "moment": moment,
        "killed": hit and (code == -signal.SIGKILL or moment == "s3-server"),
        "exit": code,
        "s3_error": _s3_error(text) if moment == "s3-server" else None,
        "after_kill_problems": after["problems"],
        "rerun_exit": rerun,
        "seconds": round(time.monotonic() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: none)")
    args = parser.parse_args(argv)
    root, rng = args.root.resolve(), random.Random(args.seed)
    project = Project.at(root)
    reference, ref_s3 = _artifacts(root, args.model), _s3_state(project, args.model)
    if not reference or ref_s3["problems"] or not ref_s3["versions"]:
        parser.error(f"run `make nightly MODELS={args.model}` first: no complete reference ({ref_s3})")
    work = root / "data" / ".chaos"
    work.mkdir(parents=True, exist_ok=True)
    moments = list(MOMENTS)
    schedule = [moments[i % len(moments)] for i in range(args.kills)]
    rng.shuffle(schedule)
    rows = []
    print("| round | moment | killed | exit | after kill: S3 problems | rerun exit | converged | s |")
    print("|---|---|---|---|---|---|---|---|")
    for i, moment in enumerate(schedule, 1):
        row = one_round(root, args.model, moment, rng, work, i)
        state = _s3_state(project, args.model)
        now = _artifacts(root, args.model)
        row["converged"] = now == reference and state["versions"] == ref_s3["versions"]
        row["diverged"] = {  # what differs, for a round that did not converge
            "artifacts": sorted(k for k in set(now) | set(reference) if now.get(k) != reference.get(k)),
            "versions": state["versions"] if state["versions"] != ref_s3["versions"] else [],
        }
        row["final_problems"] = state["problems"]
        rows.append(row)
        print(f"| {i} | {moment} | {row['killed']} | {row['exit']} | {len(row['after_kill_problems'])} | "
              f"{row['rerun_exit']} | {row['converged']} | {row['seconds']} |", flush=True)  # fmt: skip
    tried = [r for r in rows if r["killed"]]
    survived = [r for r in tried if r["converged"] and not r["after_kill_problems"] and r["rerun_exit"] == 0]
    print(f"\nkills survived / tried: {len(survived)} / {len(tried)}; rounds {len(rows)}; "
          f"divergences: {sum(not r['converged'] for r in rows)}; S3 problems after a kill: "
          f"{sum(bool(r['after_kill_problems']) for r in rows)}")  # fmt: skip
    for r in rows:
        if r["s3_error"]:
            print(f"round {r['round']} (S3 server killed): exit {r['exit']}: {r['s3_error']}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if len(survived) == len(tried) else 1


if __name__ == "__main__":
    sys.exit(main())
