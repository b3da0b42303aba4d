"""Weight-shared tensors of an ONNX graph stored as packed codebook indices, decoded by the
graph itself with standard ops.

After k-means (``quantize/kmeans.py``) a weight tensor holds at most 2^bits distinct
values, yet the ONNX file still stores 32 bits per weight. This step stores each such
initializer as its codebook (float32, the distinct values) plus its indices packed 1, 2,
4 or 8 bits wide into uint8, and inserts the decode in front of its readers:

    packed [m] -> Unsqueeze -> BitShift(right, [0, b, 2b, ...]) -> Mod 2^b -> Reshape [-1]
      -> Slice [:n] -> Cast int64 -> Gather(codebook) -> Reshape(shape)

Every input of that chain is an initializer, so onnxruntime folds it into the dense weight
when the session is created (constant folding, on by default): the file is about 32/b
times smaller and the model runs exactly as fast as the dense one, with exactly its
weights (``dense`` decodes a graph back; the transfer package codes that dense form).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from model_compression.errors import NotApplicable
from model_compression.quantize.onnx_embedding import opset

PREFIX = "codebook/"  # names of the decode nodes and tensors this step adds
MIN_OPSET = 13  # BitShift (11), Unsqueeze with axes as an input (13)


@dataclass(frozen=True)
class CodebookGraphConfig:
    """Attributes:
    max_values: a float initializer with at most this many distinct values is coded,
        in [2, 256] (default 16: indices at most 4 bits wide).
    min_numel: smaller initializers stay as they are (default 1024 elements).
    """

    max_values: int = 16
    min_numel: int = 1024

    def __post_init__(self) -> None:
        if not 2 <= self.max_values <= 256:
            raise ValueError(f"CodebookGraphConfig.max_values must be in [2, 256], got {self.max_values}")
        if self.min_numel < 1:
            raise ValueError(f"CodebookGraphConfig.min_numel must be >= 1, got {self.min_numel}")


def width(values: int) -> int:
    """Bits per index for ``values`` distinct values: 1, 2, 4 or 8 (a divisor of 8, so that
    indices never straddle a byte)."""
    need = max(1, int(np.ceil(np.log2(values))))
    return next(b for b in (1, 2, 4, 8) if b >= need)


def pack(indices: np.ndarray, bits: int) -> np.ndarray:
    """Flat uint8 bytes holding ``indices`` (each < 2^bits) ``8 // bits`` to a byte, the
    first in the lowest bits; the tail is padded with zeros."""
    per = 8 // bits
    flat = np.zeros(-(-indices.size // per) * per, np.uint8)
    flat[: indices.size] = indices.ravel()
    shifts = (np.arange(per, dtype=np.uint8) * bits)[None, :]
    return np.bitwise_or.reduce(flat.reshape(-1, per) << shifts, axis=1).astype(np.uint8)


def unpack(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """The first ``n`` indices of ``pack``'s bytes (what the decode nodes compute)."""
    if bits == 8:  # one index per byte: nothing to split
        return packed[:n].astype(np.int64)
    shifts = (np.arange(8 // bits, dtype=np.uint8) * bits)[None, :]
    return ((packed[:, None] >> shifts) % np.uint8(1 << bits)).reshape(-1)[:n].astype(np.int64)


def _decode_nodes(name: str, shape: tuple[int, ...], n: int, bits: int) -> tuple[list[onnx.NodeProto], list[Any]]:
    """The nodes that turn ``<PREFIX><name>/packed`` and ``/values`` back into ``name``,
    and the constant initializers they read. 8-bit indices skip the split: one per byte."""
    p = f"{PREFIX}{name}/"
    consts = [
        numpy_helper.from_array(np.arange(8 // bits, dtype=np.uint8) * np.uint8(bits), p + "shifts"),
        numpy_helper.from_array(np.array(shape, np.int64), p + "shape"),
    ]
    nodes, indices = [], p + "packed"
    if bits < 8:
        consts += [
            numpy_helper.from_array(np.array([1], np.int64), p + "axis"),
            numpy_helper.from_array(np.array(1 << bits, np.uint8), p + "modulus"),
            numpy_helper.from_array(np.array([-1], np.int64), p + "flat"),
            numpy_helper.from_array(np.array([0], np.int64), p + "start"),
            numpy_helper.from_array(np.array([n], np.int64), p + "end"),
        ]
        nodes = [
            helper.make_node("Unsqueeze", [p + "packed", p + "axis"], [p + "column"], name=p + "unsqueeze"),
            helper.make_node(
                "BitShift", [p + "column", p + "shifts"], [p + "shifted"], direction="RIGHT", name=p + "bits"
            ),
            helper.make_node("Mod", [p + "shifted", p + "modulus"], [p + "fields"], name=p + "mod"),
            helper.make_node("Reshape", [p + "fields", p + "flat"], [p + "all"], name=p + "flatten"),
            helper.make_node("Slice", [p + "all", p + "start", p + "end"], [p + "indices8"], name=p + "slice"),
        ]
        indices = p + "indices8"
    nodes += [
        helper.make_node("Cast", [indices], [p + "indices"], to=onnx.TensorProto.INT64, name=p + "cast"),
        helper.make_node("Gather", [p + "values", p + "indices"], [p + "dense"], axis=0, name=p + "gather"),
        helper.make_node("Reshape", [p + "dense", p + "shape"], [name], name=p + "reshape"),
    ]
    return nodes, consts


def encode(model: onnx.ModelProto, cfg: CodebookGraphConfig) -> dict[str, dict[str, int]]:
    """Code every float32 initializer of ``model`` with at most ``cfg.max_values`` distinct
    values and ``cfg.min_numel`` elements or more, in place; returns {name: {values, bits}}."""
    if opset(model) < MIN_OPSET:
        raise ValueError(f"codebook decoding needs ONNX opset >= {MIN_OPSET}, the model has {opset(model)}")
    graph_inputs = {i.name for i in model.graph.input}
    coded: dict[str, dict[str, int]] = {}
    keep, decode = [], []
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if init.name in graph_inputs or arr.dtype != np.float32 or arr.size < cfg.min_numel:
            keep.append(init)
            continue
        values, indices = np.unique(arr, return_inverse=True)
        if values.size > cfg.max_values:
            keep.append(init)
            continue
        bits = width(values.size)
        nodes, consts = _decode_nodes(init.name, arr.shape, arr.size, bits)
        keep += [
            numpy_helper.from_array(pack(indices, bits), f"{PREFIX}{init.name}/packed"),
            numpy_helper.from_array(values.astype(np.float32), f"{PREFIX}{init.name}/values"),
            *consts,
        ]
        decode += nodes
        coded[init.name] = {"values": int(values.size), "bits": bits}
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(decode + nodes)  # decoders first: the graph stays topologically sorted
    return coded


def _coded(model: onnx.ModelProto) -> list[str]:
    """Names of the tensors ``model`` decodes from a codebook."""
    return [n.output[0] for n in model.graph.node if n.name.startswith(PREFIX) and n.name.endswith("/reshape")]


def index_bits(model: onnx.ModelProto) -> dict[str, int]:
    """{coded tensor: bits per stored index} of ``model``."""
    inits = {i.name: i for i in model.graph.initializer}
    out = {}
    for name in _coded(model):
        shifts = numpy_helper.to_array(inits[f"{PREFIX}{name}/shifts"])
        out[name] = int(shifts[1]) if shifts.size > 1 else 8  # shifts are 0, b, 2b, ...
    return out


def dense(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every coded tensor decoded back to a plain initializer and
    the decode nodes removed: the graph ``encode`` was given, up to initializer order.
    A graph that codes nothing is returned as it is: the package and the weight statistics
    call this on every artifact, and copying MiniLM's 90 MB graph for nothing costs memory."""
    coded = index_bits(model)
    if not coded:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    decoded = []
    for name, bits in coded.items():
        p = f"{PREFIX}{name}/"
        shape = tuple(int(d) for d in numpy_helper.to_array(inits[p + "shape"]))
        n = int(np.prod(shape))
        idx = unpack(numpy_helper.to_array(inits[p + "packed"]), bits, n)
        decoded.append(numpy_helper.from_array(numpy_helper.to_array(inits[p + "values"])[idx].reshape(shape), name))
    kept = [i for i in out.graph.initializer if not i.name.startswith(PREFIX)]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + decoded)
    nodes = [n for n in out.graph.node if not n.name.startswith(PREFIX)]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def recipe_step(src: Path, dst: Path, cfg: CodebookGraphConfig, ctx: Any) -> dict[str, Any]:
    """Recipe step ``codebook`` (``registry.STEPS``)."""
    model = onnx.load(str(src))
    coded = encode(model, cfg)
    if not coded:
        raise NotApplicable(
            f"no float initializer of {Path(src).name} has at most {cfg.max_values} distinct values and "
            f"{cfg.min_numel} elements: run kmeans before codebook"
        )
    onnx.save(model, str(dst))
    return {"coded": len(coded), "index_bits": sorted({c["bits"] for c in coded.values()})}
