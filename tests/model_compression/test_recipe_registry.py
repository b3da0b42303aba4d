"""Recipes: named chains of registered steps, validated with the offending step named."""

import pytest

from model_compression.distill.finetune import FinetuneConfig
from model_compression.prune.structured import ChannelPruneConfig
from model_compression.quantize.kmeans import KMeansConfig
from model_compression.registry import STEPS, recipe_steps

# what each catalogue kind supports (its adapter in tasks/kinds lists the same)
CNN_STEPS = frozenset({"prune_channels", "prune", "finetune", "kmeans", "int8", "int4"})
SUPPORTED = {
    "image-classifier": CNN_STEPS,
    "text-encoder": frozenset({"layer_drop", "prune_transformer", "prune", "finetune", "kmeans", "int8", "int4"}),
}


def test_a_recipe_becomes_its_typed_configs_in_order():
    steps = [
        {"step": "prune_channels", "amount": 0.5, "skip": ["classifier.3"]},
        {"step": "finetune", "train": {"epochs": 2, "lr": 0.001}},
        {"step": "kmeans", "bits": 4},
        {"step": "int8", "mode": "static"},
    ]
    chain = recipe_steps("dc", steps, CNN_STEPS, "image-classifier")
    assert [s for s, _ in chain] == ["prune_channels", "finetune", "kmeans", "int8"]
    assert chain[0][1] == ChannelPruneConfig(amount=0.5, skip=("classifier.3",))
    assert isinstance(chain[1][1], FinetuneConfig) and chain[1][1].train.epochs == 2
    assert chain[2][1] == KMeansConfig(bits=4)


@pytest.mark.parametrize(
    ("steps", "kind", "match"),
    [
        ([], "image-classifier", r"recipes.r must be a non-empty list"),
        ([{"step": "prune_rows"}], "image-classifier", r"recipes.r\[0\]: unknown step 'prune_rows'; known steps"),
        ([{"step": "prune_transformer"}], "image-classifier", r"does not apply to kind 'image-classifier'"),
        ([{"step": "int8"}, {"step": "prune"}], "text-encoder", r"recipes.r\[1\]: torch step 'prune' after an ONNX"),
        ([{"step": "kmeans", "bits": 12}], "text-encoder", r"KMeansConfig.bits must be in \[1, 8\]"),
        ([{"step": "kmeans", "levels": 4}], "text-encoder", r"recipes.r\[0\].kmeans: unknown field\(s\) \['levels'\]"),
        (["prune"], "text-encoder", r"recipes.r\[0\] must be a mapping with a 'step' key"),
    ],
)
def test_bad_recipes_are_named(steps, kind, match):
    with pytest.raises(ValueError, match=match):
        recipe_steps("r", steps, SUPPORTED[kind], kind)


def test_an_encoder_recipe_can_drop_layers_prune_structure_and_fine_tune():
    steps = [
        {"step": "layer_drop", "keep": [0, 2, 4]},
        {"step": "prune_transformer", "heads": 0.25, "neurons": 0.5},
        {"step": "finetune", "steps": 100, "hidden_weight": 0.5},
        {"step": "int4", "ops": ["Gather"]},
        {"step": "int8", "op_types": ["MatMul"]},
    ]
    chain = recipe_steps("re-embed", steps, SUPPORTED["text-encoder"], "text-encoder")
    assert [s for s, _ in chain] == ["layer_drop", "prune_transformer", "finetune", "int4", "int8"]
    assert chain[0][1].keep == (0, 2, 4) and chain[2][1].hidden_weight == 0.5


def test_every_step_runs_on_torch_or_onnx():
    assert {s.runs_on for s in STEPS.values()} == {"torch", "onnx"}
