"""Weight-shared tensors stored as packed codebook indices and decoded by the graph."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from model_compression import onnx_export
from model_compression.info import package
from model_compression.info.onnx_weights import onnx_layer_stats
from model_compression.models.fashion_cnn import CNNConfig, FashionCNN
from model_compression.quantize.kmeans import KMeansConfig, share
from model_compression.quantize.onnx_codebook import (
    CodebookGraphConfig,
    dense,
    encode,
    pack,
    recipe_step,
    unpack,
    width,
)
from model_compression.runtime.session import make_session


def export(model: torch.nn.Module, path: Path) -> Path:
    return onnx_export.export(
        model, {"image": torch.zeros(2, 1, 28, 28)}, path, "logits", {"image": {0: "b"}, "logits": {0: "b"}}
    )


@pytest.fixture
def shared_onnx(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = FashionCNN(CNNConfig(channels=(8, 16), hidden=32)).eval()
    share(model, KMeansConfig(bits=3))
    return export(model, tmp_path / "shared.onnx")


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_indices_pack_and_unpack_exactly_with_a_ragged_tail(bits: int):
    idx = np.random.default_rng(bits).integers(0, 1 << bits, size=1001)
    packed = pack(idx, bits)
    assert packed.dtype == np.uint8 and packed.size == -(-1001 * bits // 8)
    assert np.array_equal(unpack(packed, bits, 1001), idx)


def test_index_width_is_a_divisor_of_a_byte():
    assert [width(v) for v in (2, 3, 4, 5, 9, 16, 17, 256)] == [1, 2, 2, 4, 4, 4, 8, 8]


def test_the_coded_graph_runs_as_the_dense_one_from_a_fraction_of_the_bytes(shared_onnx: Path, tmp_path: Path):
    out = tmp_path / "coded.onnx"
    info = recipe_step(shared_onnx, out, CodebookGraphConfig(), None)
    assert info == {"coded": 2, "index_bits": [4]}  # conv 2 and the hidden layer: 8 centroids (+0) each
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    x = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    ref = make_session(shared_onnx).run(None, {"image": x})[0]
    assert np.array_equal(make_session(out).run(None, {"image": x})[0], ref)
    assert out.stat().st_size < shared_onnx.stat().st_size / 4
    # decoding gives back exactly the weights, and the stats see them with their index width
    before = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(shared_onnx)).graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in dense(onnx.load(str(out))).graph.initializer}
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    bits = {s.name: s.storage_bits for s in onnx_layer_stats(out)}
    assert bits["features.3.weight"] == 4 and bits["classifier.1.weight"] == 4


def test_the_transfer_package_codes_the_indices_not_their_packed_bytes(shared_onnx: Path, tmp_path: Path):
    coded = tmp_path / "coded.onnx"
    recipe_step(shared_onnx, coded, CodebookGraphConfig(), None)
    plain = package.pack(shared_onnx, tmp_path / "plain.mcpk")
    stats = package.pack(coded, tmp_path / "coded.mcpk")
    assert stats.exact and stats.coded_bytes == plain.coded_bytes
    assert package.verify(coded, tmp_path / "coded.mcpk") == stats.tensors
    rebuilt = package.rebuild(tmp_path / "coded.mcpk", tmp_path / "rebuilt.onnx")
    x = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32)
    assert np.array_equal(
        make_session(rebuilt).run(None, {"image": x})[0], make_session(coded).run(None, {"image": x})[0]
    )


def test_errors_name_the_problem(tmp_path: Path):
    with pytest.raises(ValueError, match=r"max_values must be in \[2, 256\]"):
        CodebookGraphConfig(max_values=300)
    torch.manual_seed(0)
    plain = export(FashionCNN(CNNConfig(channels=(8, 16), hidden=32)).eval(), tmp_path / "plain.onnx")
    with pytest.raises(ValueError, match="run kmeans before codebook"):
        recipe_step(plain, tmp_path / "out.onnx", CodebookGraphConfig(), None)
    old = onnx.load(str(plain))
    old.opset_import[0].version = 11
    with pytest.raises(ValueError, match="opset >= 13, the model has 11"):
        encode(old, CodebookGraphConfig())
