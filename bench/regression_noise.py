"""How small a change the regression gate can see: each artifact against fp32, as if fp32
had been the version published last night.

python -m bench.regression_noise [model ...]   # after `make nightly`; default: the catalogue

For each artifact: the paired-bootstrap CI of (artifact - fp32) on the headline metric
over the whole eval set, and the CI of the p50 ratio from alternating pinned-thread
rounds, with the params' ``regression`` settings; and what the gate would decide.
"""

from __future__ import annotations

import sys
import time

from model_compression.runtime.isolated import declared_inputs, synthetic_feeds
from model_compression.stats.bootstrap import paired, ratio_of_medians
from tasks.core import runtime
from tasks.core.project import Project
from tasks.gates import regression
from tasks.stages.benchmark import bench_settings


def main(models: list[str]) -> None:
    project = Project.at(".")
    runtime.configure(project.seed, project.threads)
    cfg = regression.config(project)
    print(f"regression: {cfg}\n")
    for model in models or project.catalogue():
        evaluate = project.kind(model).evaluator(project, model)
        bench = bench_settings(project, model)
        files = project.artifacts(model)
        base = evaluate(files["baseline"], None)
        assert base.statistic is not None, f"{model}'s task has no per-example headline"
        metric, n = base.headline, base.examples
        print(f"### {model}: {metric} over {n} eval examples, p50 at batch {bench.batch_sizes[0]}\n")
        print("| artifact | Δ" + metric + " (95% CI) | p50 ratio vs fp32 (95% CI) | gate | seconds |")
        print("|---|---|---|---|---|")
        for name, path in files.items():
            if name == "baseline":
                continue
            t0 = time.perf_counter()
            tonight = evaluate(path, base.outputs).statistic
            assert tonight is not None
            q = paired(tonight, base.statistic, n, cfg.resamples, cfg.confidence, seed=project.seed)
            feeds = synthetic_feeds(declared_inputs(path), bench.batch_sizes[0], bench.seq_len, seed=project.seed)
            new_t, old_t = regression._timings(path, files["baseline"], feeds, cfg, project.threads)
            lat = ratio_of_medians(new_t, old_t, cfg.resamples, cfg.confidence, seed=project.seed)
            fails = [w for w, bad in (("quality", q.high < -cfg.quality_margin),
                                      ("latency", lat.low > 1 + cfg.latency_margin)) if bad]  # fmt: skip
            print(
                f"| {name} | {q.estimate:+.4f} [{q.low:+.4f}, {q.high:+.4f}] | {lat.estimate:.3f} "
                f"[{lat.low:.3f}, {lat.high:.3f}] | {'fails: ' + ', '.join(fails) if fails else 'passes'} "
                f"| {time.perf_counter() - t0:.1f} |"
            )
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
