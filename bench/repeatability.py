"""How far to trust a latency number: the same benchmark repeated, absolute vs ratio.

python -m bench.repeatability [MODEL ...] [--repeats 5]

Runs ``runtime.compare.benchmark_files`` on a finished run's artifacts ``--repeats``
times (each repeat times every artifact in a fresh process, as the benchmark stage and
every pool's worker do) and prints, per artifact, the median p50 at the serving batch,
the relative spread of p50 across repeats (max - min) / median, and the same for the
speed-up ratio to fp32, so a reader can see which figures in BENCHMARKS.md are stable
enough to act on.
"""

from __future__ import annotations

import argparse
import statistics

from model_compression.runtime.compare import benchmark_files
from tasks.core.project import Project
from tasks.stages.benchmark import bench_settings


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--root", default=".")
    a = ap.parse_args()
    project = Project.at(a.root)
    for model in a.models or project.catalogue():
        cfg = bench_settings(project, model)
        files = project.artifacts(model)
        runs = [benchmark_files(files, cfg) for _ in range(a.repeats)]
        b = str(cfg.batch_sizes[0])
        print(f"### {model}: {a.repeats} repeats, batch {b}, {cfg.runs} timed runs each, threads={cfg.threads}\n")
        print("| artifact | median p50 ms | p50 spread across repeats | median speed-up | speed-up spread |")
        print("|---|---|---|---|---|")
        for s in files:
            p50 = [r["results"][s][b]["p50_ms"] for r in runs]
            up = [r["speedup_vs_fp32"][s][b] for r in runs]
            cells = [s, f"{statistics.median(p50):.2f}", f"{spread(p50):.1%}"]
            cells += [f"{statistics.median(up):.2f}", "—" if s == "baseline" else f"{spread(up):.1%}"]
            print("| " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
