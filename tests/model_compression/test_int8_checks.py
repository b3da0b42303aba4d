"""int8 that counts as built: saturating int32 biases are found and their nodes kept in
float, and the graph's outputs are checked against float on the calibration samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model_compression import onnx_export
from model_compression.errors import NotApplicable
from model_compression.quantize.checks import output_agreement, saturated_biases
from model_compression.quantize.onnx_int8 import OnnxInt8Config, quantize
from model_compression.quantize.presets import recipe_step


class DepthwiseBlock(nn.Module):
    """conv -> BN -> ReLU -> depthwise 3x3 -> BN -> ReLU -> pointwise -> pooled linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.dw, self.b2 = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16)
        self.pw, self.fc = nn.Conv2d(16, 32, 1), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b2(self.dw(torch.relu(self.b1(self.c1(x))))))
        return self.fc(torch.relu(self.pw(x)).mean((2, 3)))


@pytest.fixture
def dead_channel(tmp_path: Path) -> Path:
    """The block with depthwise channel 5 nearly dead (weights ~1e-7) and a BatchNorm bias
    on it, BatchNorm folded into the convolutions as onnxruntime's pre-processing does."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    torch.manual_seed(0)
    model = DepthwiseBlock().eval()
    with torch.no_grad():
        for bn in (model.b1, model.b2):
            bn.running_var.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
        model.dw.weight[5] = 1e-7 * torch.randn_like(model.dw.weight[5])
        model.b2.bias[5] = 0.5
    raw = onnx_export.export(model, {"pixels": torch.zeros(2, 1, 28, 28)}, tmp_path / "raw.onnx", "logits",
                             {"pixels": {0: "b"}, "logits": {0: "b"}})  # fmt: skip
    quant_pre_process(str(raw), str(tmp_path / "model.onnx"), skip_symbolic_shape=True)
    return tmp_path / "model.onnx"


class Ctx:
    preset = "avx512_vnni"

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds

    def calibration(self) -> list[dict[str, np.ndarray]]:
        return self.feeds


def _feeds(n: int = 8) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"pixels": rng.standard_normal((8, 1, 28, 28)).astype(np.float32)} for _ in range(n)]


def test_a_dead_depthwise_channel_would_clip_its_bias_and_the_step_zeroes_it_first(dead_channel: Path, tmp_path: Path):
    # uint8 weights: onnxruntime's weight-scale adjustment does not cover them, and the bias clips
    cfg = OnnxInt8Config(mode="static", per_channel=True, weight_type="uint8", reduce_range=False)
    quantize(dead_channel, tmp_path / "plain.onnx", cfg, _feeds())
    clipped = saturated_biases(tmp_path / "plain.onnx")
    assert list(clipped) == ["/dw/Conv"] and clipped["/dw/Conv"]["saturated"] == 1  # channel 5 of 16
    plain = output_agreement(dead_channel, tmp_path / "plain.onnx", _feeds())
    info = recipe_step(dead_channel, tmp_path / "int8.onnx", cfg, Ctx(_feeds()))
    assert list(info["zeroed_dead_channels"].values()) == [[5]] and info["protected_nodes"] == {}
    assert saturated_biases(tmp_path / "int8.onnx") == {}
    check = info["calibration_check"]
    assert check["cosine_min"] > plain["cosine_min"] and check["max_abs_error"] < plain["max_abs_error"]
    assert check["top1_agreement"] >= 0.95 and info["quantized_nodes"] > 0


def test_outputs_that_diverge_from_float_are_not_built(dead_channel: Path, tmp_path: Path):
    cfg = OnnxInt8Config(mode="static", per_channel=True, min_cosine=0.999999)
    with pytest.raises(NotApplicable, match=r"int8 outputs diverge from float on the calibration samples: mean cosine"):
        recipe_step(dead_channel, tmp_path / "int8.onnx", cfg, Ctx(_feeds()))


def test_output_agreement_is_one_for_the_same_graph(dead_channel: Path):
    same = output_agreement(dead_channel, dead_channel, _feeds(2))
    assert same["cosine_min"] == pytest.approx(1.0) and same["max_abs_error"] == 0.0 and same["top1_agreement"] == 1.0
