"""Transformer fusion, then the drop-in chain (fuse -> sub-4-bit table -> int8) on the tiny encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_compression.errors import NotApplicable
from model_compression.fuse.transformer import TransformerFusionConfig, fuse
from model_compression.kinds import text_encoder
from model_compression.models.text_encoder import load_encoder, tokenize
from model_compression.quantize.embedding_lowbit import EmbeddingLowBitConfig
from model_compression.quantize.onnx_embedding import quantize as embed_lowbit
from model_compression.quantize.onnx_int8 import OnnxInt8Config
from model_compression.quantize.onnx_int8 import quantize as int8
from model_compression.runtime.session import make_session

SENTENCES = [f"sentence number {i} talks about {w} and more" for i, w in enumerate(["fires", "cricket", "rain"] * 4)]


def embed(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return make_session(path).run(None, feeds)[0]


def test_fusion_keeps_the_outputs_and_the_chain_compresses(tiny_bert_dir: Path, tmp_path: Path):
    model, tok = load_encoder(tiny_bert_dir)
    base = text_encoder.export(model, tok, tmp_path / "fp32.onnx")
    feeds = {k: v.numpy() for k, v in tokenize(tok, SENTENCES, 32).items()}
    fused = fuse(base, tmp_path / "fused.onnx", TransformerFusionConfig(num_heads=2, hidden_size=32))
    assert fused["Attention"] == 2 and fused["SkipLayerNormalization"] >= 2  # one per layer
    np.testing.assert_allclose(embed(tmp_path / "fused.onnx", feeds), embed(base, feeds), atol=2e-5)

    counts = np.zeros(30522, np.int64)
    counts[tokenize(tok, SENTENCES, 32)["input_ids"].flatten().numpy()] += 1
    report = embed_lowbit(tmp_path / "fused.onnx", tmp_path / "lb.onnx",
                          EmbeddingLowBitConfig(mean_bits=2.5, block_size=32), counts)  # fmt: skip
    table = report["encoder.embeddings.word_embeddings.weight"]
    assert table["bytes_after"] < table["bytes_before"] / 7  # 2.5 bits + 32 bits per 32-wide block + tier maps
    int8(tmp_path / "lb.onnx", tmp_path / "q.onnx", OnnxInt8Config(mode="dynamic", op_types=("MatMul", "Attention")))
    cos = (embed(tmp_path / "q.onnx", feeds) * embed(base, feeds)).sum(1)
    assert cos.min() > 0.95  # every table row the sentences use has 4 bits: the frequent tokens
    assert (tmp_path / "q.onnx").stat().st_size < base.stat().st_size / 5


def test_attention_can_stay_unfused(tiny_bert_dir: Path, tmp_path: Path):
    """``attention: false``: layer norms and GELU fuse, the attention MatMuls stay (for int8 MatMulInteger)."""
    model, tok = load_encoder(tiny_bert_dir)
    base = text_encoder.export(model, tok, tmp_path / "fp32.onnx")
    feeds = {k: v.numpy() for k, v in tokenize(tok, SENTENCES, 32).items()}
    fused = fuse(base, tmp_path / "fused.onnx", TransformerFusionConfig(num_heads=2, hidden_size=32, attention=False))
    assert "Attention" not in fused and fused["SkipLayerNormalization"] >= 2
    np.testing.assert_allclose(embed(tmp_path / "fused.onnx", feeds), embed(base, feeds), atol=2e-5)


def test_a_graph_without_attention_does_not_fuse(tmp_path: Path):
    from onnx import TensorProto, helper, save

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])  # fmt: skip
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "r.onnx")
    with pytest.raises(NotApplicable, match=r"nothing in r.onnx fuses as a bert transformer"):
        fuse(tmp_path / "r.onnx", tmp_path / "f.onnx")


def test_fusion_config_names_the_bad_field():
    with pytest.raises(ValueError, match="model_type must be bert, gpt2 or vit"):
        TransformerFusionConfig(model_type="t5")
