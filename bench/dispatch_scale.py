"""Past one machine, measured: a batch dispatched per model to 1 or 2 simulated machines.

python -m bench.dispatch_scale [--batches 4:1 4:2 8:2 16:2] [--epochs 1] [--json out.json]

Each ``N:W`` is a cold run of N models on W "machines": W clones of a throw-away project,
each with its own ``data/`` and one process worker (``--limit 1``, one thread:
``threads: 1`` and OMP/MKL at 1), on one ``prefect server start`` and one SeaweedFS, as in
tests/flows/test_dispatch_models.py. A fresh dispatching clone runs
``python -m flows.cli run --dispatch``; the stage cache bucket is new for every run, so
nothing is reused. The models are copies of the fashion-cnn entry (each with its own
learning rate, so no two share a stage past the dataset) with ``--epochs``
epochs and no recipe or search (the chain's orchestration is the same; its compute is
smaller, which makes the orchestration share larger, not smaller).

Printed per run:
- wall time of the dispatching command, and the speed-up against the first run with the
  same N on 1 machine;
- compute: the sum of the stage records' ``seconds`` (stage bodies) on the machines;
- orchestration share: 1 - compute / (sum over models of their flow run's wall time on its
  worker); what is left is Prefect, the S3 stage cache and stage bookkeeping (hashing,
  records), start-up of each flow run's process included;
- Prefect API requests (the server's access log: each HTTP request, a websocket counted once)
  and S3 requests (SeaweedFS's Prometheus counters), per model, and the bytes stored.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tasks.storage import s3 as s3io
from tasks.storage.seaweed import SeaweedServer, free_port
from tests.prefect_server import PrefectServer, end

REPO = Path(__file__).resolve().parents[1]
POOL, ACCESS, SECRET = "bench-machines", "bench-access", "bench-secret"
S3_METRIC = re.compile(r"^SeaweedFS_s3_request_total\{([^}]*)\}\s+([0-9.e+]+)", re.M)


def template(tmp: Path, endpoint: str, n: int, epochs: int) -> Path:
    """The project each clone starts from: N fashion-cnn copies, code included."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    base = params["models"]["fashion-cnn"]
    base["train"]["epochs"] = base["distill"]["train"]["epochs"] = epochs
    base.update(recipe=None, search=None)
    names = [f"cnn-{i}" for i in range(n)]
    # native kernels: about half the training time of the portable pins; orchestration is the same,
    # so its share comes out larger (conservative), and the runs fit a session
    params.update(threads=1, catalogue=names, targets=["local"], reproducibility={"isa": "native"})
    params["models"] = {name: copy.deepcopy(base) for name in names}
    for i, name in enumerate(names):  # distinct models: identical ones would share every stage through the cache
        params["models"][name]["train"]["lr"] = base["train"]["lr"] * (1 + i / 1000)
    params["gates"] = {name: copy.deepcopy(params["gates"]["fashion-cnn"]) for name in names}
    params["s3"].update(endpoint_url=endpoint, cache_bucket=f"cache-{n}-{time.time_ns()}")
    params["dispatch"] = {"work_pool": POOL, "timeout_s": 7200}
    root = tmp / "template"
    for name in ("model_compression", "tasks", "flows"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "prefect.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "data" / "pools", root / "data" / "pools")  # the committed kernel profile
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def s3_counts(metrics_port: int) -> dict[str, float]:
    """SeaweedFS's request counters, summed per action (PUT, GET, HEAD, LIST...)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    counts: dict[str, float] = {}
    for labels, value in S3_METRIC.findall(text):
        action = dict(kv.split("=", 1) for kv in labels.split(",")).get("type", '"?"').strip('"')
        counts[action] = counts.get(action, 0) + float(value)
    return counts


def bucket_bytes(s3: SeaweedServer, bucket: str) -> int:
    """Bytes stored in ``bucket`` (every object's size)."""
    client = s3io.client(s3io.S3Settings(s3.endpoint_url, "us-east-1", "model-zoo", "compressed-models"))
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(obj["Size"] for page in pages for obj in page.get("Contents", []))


def api_requests(server: PrefectServer) -> int:
    return (server.home / "server.log").read_text(errors="replace").count(' HTTP/1.1" ')


def run_env(server: PrefectServer, root: Path) -> dict[str, str]:
    env = {k: v for k, v in server.env.items() if k != "PYTHONPATH"}
    one = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return {**env, **one, "PIPELINE_ROOT": str(root), "AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}


def compute_seconds(machines: list[Path]) -> float:
    """Stage bodies' seconds over every record built on the machines (fetched ones excluded)."""
    total = 0.0
    for root in machines:
        for rec in (root / "data").glob("*/*.record.json"):
            record = json.loads(rec.read_text())
            total += 0.0 if "fetched_from" in record else float(record.get("seconds", 0.0))
    return total


def flow_run_seconds(server: PrefectServer) -> float:
    """Wall time of every compress-model flow run, from its start to its end on the worker."""
    req = urllib.request.Request(f"{server.api_url}/flow_runs/filter", method="POST",
                                 data=json.dumps({"limit": 200}).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as r:
        runs = json.loads(r.read())
    return sum(float(x["total_run_time"] or 0) for x in runs if x["name"].startswith("compress-"))


def one_batch(tmp: Path, server: PrefectServer, s3: SeaweedServer, metrics: int, n: int, w: int, epochs: int) -> dict:
    base = template(tmp / f"{n}x{w}", s3.endpoint_url, n, epochs)
    machines = [base.parent / f"machine-{i}" for i in range(w)]
    for m in machines:
        shutil.copytree(base, m)
    workers = [server.worker(POOL, root=m, name=f"{n}x{w}-{m.name}") for m in machines]
    dispatcher = base.parent / "dispatcher"
    shutil.copytree(base, dispatcher)
    before_api, before_s3, before_runs = api_requests(server), s3_counts(metrics), flow_run_seconds(server)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "flows.cli", "run", "--dispatch"]
    done = subprocess.run(cmd, cwd=dispatcher, env=run_env(server, dispatcher), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    for proc in workers:  # a worker per run: the next batch starts with fresh machines
        end(proc)
    if done.returncode != 0:
        raise RuntimeError(f"{n}x{w} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    after_s3 = s3_counts(metrics)
    s3_delta = {k: after_s3.get(k, 0) - before_s3.get(k, 0) for k in after_s3}
    compute, runs = compute_seconds(machines), flow_run_seconds(server) - before_runs
    cache = yaml.safe_load((base / "params.yaml").read_text())["s3"]["cache_bucket"]
    return {"models": n, "machines": w, "wall_s": round(wall, 1), "compute_s": round(compute, 1),
            "flow_runs_s": round(runs, 1), "orchestration_share": round(1 - compute / runs, 3),
            "batch_orchestration_share": round(1 - compute / w / wall, 3),
            "api_requests_per_model": round((api_requests(server) - before_api) / n, 1),
            "s3_requests_per_model": round(sum(s3_delta.values()) / n, 1),
            "s3_requests_by_action": {k: int(v) for k, v in sorted(s3_delta.items()) if v},
            "stage_cache_mb_per_model": round(bucket_bytes(s3, cache) / n / 2**20, 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", nargs="+", default=["4:1", "4:2", "8:2", "16:2"], help="N:W, models:machines")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dispatch-scale-") as tmp_name:
        tmp = Path(tmp_name)
        metrics = free_port()
        s3 = SeaweedServer(tmp / "s3", free_port(), ACCESS, SECRET, metrics_port=metrics).start()
        server = PrefectServer(tmp / "prefect", free_port())
        (tmp / "prefect").mkdir()
        try:
            server.start(log_level="INFO")
            # the workers and their flow runs inherit these: S3 credentials, one thread each
            os.environ.update(AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET, OMP_NUM_THREADS="1",
                              MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")  # fmt: skip
            server.cli("work-pool", "create", "--type", "process", POOL)
            server.cli("--no-prompt", "deploy", "--name", "compress-model", "--pool", POOL)
            for batch in a.batches:
                n, w = (int(x) for x in batch.split(":"))
                results.append(one_batch(tmp, server, s3, metrics, n, w, a.epochs))
                print(json.dumps(results[-1]), flush=True)
        finally:
            server.stop()
            s3.stop()
    report(results)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


def report(results: list[dict[str, Any]]) -> None:
    one = {r["models"]: r["wall_s"] for r in results if r["machines"] == 1}
    print(
        "\n| models | machines | wall s | vs 1 machine | compute s | orchestration in runs | batch overhead "
        "| API req/model | S3 req/model | cache MB/model |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['wall_s'] / one[r['models']]:.2f}x" if r["models"] in one else "-"
        print(f"| {r['models']} | {r['machines']} | {r['wall_s']:.0f} | {ratio} | {r['compute_s']:.0f} | "
              f"{100 * r['orchestration_share']:.1f} % | {100 * r['batch_orchestration_share']:.1f} % | "
              f"{r['api_requests_per_model']:.0f} | {r['s3_requests_per_model']:.0f} | "
              f"{r['stage_cache_mb_per_model']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
