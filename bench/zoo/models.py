"""The zoo's three architectures, as ``nn.Module`` factories with width/depth keywords.

The defaults build the benchmark models; the test fixtures (``tests/byo/zoo.py``) build
tiny versions of the same code with small keywords. Every factory takes Fashion-MNIST
images normalised with ``model_compression.datasets.fashion_mnist.normalize`` and returns
``(batch, classes)`` logits. ``INPUT_SHAPES`` gives one example's shape per factory, as
the catalogue's ``arch.input.shape`` declares it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

# (out_channels, stride) of each depthwise-separable block of the default MobileNet:
# after the stride-2 stem, 14x14 -> 7x7 -> 4x4 -> 2x2, MobileNet-v1 widths up to 512.
MOBILENET_BLOCKS: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1))


class SeparableBlock(nn.Module):
    """Depthwise 3x3 conv (``groups == channels``) - BN - ReLU - pointwise 1x1 conv - BN - ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False)
        self.dw_bn = nn.BatchNorm2d(cin)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dw_bn(self.dw(x)))
        return torch.relu(self.pw_bn(self.pw(x)))


class MobileNet(nn.Module):
    """A stem conv, depthwise-separable blocks, global average pool and a linear head."""

    def __init__(self, stem: int, stem_stride: int, blocks: Sequence[tuple[int, int]], classes: int) -> None:
        super().__init__()
        conv = nn.Conv2d(1, stem, 3, stride=stem_stride, padding=1, bias=False)
        self.stem = nn.Sequential(conv, nn.BatchNorm2d(stem), nn.ReLU())
        layers, cin = [], stem
        for cout, stride in blocks:
            layers.append(SeparableBlock(cin, cout, stride))
            cin = cout
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def mobilenet(
    stem: int = 32, stem_stride: int = 2, blocks: Sequence[tuple[int, int]] = MOBILENET_BLOCKS, classes: int = 10
) -> MobileNet:
    """A MobileNet-v1-style CNN for (batch, 1, 28, 28) images -> (batch, classes) logits.

    Args:
        stem: channels of the plain 3x3 stem conv (default 32).
        stem_stride: its stride (default 2: the blocks start at 14x14; with stride 1 a
            training step took about 4x as long on one CPU thread).
        blocks: ``(out_channels, stride)`` per depthwise-separable block (default
            ``MOBILENET_BLOCKS``: 32-64-128-128-256-256-512-512, down to 2x2).
        classes: logits (default 10).

    The default has 542,474 parameters (BatchNorm included; 518,144 of them in the seven
    pointwise convs) and 5.0 M multiply-adds per image. ``mobilenet(stem=8,
    blocks=((16, 1), (32, 2)))`` has 1,418.
    """
    return MobileNet(stem, stem_stride, tuple(blocks), classes)


class Attention(nn.Module):
    """Multi-head self-attention written out (MatMul, Softmax), so the ONNX graph shows it
    op by op rather than as one fused kernel a graph pass cannot see into."""

    def __init__(self, dim: int, heads: int, tokens: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim must be a multiple of heads, got dim={dim}, heads={heads}")
        self.dim, self.heads, self.tokens, self.scale = dim, heads, tokens, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fixed token count and width, -1 for the batch: the graph reshapes by constants
        # instead of computing shapes at run time (Shape/Gather/Concat chains)
        n, d = self.tokens, self.dim
        q, k, v = self.qkv(x).reshape(-1, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(-1, n, d))


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, hidden: int, tokens: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchTransformer(nn.Module):
    """ViT: non-overlapping patches -> linear embedding + learned positions, pre-norm
    encoder layers, final LayerNorm, mean over tokens, linear head."""

    def __init__(self, patch: int, dim: int, depth: int, heads: int, mlp_ratio: int, classes: int) -> None:
        super().__init__()
        if 28 % patch:
            raise ValueError(f"patch must divide 28, got {patch}")
        self.patch, self.grid = patch, 28 // patch
        tokens = self.grid**2
        self.embed = nn.Linear(patch * patch, dim)
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.layers = nn.Sequential(*(EncoderLayer(dim, heads, mlp_ratio * dim, tokens) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, g = self.patch, self.grid
        # (b, 1, 28, 28) -> (b, g*g, p*p): patches in row-major order, each flattened row-major
        patches = x.reshape(-1, g, p, g, p).permute(0, 1, 3, 2, 4).reshape(-1, g * g, p * p)
        tokens = self.layers(self.embed(patches) + self.pos)
        return self.head(self.norm(tokens).mean(dim=1))  # mean pool: no CLS token to expand per batch


def vit(
    patch: int = 7, dim: int = 128, depth: int = 4, heads: int = 4, mlp_ratio: int = 2, classes: int = 10
) -> PatchTransformer:
    """A ViT for (batch, 1, 28, 28) images -> (batch, classes) logits.

    Args:
        patch: patch side in pixels; must divide 28 (default 7: 16 tokens of 49 pixels).
        dim: token width (default 128); heads: attention heads (default 4, head dim 32).
        depth: encoder layers (default 4); mlp_ratio: MLP hidden = ratio x dim (default 2).
        classes: logits (default 10).

    The default has 539,914 parameters (132,480 per layer) and 8.8 M multiply-adds per
    image. ``vit(dim=16, depth=1, heads=2)`` has 3,482.
    """
    return PatchTransformer(patch, dim, depth, heads, mlp_ratio, classes)


class RowGRU(nn.Module):
    """A GRU reading an image's rows as time steps; linear head on the last hidden state."""

    def __init__(self, features: int, hidden: int, layers: int, classes: int) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def gru(features: int = 28, hidden: int = 128, layers: int = 2, classes: int = 10) -> RowGRU:
    """A row-sequence GRU for (batch, 28, 28) images (28 steps of 28 pixels) -> (batch, classes).

    Args:
        features: pixels per row, the GRU's input width (default 28).
        hidden: GRU hidden width (default 128); layers: stacked GRU layers (default 2).
        classes: logits (default 10).

    The default has 161,034 parameters and 4.4 M multiply-adds per image (28 steps);
    ``gru(hidden=16, layers=1)`` has 2,378.
    """
    return RowGRU(features, hidden, layers, classes)


FACTORIES: dict[str, Callable[..., nn.Module]] = {"zoo-mobilenet": mobilenet, "zoo-vit": vit, "zoo-gru": gru}
INPUT_SHAPES: dict[str, tuple[int, ...]] = {"zoo-mobilenet": (1, 28, 28), "zoo-vit": (1, 28, 28), "zoo-gru": (28, 28)}
