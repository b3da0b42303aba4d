"""Print the BENCHMARKS.md tables from a finished run's outputs (no numbers typed by hand).

python -m bench.summarize            # after `make nightly`
"""

from __future__ import annotations

import sys

from tasks.project import ARTIFACT_STAGES, Project
from tasks.validate import QUALITY, load_rows


def model_table(project: Project, model: str) -> str:
    rows = load_rows(project, model)
    bench = project.read_output(model, "benchmark", "bench.json")
    published = project.read_output(model, "publish", "published.json")["artifacts"]
    quality = QUALITY[project.kind(model)]
    batches = [str(b) for b in bench["settings"]["batch_sizes"]]
    head = ["artifact", "ONNX bytes", "× smaller", "entropy bound bytes", "bytes / bound", *quality]
    head += [f"p50 ms (b={b})" for b in batches] + [f"p99 ms (b={batches[0]})"]
    head += [f"speed-up (b={b})" for b in batches] + ["load ms", "model RSS MiB", "published"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in ARTIFACT_STAGES:
        r, lat = rows[s], bench["results"][s]
        cells = [
            "fp32" if s == "baseline" else s,
            f"{r['size_bytes']:,}",
            f"{r['ratio_vs_fp32']:.2f}",
            f"{r['entropy_bound_bytes']:,}",
            f"{r['size_bytes'] / r['entropy_bound_bytes']:.2f}",
            *(f"{r[q]:.4f}" for q in quality),
            *(f"{lat[b]['p50_ms']:.2f}" + (" (noisy)" if lat[b]["noisy"] else "") for b in batches),
            f"{lat[batches[0]]['p99_ms']:.2f}",
            *(f"{bench['speedup_vs_fp32'][s][b]:.2f}" for b in batches),
            f"{lat[batches[0]]['load_ms']:.0f}",
            f"{lat[batches[0]]['model_rss_mb']:.0f}",
            "reference" if s == "baseline" else ("yes" if s in published else "no: " + _why_not(r, s, bench)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    fp = bench["fingerprint"]
    lines.append("")
    settings = bench["settings"]
    lines.append(
        f"Measured on: {fp['cpu']}, {fp['cores']} cores, flags {', '.join(fp['flags'])}, "
        f"onnxruntime {fp['onnxruntime']}; {settings['runs']} timed runs after {settings['warmup']} warm-up, "
        f"threads={project.threads}."
    )
    return "\n".join(lines)


def _why_not(row: dict, name: str, bench: dict) -> str:
    if name in bench["int8_slower"]:
        return f"int8 slower than fp32 at batch {bench['serving_batch']}"
    return "; ".join(row["reasons"])


def main(root: str = ".") -> None:
    project = Project.at(root)
    for model in project.catalogue():
        print(f"### {model}\n")
        print(model_table(project, model))
        print()


if __name__ == "__main__":
    main(*sys.argv[1:])
