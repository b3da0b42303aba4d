"""Structured pruning (channels, heads, FFN neurons) and fine-tuning with zeros held."""

import numpy as np
import pytest
import torch
from torch import nn

from model_compression.distill.finetune import FinetuneConfig, finetune_classifier, finetune_encoder
from model_compression.models.fashion_cnn import CNNConfig, FashionCNN, TrainConfig
from model_compression.models.text_encoder import SentenceEncoder
from model_compression.prune.magnitude import MagnitudePruneConfig, prune
from model_compression.prune.structured import (
    ChannelPruneConfig,
    TransformerPruneConfig,
    prune_channels,
    prune_transformer,
)
from model_compression.quantize.kmeans import KMeansConfig, share
from model_compression.score.structure import unit_scores


def cnn() -> FashionCNN:
    torch.manual_seed(0)
    return FashionCNN(CNNConfig(channels=(8, 16), hidden=32)).eval()


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_channel_pruning_shrinks_every_tensor_of_the_chain():
    small, shapes = prune_channels(cnn(), ChannelPruneConfig(amount=0.5))
    # conv 1->4, conv 4->8, linear 8*49->16, linear 16->10 (the classifier keeps its outputs)
    assert n_params(small) == (4 * 9 + 4) + (8 * 4 * 9 + 8) + (8 * 49 * 16 + 16) + (16 * 10 + 10)
    assert shapes == {"features.0": [8, 4], "features.3": [16, 8], "classifier.1": [32, 16], "classifier.3": [10, 10]}
    assert small(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_kept_units_round_up_to_a_multiple_and_never_past_the_layer():
    # 8 * 0.45 = 3.6 -> 5 kept -> 8 (all); 16 -> 9 kept -> 16 (all); 32 -> 18 -> 24
    _, shapes = prune_channels(cnn(), ChannelPruneConfig(amount=0.45, round_to=8))
    assert shapes == {"features.0": [8, 8], "features.3": [16, 16], "classifier.1": [32, 24], "classifier.3": [10, 10]}
    _, shapes = prune_channels(cnn(), ChannelPruneConfig(amount=0.7, round_to=4))
    assert [after for _, after in shapes.values()] == [4, 8, 12, 10]  # 3 -> 4, 5 -> 8, 10 -> 12
    with pytest.raises(ValueError, match="round_to must be a positive"):
        ChannelPruneConfig(round_to=0)


def test_channel_pruning_keeps_the_highest_l1_channels_and_their_exact_function():
    model = cnn()
    with torch.no_grad():  # silence half the first conv's channels: pruning them changes nothing
        model.features[0].weight[::2] = 0
        model.features[0].bias[::2] = -1.0  # ReLU(-1) = 0: these channels output nothing
    small, _ = prune_channels(model, ChannelPruneConfig(amount=0.5, skip=("features.3", "classifier")))
    assert torch.equal(small.features[0].weight, model.features[0].weight[1::2])
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(small(x), model(x), atol=1e-5)


def test_batchnorm_between_layers_is_sliced_with_its_conv():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5)
    ).eval()
    model[1].running_mean.uniform_(-1, 1)
    small, _ = prune_channels(model, ChannelPruneConfig(amount=0.25))
    keep = unit_scores(model[0].weight).topk(6).indices.sort().values
    assert small[1].num_features == 6 and torch.equal(small[1].running_mean, model[1].running_mean[keep])
    assert small(torch.zeros(2, 3, 6, 6)).shape == (2, 5)


def test_channel_pruning_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\)"):
        ChannelPruneConfig(amount=1.0)
    with pytest.raises(ValueError, match="at least two"):
        prune_channels(nn.Sequential(nn.Linear(4, 4)), ChannelPruneConfig())
    branchy = nn.Sequential(nn.Linear(4, 6), nn.Linear(5, 2))  # not a chain: 6 outputs, 5 inputs
    with pytest.raises(ValueError, match="not a multiple"):
        prune_channels(branchy, ChannelPruneConfig())


def tiny_bert() -> SentenceEncoder:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=32, attn_implementation="eager")  # fmt: skip
    return SentenceEncoder(BertModel(cfg)).eval()


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 100, (3, 10), generator=torch.Generator().manual_seed(2))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_transformer_pruning_removes_heads_and_neurons():
    model = tiny_bert()
    small, kept = prune_transformer(model, TransformerPruneConfig(heads=0.5, neurons=0.25))
    assert kept == {"layer.0": [2, 48], "layer.1": [2, 48]}
    layer = small.encoder.encoder.layer[0]
    assert layer.attention.self.query.weight.shape == (16, 32)  # 2 heads x 8 dims
    assert layer.attention.output.dense.weight.shape == (32, 16)
    assert layer.intermediate.dense.weight.shape == (48, 32) and layer.output.dense.weight.shape == (32, 48)
    per_layer = 3 * (16 * 32 + 16) + (32 * 16) + (48 * 32 + 48) + (32 * 48)
    before = 3 * (32 * 32 + 32) + (32 * 32) + (64 * 32 + 64) + (32 * 64)
    assert n_params(model) - n_params(small) == 2 * (before - per_layer)
    out = small(**batch())
    assert out.shape == (3, 32) and torch.allclose(out.norm(dim=-1), torch.ones(3))


def test_a_silent_head_is_removed_first_and_changes_nothing():
    model = tiny_bert()
    layer = model.encoder.encoder.layer[0]
    with torch.no_grad():  # head 1 of layer 0 reads and writes nothing
        for proj in ("query", "key", "value"):
            getattr(layer.attention.self, proj).weight[8:16] = 0
            getattr(layer.attention.self, proj).bias[8:16] = 0
        layer.attention.output.dense.weight[:, 8:16] = 0
    small, _ = prune_transformer(model, TransformerPruneConfig(heads=0.25, neurons=0.0))
    kept_q = small.encoder.encoder.layer[0].attention.self.query.weight
    assert torch.equal(kept_q[8:16], layer.attention.self.query.weight[16:24])  # head 1 is gone
    b = batch()
    # layer 1 lost a live head, so compare at layer 0's output only
    ref = model.encoder(**b, output_hidden_states=True).hidden_states[1]
    got = small.encoder(**b, output_hidden_states=True).hidden_states[1]
    assert torch.allclose(ref, got, atol=1e-5)


def test_transformer_pruning_refuses_other_models():
    with pytest.raises(ValueError, match="BERT-style"):
        prune_transformer(nn.Linear(2, 2), TransformerPruneConfig())
    with pytest.raises(ValueError, match="heads must be in"):
        TransformerPruneConfig(heads=1.0)


def test_classifier_finetuning_learns_and_holds_pruned_zeros():
    teacher = cnn()
    student, _ = prune_channels(teacher, ChannelPruneConfig(amount=0.5))
    with torch.no_grad():
        student.classifier[1].weight[:, ::2] = 0
    rng = np.random.default_rng(0)
    x = rng.random((256, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    cfg = FinetuneConfig(train=TrainConfig(epochs=3, batch_size=32, lr=0.003))
    losses = finetune_classifier(student, teacher, x, y, cfg)
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert (student.classifier[1].weight[:, ::2] == 0).all()


def test_centroid_finetuning_keeps_assignments_and_zeros_and_moves_the_codebook():
    teacher = cnn()
    student, _ = prune_channels(teacher, ChannelPruneConfig(amount=0.5))
    prune(student, MagnitudePruneConfig(sparsity=0.8, scope="global", min_numel=64))
    share(student, KMeansConfig(bits=3, min_numel=64))
    w = student.classifier[1].weight
    before = w.detach().clone()
    values, groups = before.flatten().unique(return_inverse=True)
    assert 3 <= len(values) <= 9 and (values == 0).any()  # zero and at most 8 centroids
    rng = np.random.default_rng(0)
    x = rng.random((256, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    losses = finetune_classifier(
        student, teacher, x, y, FinetuneConfig(train=TrainConfig(epochs=3, batch_size=32, lr=0.003))
    )
    assert losses[-1] < losses[0]
    after = w.detach().flatten()
    # every weight that shared a value still shares it with the same others, zeros included
    for g in range(len(values)):
        assert after[groups == g].unique().numel() == 1
    assert (after[before.flatten() == 0] == 0).all()
    moved = [float(after[groups == g][0]) for g in range(len(values))]
    assert moved != values.tolist()  # the centroids learned
    assert all(float(torch.tensor(v).half().float()) == v for v in moved)  # float16 codebook: packaged exactly


class _Tok:
    """A whitespace tokenizer with the Hugging Face call signature, for tiny_bert."""

    def __call__(self, texts, padding, truncation, max_length, return_tensors):
        ids = [[1 + int(w[1:]) for w in t.split()][:max_length] for t in texts]
        width = max(len(i) for i in ids)
        return {
            "input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
            "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids]),
        }


def test_encoder_finetuning_pulls_the_pruned_student_toward_the_teacher():
    teacher = tiny_bert()
    student, _ = prune_transformer(teacher, TransformerPruneConfig(heads=0.5, neurons=0.5))
    with torch.no_grad():
        student.encoder.encoder.layer[0].intermediate.dense.weight[:, :4] = 0
    sentences = [" ".join(f"w{(i * 7 + j) % 50}" for j in range(8)) for i in range(64)]
    cfg = FinetuneConfig(steps=30, batch_size=16, lr=3e-3, max_length=16)
    losses = finetune_encoder(student, teacher, _Tok(), sentences, cfg)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert (student.encoder.encoder.layer[0].intermediate.dense.weight[:, :4] == 0).all()
    with pytest.raises(ValueError, match="at least batch_size"):
        finetune_encoder(student, teacher, _Tok(), sentences[:4], cfg)


def test_structure_scores_list_every_removable_group():
    from model_compression.score.structure import structure_scores

    rows = structure_scores(cnn())
    assert [(r["layer"], r["unit"], r["count"]) for r in rows] == [
        ("features.0", "channel", 8), ("features.3", "channel", 16), ("classifier.1", "neuron", 32)
    ]  # fmt: skip
    assert all(r["min"] <= r["median"] <= r["max"] and len(r["scores"]) == r["count"] for r in rows)
    bert = structure_scores(tiny_bert())
    assert [(r["layer"], r["unit"], r["count"]) for r in bert] == [
        ("layer.0", "head", 4), ("layer.0", "ffn_neuron", 64), ("layer.1", "head", 4), ("layer.1", "ffn_neuron", 64)
    ]  # fmt: skip


def test_layer_drop_keeps_the_named_teacher_layers():
    from model_compression.prune.structured import LayerDropConfig, drop_layers

    teacher = tiny_bert()
    student = drop_layers(teacher, LayerDropConfig(keep=(1,)))
    kept = student.encoder.encoder.layer
    assert len(kept) == 1
    assert torch.equal(kept[0].intermediate.dense.weight, teacher.encoder.encoder.layer[1].intermediate.dense.weight)
    assert student(**batch()).shape == (3, 32)
    with pytest.raises(ValueError, match="distinct non-negative layer indices"):
        LayerDropConfig(keep=(0, 0))
    with pytest.raises(ValueError, match="needs a sentence encoder"):
        drop_layers(cnn(), LayerDropConfig())
