"""The zoo's targets, read from one nightly run of the zoo models through the BYO path.

    python -m bench.zoo.report [--root DIR] [--out FILE.json] MODEL ...

Run after ``make nightly`` (or ``python -m flows.nightly``) on a project whose catalogue
holds the zoo entries (``python -m bench.zoo.build`` prints them). For each model it reads
the artifact serving takes (``report/selection.json``) and puts beside fp32, from that
same run:

- ONNX bytes and the ratio (target >= 3.5x smaller);
- p50 at the serving batch and the speed-up the benchmark stage measured in the same
  process against fp32 (target >= 1.3x; ratios move 10-20 % between runs here);
- the validate stage's verdict against the entry's tolerance, and accuracy on *all* the
  eval inputs (calibration split included), run here with onnxruntime;
- top-1 agreement with fp32 per fp32-confidence bucket (softmax max-probability), which
  shows where int8 flips answers: near ties, or confident ones too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from model_compression.runtime.session import run_batched
from tasks.core.project import Project

BUCKETS = ((0.0, 0.5), (0.5, 0.8), (0.8, 0.95), (0.95, 1.0001))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def buckets(fp32: np.ndarray, other: np.ndarray) -> list[dict[str, Any]]:
    """Top-1 agreement of ``other`` with ``fp32`` logits per fp32 max-probability bucket."""
    conf = _softmax(fp32.astype(np.float64)).max(axis=1)
    same = fp32.argmax(1) == other.argmax(1)
    rows = []
    for lo, hi in BUCKETS:
        pick = (conf >= lo) & (conf < hi)
        rows.append({"bucket": f"[{lo:.2f}, {min(hi, 1.0):.2f}]", "n": int(pick.sum()),
                     "agreement": float(same[pick].mean()) if pick.any() else None})  # fmt: skip
    return rows


def model_row(project: Project, model: str) -> dict[str, Any]:
    data = project.root / "data" / model
    chosen = json.loads((data / "report" / "selection.json").read_text())["selected"]
    bench = json.loads((data / "benchmark" / "bench.json").read_text())
    rows = {r["artifact"]: r for r in json.loads((data / "validate" / "validation.json").read_text())["rows"]}
    fp32_path, path = project.artifact(model, "baseline"), project.artifact(model, chosen)
    ev = np.load(project.section(model, "eval")["data"])
    name = project.section(model, "arch")["input"]["name"]
    fp32, other = (run_batched(p, name, ev["x"], project.threads, 100) for p in (fp32_path, path))
    batch = str(bench["serving_batch"])
    return {
        "model": model,
        "selected": chosen,
        "fp32_bytes": fp32_path.stat().st_size,
        "bytes": path.stat().st_size,
        "smaller": fp32_path.stat().st_size / path.stat().st_size,
        "serving_batch": int(batch),
        "fp32_p50_ms": bench["results"]["baseline"][batch]["p50_ms"],
        "p50_ms": bench["results"][chosen][batch]["p50_ms"],
        "faster": bench["speedup_vs_fp32"][chosen][batch],
        "speedups_all_batches": bench["speedup_vs_fp32"][chosen],
        "validate": {k: rows[chosen].get(k) for k in ("passed", "reasons", "accuracy", "accuracy_drop")},
        "fp32_validate_accuracy": rows["baseline"].get("accuracy"),
        "all_eval_inputs": {
            "n": len(ev["y"]),
            "fp32_accuracy": float((fp32.argmax(1) == ev["y"]).mean()),
            "accuracy": float((other.argmax(1) == ev["y"]).mean()),
            "agreement": float((fp32.argmax(1) == other.argmax(1)).mean()),
        },
        "tolerance": project.section(model, "tolerance"),
        "agreement_by_confidence": buckets(fp32, other),
        "cpu": bench["fingerprint"]["cpu"],
        "flags": bench["fingerprint"]["flags"],
        "preset": bench["preset"],
        "int8_slower": bench["int8_slower"],
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    out = [
        "| model | selected | fp32 bytes | bytes | smaller | serving batch | fp32 p50 ms | p50 ms | faster | "
        "validate | accuracy fp32 → selected (all eval) | agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["all_eval_inputs"]
        v = "pass" if r["validate"]["passed"] else "fail: " + "; ".join(r["validate"]["reasons"])
        out.append(
            f"| {r['model']} | {r['selected']} | {r['fp32_bytes']:,} | {r['bytes']:,} | {r['smaller']:.2f}x | "
            f"{r['serving_batch']} | {r['fp32_p50_ms']:.3f} | {r['p50_ms']:.3f} | {r['faster']:.2f}x | {v} | "
            f"{a['fp32_accuracy']:.4f} → {a['accuracy']:.4f} (n={a['n']}) | {a['agreement']:.4f} |"
        )
    out += ["", "| model | " + " | ".join(f"conf {b['bucket']}" for b in rows[0]["agreement_by_confidence"]) + " |",
            "|---|" + "---|" * len(BUCKETS)]  # fmt: skip
    for r in rows:
        cells = [f"{b['agreement']:.3f} (n={b['n']})" if b["n"] else "– (n=0)" for b in r["agreement_by_confidence"]]
        out.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.zoo.report", description=__doc__)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--root", default=".")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    project = Project.at(args.root)
    rows = [model_row(project, m) for m in args.models]
    print(f"CPU: {rows[0]['cpu']}, flags {rows[0]['flags']}, preset {rows[0]['preset']}")
    print(markdown(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
