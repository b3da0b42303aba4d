"""Embedding tables at 1-4 bits, decoded in the ONNX graph with standard ops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from model_compression.errors import NotApplicable
from model_compression.quantize import embedding_tiers as tiers
from model_compression.quantize.embedding_lowbit import EmbeddingLowBitConfig, dequantize, quantize_table, unpack
from model_compression.quantize.onnx_embedding import quantize
from model_compression.runtime.session import make_session


def table(rows: int = 2000, cols: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((rows, cols)).astype(np.float32) * 0.05
    t[5, 3] = 0.9  # an outlier, which the clipping search may trade off
    return t


def lookup_graph(path: Path, t: np.ndarray, ids_shape: list[int | str], opset: int = 17) -> Path:
    """ids -> Gather(table) -> Gather(table) twice (two readers of one table) -> Add."""
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["a"]),
            helper.make_node("Gather", ["table", "ids"], ["b"]),
            helper.make_node("Add", ["a", "b"], ["out"]),
        ],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ids_shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [*ids_shape, t.shape[1]])],
        [numpy_helper.from_array(t, "table")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_codes_round_trip_through_the_packing(bits):
    coded = quantize_table(table(), EmbeddingLowBitConfig(bits=bits, block_size=32))
    codes = unpack(coded.packed, bits)
    assert coded.packed.shape == (2000, 64 * bits // 8) and codes.shape == (2000, 64)
    assert codes.max() == 2**bits - 1 and codes.min() == 0
    assert coded.nbytes == 2000 * (64 * bits // 8 + 2 * 2 * 64 // 32)  # codes + fp16 scale, offset per block


def test_error_halves_per_extra_bit_and_the_clip_search_beats_min_max():
    t = table()
    rmse = [float(np.sqrt(((dequantize(quantize_table(t, EmbeddingLowBitConfig(bits=b))) - t) ** 2).mean()))
            for b in (2, 3, 4)]  # fmt: skip
    assert rmse[0] / rmse[1] > 1.6 and rmse[1] / rmse[2] > 1.6  # about 2x per bit on a Gaussian
    plain = dequantize(quantize_table(t, EmbeddingLowBitConfig(bits=3, clip_ratios=(1.0,))))
    assert ((dequantize(quantize_table(t, EmbeddingLowBitConfig(bits=3))) - t) ** 2).sum() < ((plain - t) ** 2).sum()


@pytest.mark.parametrize(("bits", "opset"), [(1, 17), (2, 17), (3, 17), (3, 11), (4, 17)])
def test_the_graph_decodes_exactly_the_quantized_table(tmp_path: Path, bits, opset):
    t = table()
    cfg = EmbeddingLowBitConfig(bits=bits, block_size=32)
    src = lookup_graph(tmp_path / "f.onnx", t, ["batch", "seq"], opset)
    report = quantize(src, tmp_path / "q.onnx", cfg)
    assert report["table"]["bytes_after"] == quantize_table(t, cfg).nbytes
    ids = np.arange(2000, dtype=np.int64).reshape(40, 50)
    (got,) = make_session(tmp_path / "q.onnx").run(None, {"ids": ids})
    want = dequantize(quantize_table(t, cfg))
    assert got.shape == (40, 50, 64)
    np.testing.assert_array_equal(got.reshape(2000, 64), want + want)  # bit for bit, both readers
    assert (tmp_path / "q.onnx").stat().st_size < report["table"]["bytes_after"] + 6000  # + the decoding nodes


def test_small_tables_and_other_readers_are_left_alone(tmp_path: Path):
    small = lookup_graph(tmp_path / "s.onnx", table(rows=500), [1, 8])
    with pytest.raises(NotApplicable, match=r"no embedding table in s.onnx: .*>= 1024 rows"):
        quantize(small, tmp_path / "q.onnx", EmbeddingLowBitConfig())
    with pytest.raises(NotApplicable, match=r"divisible by block_size=48"):
        quantize(lookup_graph(tmp_path / "b.onnx", table(), [1, 8]), tmp_path / "q.onnx",
                 EmbeddingLowBitConfig(block_size=48))  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bits": 5}, r"bits must be in 1..4"),
        ({"block_size": 12}, "multiple of 8"),
        ({"clip_ratios": (1.2,)}, "0, 1"),
        ({"decode": "lazy"}, r"decode must be 'rows' or 'table', got 'lazy'"),
    ],
)
def test_config_names_the_bad_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmbeddingLowBitConfig(**kwargs)


def zipf_counts(rows: int = 2000, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = (1e5 / np.arange(1, rows + 1)).astype(np.int64)  # Zipf, as token frequencies are
    counts[rng.permutation(rows)[: rows // 4]] = 0  # a quarter never seen
    return rng.permutation(counts)


def test_the_allocation_meets_the_budget_and_spends_bits_where_tokens_occur():
    t, counts = table(), zipf_counts()
    cfg = EmbeddingLowBitConfig(mean_bits=2.5, choices=(2, 3, 4))
    coded = tiers.code(t, counts, cfg)
    bits = np.array([coded.tiers[k].bits for k in coded.tier])
    assert 2.4 < bits.mean() <= 2.5
    assert bits[counts == 0].max() == 2 and bits[np.argsort(counts)[-50:]].min() == 4  # rare cheap, frequent rich
    # the expected distortion under the token distribution beats one width for all at 2.5 bits' size
    p = tiers.probabilities(counts)
    err = lambda d: float((p * ((d - t) ** 2).sum(1)).sum())  # noqa: E731
    uniform3 = err(dequantize(quantize_table(t, EmbeddingLowBitConfig(bits=3))))
    assert err(tiers.dequantize_tiered(coded)) < uniform3


@pytest.mark.parametrize("opset", [17, 11])
def test_the_graph_decodes_a_tiered_table_exactly(tmp_path: Path, opset):
    t, counts = table(), zipf_counts()
    cfg = EmbeddingLowBitConfig(mean_bits=3.0, choices=(2, 3, 4), block_size=32)
    src = lookup_graph(tmp_path / "f.onnx", t, ["batch", "seq"], opset)
    report = quantize(src, tmp_path / "q.onnx", cfg, counts)
    assert 2.9 < report["table"]["mean_bits"] <= 3.0
    ids = np.arange(2000, dtype=np.int64).reshape(40, 50)
    (got,) = make_session(tmp_path / "q.onnx").run(None, {"ids": ids})
    want = tiers.dequantize_tiered(tiers.code(t, counts, cfg))
    np.testing.assert_array_equal(got.reshape(2000, 64), want + want)


@pytest.mark.parametrize("mean_bits", [None, 3.0])
def test_decoding_the_whole_table_at_load_gives_the_same_rows_and_leaves_plain_gathers(tmp_path: Path, mean_bits):
    t, counts = table(), zipf_counts()
    cfg = EmbeddingLowBitConfig(bits=3, mean_bits=mean_bits, choices=(2, 3, 4), block_size=32, decode="table")
    src = lookup_graph(tmp_path / "f.onnx", t, ["batch", "seq"])
    quantize(src, tmp_path / "t.onnx", cfg, counts)
    quantize(src, tmp_path / "r.onnx", EmbeddingLowBitConfig(**{**cfg.__dict__, "decode": "rows"}), counts)
    # the same stored table; the decoding nodes once per table instead of once per reader
    assert (tmp_path / "t.onnx").stat().st_size <= (tmp_path / "r.onnx").stat().st_size
    ids = np.arange(2000, dtype=np.int64)[::-1].reshape(40, 50).copy()
    (by_table,) = make_session(tmp_path / "t.onnx").run(None, {"ids": ids})
    (by_rows,) = make_session(tmp_path / "r.onnx").run(None, {"ids": ids})
    np.testing.assert_array_equal(by_table, by_rows)
    # onnxruntime folds the decoding when it loads the graph: what runs per call is the lookups
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    ort.InferenceSession(str(tmp_path / "t.onnx"), opts, providers=["CPUExecutionProvider"])
    assert {n.op_type for n in onnx.load(tmp_path / "loaded.onnx").graph.node} == {"Add", "Gather"}


def test_decoding_the_whole_table_needs_range(tmp_path: Path):
    src = lookup_graph(tmp_path / "f.onnx", table(), [1, 8], opset=10)
    with pytest.raises(ValueError, match=r"decode='table' needs ONNX opset >= 11 \(Range\), the graph has 10"):
        quantize(src, tmp_path / "q.onnx", EmbeddingLowBitConfig(decode="table"))
