"""Print the BENCHMARKS.md tables from a finished run's outputs (no numbers typed by hand).

python -m bench.summarize            # after `make nightly`
"""

from __future__ import annotations

import sys

from tasks.core.project import Project
from tasks.evaluation import load_rows


def model_table(project: Project, model: str) -> str:
    rows = load_rows(project, model)
    bench = project.read_output(model, "benchmark", "bench.json")
    published = project.read_output(model, "publish", "published.json")["artifacts"]
    quality = project.kind(model).quality_columns(project, model)
    batches = [str(b) for b in bench["settings"]["batch_sizes"]]
    head = ["artifact", "ONNX bytes", "× smaller", "entropy bound bytes", "bytes / bound", *quality]
    head += [f"p50 ms (b={b})" for b in batches] + [f"p99 ms (b={batches[0]})"]
    head += [f"speed-up (b={b})" for b in batches] + ["load ms", "model RSS MiB", "published"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    metrics = project.read_output(model, "report", "metrics.json")
    for s in (s for s in project.artifact_names(model) if s in rows):
        r, lat = rows[s], bench["results"][s]
        cells = [
            "fp32" if s == "baseline" else s + (" (storage-only)" if metrics[s].get("storage_only") else ""),
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


def package_table(project: Project, model: str) -> str:
    """Transfer packages against the entropy bound, and description length where it exists."""
    metrics = project.read_output(model, "report", "metrics.json")
    packages = project.read_output(model, "package", "package.json")
    head = ["artifact", "ONNX bytes", "package bytes", "× smaller than fp32 ONNX", "entropy bound bytes"]
    head += ["coded / bound", "MDL bits (package + label NLL)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in (s for s in project.artifact_names(model) if s in packages):
        pk, m = packages[s], metrics[s]
        mdl = "n/a (no labels to code)" if m["mdl_bits"] is None else f"{m['mdl_bits']:,.0f}"
        cells = ["fp32" if s == "baseline" else s, f"{m['size_bytes']:,}", f"{pk['package_bytes']:,}"]
        cells += [f"{pk['transfer_ratio_vs_fp32_onnx']:.2f}", f"{pk['entropy_bound_bytes']:,}"]
        cells += [f"{pk['coded_vs_bound']:.4f}", mdl]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def search_table(project: Project, model: str) -> str:
    """Every trial of the model's search, and why it stopped."""
    folder = project.stage_dir(model, "search")
    if not (folder / "search.json").is_file():
        return "(no search for this model)"
    summary = project.read_output(model, "search", "search.json")
    trials = project.read_output(model, "search", "trials.json")
    quality = project.kind(model).quality_columns(project, model)
    head = ["trial", "recipe", "status", "ONNX bytes", "entropy bound bytes", *quality, "p50 ms (b=1)", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in trials:
        done = t["status"] in ("passed", "failed")
        cells = [
            str(t["trial"]),
            t["recipe"],
            t["status"] + ("" if t["status"] != "failed" else f": {t['reasons'][0]}"),
        ]
        cells += [f"{t['size_bytes']:,}", f"{t['entropy_bound_bytes']:,}"] if done else ["-", "-"]
        cells += [f"{t[q]:.4f}" for q in quality] if done else ["-"] * len(quality)
        cells += [f"{t['p50_ms']:.3f}" if done else "-", f"{t.get('seconds', 0):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    best = summary["best"]
    lines.append("")
    lines.append(
        f"{summary['completed']} of {summary['planned']} trials evaluated in {summary['elapsed_s']:.0f} s "
        f"(budget {summary['budget_s']:.0f} s), stopped by: {summary['stopped_by']}; "
        + (f"picked {best['recipe']} ({summary['selection']}), {best['ratio_vs_fp32']:.2f}x smaller than fp32."
           if best else f"nothing passed; nearest miss: {summary['nearest_miss']}.")
        + (f" Dropped before any trial: {'; '.join(summary['dropped_by_sensitivity'])}."
           if summary["dropped_by_sensitivity"] else "")
    )  # fmt: skip
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
        print(f"#### {model}: transfer packages\n")
        print(package_table(project, model))
        print()
        print(f"#### {model}: recipe search\n")
        print(search_table(project, model))
        print()


if __name__ == "__main__":
    main(*sys.argv[1:])
