"""The model card (README.md) published beside each manifest, generated from the manifest alone."""

from __future__ import annotations

from typing import Any


def render(manifest: dict[str, Any]) -> str:
    m = manifest
    base = m["baseline"]
    lines = [
        f"# {m['model']} — compressed, version `{m['version']}` (pool `{m['pool']}`)",
        "",
        f"Built from git `{m['lineage']['git_sha'] or 'unknown'}` with seed {m['seed']} and {m['threads']} threads; "
        f"fp32 reference `{base['sha256'][:12]}` ({base['size_bytes']:,} bytes).",
        "",
        "| artifact | bytes | × smaller | package (coded/bound) | quality vs fp32 | p50 ms | sha256 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, art in m["artifacts"].items():
        metrics = art["metrics"]
        drops = ", ".join(f"{k[: -len('_drop')]} {-v:+.4f}" for k, v in metrics.items() if k.endswith("_drop"))
        first = next(iter(art["latency"].values()))
        pk = art.get("package")
        package = f"{pk['bytes']:,} ({pk['coded_vs_bound']:.4f})" if pk else "n/a"
        if pk and not pk.get("exact", True):  # float weights at 8 bits: the decoded model's own quality
            decoded = ", ".join(f"{k} {v:.4f}" for k, v in pk.get("decoded_quality", {}).items() if k != "nll_bits")
            package += f", decodes to: {decoded}"
        lines.append(
            f"| {name} | {metrics['size_bytes']:,} | {metrics['ratio_vs_fp32']:.2f} | {package} | {drops or 'n/a'} | "
            f"{first['p50_ms']:.2f} | `{art['sha256'][:16]}` |"
        )
    for name, reason in m.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {reason} | | | | | |")
    fp = m["fingerprint"]
    lines += [
        "",
        f"Latency measured on {fp['cpu']} ({fp['cores']} cores, {', '.join(fp['flags'])}), "
        f"onnxruntime {fp['onnxruntime']}.",
        "",
        "## Reproduce",
        "",
        "```bash",
        f"git checkout {m['lineage']['git_sha'] or '<git sha>'}",
        "make setup && dvc repro   # rebuilds every artifact; compare sha256 with the table above",
        "```",
        "",
        f"Library versions: {', '.join(f'{k} {v}' for k, v in sorted(m['versions'].items()))}.",
        "",
    ]
    return "\n".join(lines)
