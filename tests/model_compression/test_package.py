"""The entropy-coded transfer package: exact round trip, size against the entropy bound."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from model_compression.info.entropy import linear_quantize
from model_compression.info.onnx_weights import onnx_weight_bound
from model_compression.info.package import pack, rebuild, unpack
from model_compression.runtime.session import make_session


def _onnx(path: Path, sparsity: float = 0.0) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    with torch.no_grad():
        w = model[0].weight
        w[w.abs() < w.abs().flatten().kthvalue(max(1, int(sparsity * w.numel()))).values] = 0
    torch.onnx.export(model, (torch.zeros(2, 256),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=17, dynamo=False)  # fmt: skip
    return path


def test_decoding_returns_exactly_the_encoded_symbols(tmp_path: Path):
    src = _onnx(tmp_path / "m.onnx", sparsity=0.7)
    stats = pack(src, tmp_path / "m.mcpk", bits=8, min_numel=1024)
    _, symbols, scales, _ = unpack(tmp_path / "m.mcpk")
    originals = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(src)).graph.initializer}
    assert set(symbols) == {n for n, a in originals.items() if a.size >= 1024} and stats.tensors == 2
    for name, sym in symbols.items():
        expected = linear_quantize(torch.from_numpy(originals[name].copy()), 8).numpy()
        assert np.array_equal(sym, expected)
        assert np.abs(sym * scales[name] - originals[name]).max() <= scales[name] / 2 + 1e-7
    assert (symbols[next(iter(symbols))] == 0).mean() >= 0.69  # pruned zeros survive coding


def test_an_int8_artifact_round_trips_bit_exactly_and_still_runs(tmp_path: Path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = _onnx(tmp_path / "m.onnx")
    quantize_dynamic(str(src), str(tmp_path / "q.onnx"), weight_type=QuantType.QInt8)
    pack(tmp_path / "q.onnx", tmp_path / "q.mcpk")
    rebuilt = rebuild(tmp_path / "q.mcpk", tmp_path / "r.onnx")
    before = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "q.onnx")).graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(rebuilt)).graph.initializer}
    assert before.keys() == after.keys()
    for name, arr in before.items():
        assert arr.dtype == after[name].dtype and np.array_equal(arr, after[name])
    x = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
    a = make_session(tmp_path / "q.onnx").run(None, {"x": x})[0]
    b = make_session(rebuilt).run(None, {"x": x})[0]
    assert np.array_equal(a, b)


@pytest.mark.parametrize("sparsity", [0.0, 0.9])
def test_coded_size_is_within_two_percent_of_the_entropy_bound(tmp_path: Path, sparsity: float):
    src = _onnx(tmp_path / "m.onnx", sparsity=sparsity)
    stats = pack(src, tmp_path / "m.mcpk")
    assert stats.entropy_bound_bytes == onnx_weight_bound(src).entropy_bytes  # the same symbols as the report
    assert 1.0 <= stats.coded_vs_bound <= 1.02, stats
    assert stats.bytes < (tmp_path / "m.onnx").stat().st_size / (3.8 if sparsity == 0 else 10)


def test_a_corrupt_package_and_nan_weights_are_named(tmp_path: Path):
    (tmp_path / "x.mcpk").write_bytes(b"PK\x03\x04 not a package")
    with pytest.raises(ValueError, match=r"x.mcpk is not a transfer package"):
        unpack(tmp_path / "x.mcpk")
    src = _onnx(tmp_path / "m.onnx")
    m = onnx.load(str(src))
    init = m.graph.initializer[0]
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] = np.nan
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(m, str(src))
    with pytest.raises(ValueError, match=r"tensor '.*' of m.onnx: weights contain NaN or Inf"):
        pack(src, tmp_path / "m.mcpk")


def test_a_weight_shared_artifact_is_coded_as_codebook_indices_and_rebuilt_exactly(tmp_path: Path):
    from model_compression.quantize.kmeans import KMeansConfig, share

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    with torch.no_grad():
        w = model[0].weight
        w[w.abs() < w.abs().median()] = 0  # half pruned, as Deep Compression does first
    share(model, KMeansConfig(bits=4))
    src = tmp_path / "k.onnx"
    torch.onnx.export(model, (torch.zeros(2, 256),), str(src), input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)  # fmt: skip
    stats = pack(src, tmp_path / "k.mcpk", bits=8, min_numel=1024)
    _, symbols, _, shared = unpack(tmp_path / "k.mcpk")
    big = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(src)).graph.initializer if i.dims[0] == 512}
    name = next(n for n in big if big[n].ndim == 2)
    assert shared[name].dtype == np.float32 and shared[name].size <= 17
    assert np.array_equal(shared[name][symbols[name]], big[name])  # exact, not 8-bit rounded
    # 256 x 512 weights: 1 bit for zero or not, plus at most 4 bits for the non-zero half's
    # cluster (less: k-means clusters are unequal) -> at most 3 bits per weight, codebook
    # counts and the 17 float16 values included
    assert 256 * 512 * 2.5 / 8 < stats.coded_bytes < 256 * 512 * 3 / 8
    assert stats.coded_vs_bound < 1.01
    out = rebuild(tmp_path / "k.mcpk", tmp_path / "r.onnx")
    x = {"x": np.random.default_rng(0).standard_normal((2, 256)).astype(np.float32)}
    assert np.array_equal(make_session(out).run(None, x)[0], make_session(src).run(None, x)[0])


def test_small_tensors_are_coded_only_when_exact_and_shorter(tmp_path: Path):
    from model_compression.quantize.kmeans import KMeansConfig, share

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 10))  # 384 and 240 weights
    share(model, KMeansConfig(bits=3, min_numel=300))  # the first layer shared, the second not
    src = tmp_path / "s.onnx"
    torch.onnx.export(model, (torch.zeros(2, 16),), str(src), input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)  # fmt: skip
    stats = pack(src, tmp_path / "s.mcpk", bits=8, min_numel=1024)
    graph, symbols, _, shared = unpack(tmp_path / "s.mcpk")
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(src)).graph.initializer}
    shared_name = next(n for n, a in inits.items() if a.size == 384)
    assert list(symbols) == [shared_name] and stats.exact  # 384 x 3 bits coded; the rest stays raw
    assert np.array_equal(shared[shared_name][symbols[shared_name]], inits[shared_name])
    assert {i.name for i in graph.graph.initializer} == set(inits) - {shared_name}
    out = rebuild(tmp_path / "s.mcpk", tmp_path / "r.onnx")
    x = {"x": np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)}
    assert np.array_equal(make_session(out).run(None, x)[0], make_session(src).run(None, x)[0])


def test_int32_tensors_spanning_2_to_the_32_round_trip_in_memory_proportional_to_the_tensor(tmp_path: Path):
    """A static-int8 graph's int32 biases can span about 2^32 (channels with near-zero
    weights): the package codes them over the values they hold, not a table of the range."""
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    wide = rng.integers(-(2**31), 2**31 - 1, size=200_000, dtype=np.int64).astype(np.int32)
    wide[:4] = [-(2**31), 2**31 - 1, 0, 0]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "bias"], ["y"])],
        "wide",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.INT32, [200_000])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT32, [200_000])],
        [numpy_helper.from_array(wide, "bias")],
    )
    src = tmp_path / "wide.onnx"
    onnx.save(onnx.helper.make_model(graph), str(src))
    # in a fresh process, so that its peak RSS is the packing's own: a range-sized table
    # would need 2^32 counts (32 GiB); 3x the bound below is still far under that
    code = (
        "import resource, sys; from model_compression.info.package import pack, verify; "
        f"pack({str(src)!r}, {str(tmp_path / 'w.mcpk')!r}); verify({str(src)!r}, {str(tmp_path / 'w.mcpk')!r}); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    peak_mib = int(out.stdout.split()[-1]) / 1024
    assert peak_mib < 3 * 600, f"packing a 0.8 MB int32 tensor peaked at {peak_mib:.0f} MiB"
    rebuilt = rebuild(tmp_path / "w.mcpk", tmp_path / "r.onnx")
    back = numpy_helper.to_array(onnx.load(str(rebuilt)).graph.initializer[0])
    assert back.dtype == np.int32 and np.array_equal(back, wide)
    _, symbols, scales, _ = unpack(tmp_path / "w.mcpk")
    assert scales["bias"] == 0.0 and np.array_equal(symbols["bias"], wide)


def test_float_packages_are_not_exact_and_integer_ones_are(tmp_path: Path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = _onnx(tmp_path / "m.onnx")
    assert not pack(src, tmp_path / "m.mcpk").exact  # float weights coded at 8 bits
    quantize_dynamic(str(src), str(tmp_path / "q.onnx"), weight_type=QuantType.QInt8)
    assert pack(tmp_path / "q.onnx", tmp_path / "q.mcpk").exact
