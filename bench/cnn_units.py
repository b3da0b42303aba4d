"""How the thinned CNN's unit counts and the ONNX artifact's storage set its speed and size.

python -m bench.cnn_units [--batch 64] [--runs 200] [--threads 1]

The catalogue's Fashion-MNIST CNN (32/64/128 units) and thinned variants, exported the way
the pipeline exports them; latency does not depend on the weights' values for dense
kernels, so seeded random weights stand in for trained ones. For each: onnxruntime's
median latency at ``--batch`` (one session, interleaved with the others' rounds so drift
hits all), the fp32 file's size, the size after k-means (3 bits) and the ``codebook``
step (4-bit indices decoded by the graph at load), and that artifact's latency. Static
int8 (QOperator and QDQ) of each is listed as the usual alternative.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from model_compression import onnx_export
from model_compression.models.fashion_cnn import CNNConfig, FashionCNN
from model_compression.quantize.kmeans import KMeansConfig, share
from model_compression.quantize.onnx_codebook import CodebookGraphConfig, encode
from model_compression.quantize.onnx_int8 import OnnxInt8Config, quantize
from model_compression.runtime.session import make_session

UNITS = [((32, 64), 128), ((15, 29), 58), ((16, 32), 64), ((8, 16), 32)]


def build(folder: Path, channels: tuple[int, int], hidden: int) -> dict[str, Path]:
    """fp32, k-means + codebook, static int8 (QOperator, QDQ) files of one shape."""
    torch.manual_seed(0)
    model = FashionCNN(CNNConfig(channels=channels, hidden=hidden)).eval()
    tag = f"{channels[0]}-{channels[1]}-{hidden}"
    dyn = {"image": {0: "b"}, "logits": {0: "b"}}
    out = {
        "fp32": onnx_export.export(model, {"image": torch.zeros(2, 1, 28, 28)}, folder / f"{tag}.onnx", "logits", dyn)
    }
    share(model, KMeansConfig(bits=3))
    shared = onnx_export.export(model, {"image": torch.zeros(2, 1, 28, 28)}, folder / f"{tag}.km.onnx", "logits", dyn)
    graph = onnx.load(str(shared))
    encode(graph, CodebookGraphConfig())
    onnx.save(graph, str(folder / f"{tag}.codebook.onnx"))
    out["codebook"] = folder / f"{tag}.codebook.onnx"
    rng = np.random.default_rng(0)
    calib = [{"image": rng.random((16, 1, 28, 28), dtype=np.float32)} for _ in range(4)]
    for fmt in ("qoperator", "qdq"):
        cfg = OnnxInt8Config(mode="static", quant_format=fmt)  # type: ignore[arg-type]
        out[f"int8-{fmt}"] = quantize(out["fp32"], folder / f"{tag}.{fmt}.onnx", cfg, calib)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    x = {"image": np.random.default_rng(1).random((args.batch, 1, 28, 28), dtype=np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        files = {(c, h, k): p for c, h in UNITS for k, p in build(Path(tmp), c, h).items()}
        sessions = {key: make_session(p, threads=args.threads) for key, p in files.items()}
        times: dict[tuple, list[float]] = {key: [] for key in files}
        for _ in range(args.rounds):  # interleaved: a slow minute of the VM hits every variant
            for key, s in sessions.items():
                for _ in range(10):
                    s.run(None, x)
                for _ in range(args.runs):
                    t = time.perf_counter()
                    s.run(None, x)
                    times[key].append(time.perf_counter() - t)
        base = float(np.median(times[((32, 64), 128, "fp32")]))
        base_size = files[((32, 64), 128, "fp32")].stat().st_size
        print(
            f"batch {args.batch}, {args.threads} thread(s), {args.rounds}x{args.runs} runs; x = against 32/64/128 fp32"
        )
        print(f"{'units':>10} {'artifact':>15} {'bytes':>9} {'smaller':>8} {'p50 ms':>8} {'faster':>7}")
        for (c, h, kind), p in files.items():
            p50 = float(np.median(times[(c, h, kind)]))
            size = p.stat().st_size
            print(f"{f'{c[0]}/{c[1]}/{h}':>10} {kind:>15} {size:>9} {base_size / size:>7.1f}x {p50 * 1e3:>8.3f} "
                  f"{base / p50:>6.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
