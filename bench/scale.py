"""Scale-out: a 4-model batch on 1 Dask worker against 2 (prefect-dask DaskTaskRunner).

python -m bench.scale [--models 4] [--epochs 1]

Builds a throw-away project in a temporary folder: ``--models`` copies of the
fashion-cnn catalogue entry (each trains, prunes, quantizes, factorizes, distils,
validates, benchmarks and publishes on its own), ``threads: 1`` so that one Dask worker
is one core, and the embedded S3. Runs the nightly flow once with ``workers=1`` and
once with ``workers=2``, each from empty data (no cache), and prints wall times and the
speed-up. Latencies measured inside the 2-worker run share the CPU with the other
worker: this measures throughput of the batch, not model latency.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from flows.nightly import nightly
from tasks.core import logs

REPO = Path(__file__).resolve().parents[1]


def make_batch(root: Path, n: int, epochs: int) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    base = params["models"]["fashion-cnn"]
    base["train"]["epochs"] = base["distill"]["train"]["epochs"] = epochs
    names = [f"cnn-{i}" for i in range(n)]
    params.update(threads=1, catalogue=names, targets=["local"])
    params["models"] = {name: copy.deepcopy(base) for name in names}
    params["s3"]["endpoint_url"] = "http://127.0.0.1:8339"  # its own embedded S3, not the project's
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=1)
    a = ap.parse_args()
    logs.setup()
    times = {}
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        for workers in (1, 2):
            root = Path(tmp) / f"w{workers}"
            make_batch(root, a.models, a.epochs)
            t0 = time.perf_counter()
            result = nightly(root=str(root), workers=workers)
            times[workers] = time.perf_counter() - t0
            procs = sorted({r["ran_on"] for r in result.values()})
            print(f"workers={workers}: {times[workers]:.1f} s for {len(result)} models on {procs}")
            shutil.rmtree(root)
    print(f"\n| workers | wall s | speed-up |\n|---|---|---|\n| 1 | {times[1]:.1f} | 1.00 |")
    print(f"| 2 | {times[2]:.1f} | {times[1] / times[2]:.2f} |")


if __name__ == "__main__":
    main()
