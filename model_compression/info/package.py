"""Entropy-coded transfer package of an ONNX artifact's weights, and its entropy bound.

Every weight tensor with at least ``min_numel`` elements becomes a stream of symbols:
integer tensors (int8 artifacts) as they are, float tensors after ``bits``-bit linear
quantization (``info.entropy.linear_quantize``, the same symbols the bound is computed on).
Each stream is coded with an ANS coder (``constriction``) under its own zeroth-order model,
the tensor's symbol counts, stored beside it. A stream whose values span a range wider than
the tensor itself (int32 biases of a static-int8 graph can span 2^32) is coded over the
sorted list of the values it holds instead, stored beside it as delta varints: memory
stays proportional to the tensor, never to its range. Everything else (graph, small
tensors) is zlib-compressed protobuf. Decoding returns exactly the symbols that were
encoded. A package is ``exact`` when every coded tensor is an integer or weight-shared
tensor; float tensors are coded at ``bits`` bits, so the model it decodes to is not the
artifact and has to be evaluated on its own.

Layout: ``MAGIC``, 8-byte little-endian header length, JSON header (per tensor: name,
shape, dtype, scale, lowest symbol, codebook and payload lengths), zlib'd graph, then per
tensor its codebook (raw-deflated varint counts of each symbol value), the shared values
of a weight-shared tensor (float16 when exact, else float32) and the payload (uint32
words). The entropy bound is sum(numel x H(symbols)) / 8 bytes; the package's coded part
(payloads + codebooks) lands within a fraction of a percent of it for tensors of tens of
thousands of weights and more (0.05-0.7 % on the catalogue's artifacts).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from model_compression.info.entropy import empirical_entropy, symbols_and_codebook, tensor_symbols
from model_compression.quantize.onnx_codebook import dense

MAGIC = b"MCPK2\n"


@dataclass(frozen=True)
class PackageStats:
    """Sizes in bytes. ``coded_bytes`` = payloads + their codebooks/counts of the tensors
    with ``min_numel``+ elements (the part the bound describes, the same tensors as
    ``onnx_weights``'s bound); ``bytes`` = the whole file, graph and small tensors (coded
    or not) included. ``tensors`` counts every coded tensor, ``numel`` the bound's."""

    bytes: int
    coded_bytes: int
    entropy_bound_bytes: int
    tensors: int
    numel: int
    exact: bool = True

    @property
    def coded_vs_bound(self) -> float:
        return self.coded_bytes / max(self.entropy_bound_bytes, 1)


def _symbols(arr: np.ndarray, bits: int) -> tuple[np.ndarray, float, np.ndarray | None]:
    """(int64 symbols, scale, codebook values) of one tensor (``tensor_symbols``): weights =
    values[symbols] for a weight-shared tensor (exact), else symbols x scale; scale 0 marks
    an integer tensor stored as it is."""
    if np.issubdtype(arr.dtype, np.integer):
        return tensor_symbols(arr, bits).astype(np.int64), 0.0, None
    if not np.isfinite(arr).all():
        raise ValueError("weights contain NaN or Inf values")
    symbols, book = symbols_and_codebook(arr, bits)
    if book is not None:
        return symbols.astype(np.int64), 1.0, book
    peak = float(np.abs(arr.astype(np.float32)).max())
    scale = peak / (2 ** (bits - 1) - 1) if peak > 0 else 1.0  # linear_quantize's own scale
    return symbols.astype(np.int64), scale, None


def _deflate(data: bytes) -> bytes:
    """Raw DEFLATE (no zlib header or checksum: 6 bytes a codebook does not need to pay)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _inflate(data: bytes) -> bytes:
    return zlib.decompress(data, -15)


def _varints(values: np.ndarray) -> bytes:
    """LEB128 varints of non-negative integers."""
    out = bytearray()
    for v in values.tolist():
        while True:
            byte, v = v & 0x7F, v >> 7
            out.append(byte | (0x80 if v else 0))
            if not v:
                break
    return bytes(out)


def _unvarints(data: bytes, n: int) -> np.ndarray:
    out, shift, acc = [], 0, 0
    for byte in data:
        acc |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            out.append(acc)
            acc, shift = 0, 0
    if len(out) != n:
        raise ValueError(f"codebook holds {len(out)} counts, expected {n}: the package is corrupt")
    return np.asarray(out, dtype=np.int64)


DENSE_SPAN = 1 << 16  # a count per value of the range while the range is no wider than this or the tensor


def _zigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def _unzigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.uint64)
    return ((v >> np.uint64(1)).astype(np.int64)) ^ -((v & np.uint64(1)).astype(np.int64))


def _ans(symbols: np.ndarray) -> tuple[int, bytes, np.ndarray]:
    """(lowest symbol, the codebook: deflated varint counts of every symbol from the lowest
    to the highest, compressed uint32 words) of a flat stream of a narrow range."""
    import constriction

    low = int(symbols.min())
    counts = np.bincount(symbols - low)
    book = _deflate(_varints(counts))
    if np.count_nonzero(counts) == 1:  # a constant tensor: the codebook says it all
        return low, book, np.zeros(0, np.uint32)
    model = constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse((symbols - low).astype(np.int32), model)
    return low, book, coder.get_compressed()


def _code(flat: np.ndarray, dtype: np.dtype) -> tuple[dict[str, int], list[bytes]]:
    """(header fields, payload parts in order: counts, alphabet, words) of a flat stream.

    A narrow range is ANS-coded over counts of every value in it. A wide one (more values
    in its range than ``DENSE_SPAN`` and than it has elements) would need a range-sized
    table; it is coded either over the sorted values it holds (deflated zigzag deltas,
    then ANS over indices into them) or, when that is no shorter (every value distinct,
    as in int32 biases), as its own little-endian bytes, deflated."""
    span = int(flat.max()) - int(flat.min()) + 1
    if span <= max(DENSE_SPAN, flat.size):
        low, book, words = _ans(flat)
        return {"low": low, "span": span, "book": len(book), "words": int(words.size)}, [book, words.tobytes()]
    values, indices = np.unique(flat, return_inverse=True)
    alphabet = _deflate(_varints(_zigzag(np.diff(values, prepend=0))))
    low, book, words = _ans(indices.astype(np.int64))
    raw = _deflate(flat.astype(np.dtype(dtype).newbyteorder("<")).tobytes())  # an integer tensor's own bytes
    if len(raw) <= len(alphabet) + len(book) + words.nbytes:
        return {"raw": len(raw)}, [raw]
    fields = {"low": low, "span": int(values.size), "book": len(book), "words": int(words.size)}
    return {**fields, "alphabet": len(alphabet), "distinct": int(values.size)}, [book, alphabet, words.tobytes()]


def _decode(low: int, counts: np.ndarray, words: np.ndarray) -> np.ndarray:
    import constriction

    n = int(counts.sum())
    if np.count_nonzero(counts) == 1:
        return np.full(n, low + int(np.argmax(counts)), dtype=np.int64)
    model = constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)
    return constriction.stream.stack.AnsCoder(words).decode(model, n).astype(np.int64) + low


def _pack_tensor(name: str, arr: np.ndarray, bits: int) -> tuple[dict[str, object], bytes, bool]:
    """(header entry, payload bytes, whether the tensor is coded exactly) of one tensor."""
    symbols, scale, values = _symbols(arr, bits)
    fields, parts = _code(symbols.ravel(), arr.dtype)
    meta: dict[str, object] = {"name": name, "shape": list(arr.shape), "dtype": str(arr.dtype), "scale": scale}
    meta.update(fields)
    shared = b""
    if values is not None:  # the codebook's values: float16 when that is exact (k-means rounds to it)
        with np.errstate(over="ignore"):  # a value beyond float16's range: stored as float32 below
            half = values.astype("<f2")
        as_half = np.array_equal(half.astype(values.dtype), values)
        shared = (half if as_half else values.astype("<f4")).tobytes()
        meta["values"], meta["values_dtype"] = int(values.size), "<f2" if as_half else "<f4"
    # the shared values go after the counts and alphabet, before the words
    payload = b"".join(parts[:-1]) + shared + parts[-1] if "raw" not in fields else parts[0] + shared
    return meta, payload, scale == 0.0 or values is not None


def _worth_coding(meta: dict[str, object], payload: bytes, exact: bool, arr: np.ndarray) -> bool:
    """Whether a tensor below ``min_numel`` is coded: only exactly (an integer or weight-shared
    tensor: a small float tensor coded at ``bits`` bits would make the package inexact for a
    few bytes) and only where its header entry and payload are shorter than its raw bytes
    (a first layer's 144 shared weights: 60 bytes instead of 576; a 16-value bias: raw)."""
    entry = len(json.dumps(meta, separators=(",", ":"))) + 1
    return exact and entry + len(payload) < arr.nbytes


def pack(src: str | Path, dst: str | Path, bits: int = 8, min_numel: int = 1024) -> PackageStats:
    """Write the transfer package of the ONNX model at ``src`` to ``dst``. A graph that
    decodes its own codebooks (``quantize/onnx_codebook.py``) is packaged in its dense form:
    the entropy coder sees the indices, not their packed bytes."""
    model = dense(onnx.load(str(src)))
    header: list[dict[str, object]] = []
    payloads: list[bytes] = []
    numel, bound_bits, coded, exact, keep = 0, 0.0, 0, True, []
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.size == 0 or arr.dtype in (np.bool_, np.float16):  # float16: scales of coded tables, exact
            keep.append(init)
            continue
        try:
            meta, payload, tensor_exact = _pack_tensor(init.name, arr, bits)
        except ValueError as e:
            raise ValueError(f"tensor {init.name!r} of {Path(src).name}: {e}") from e
        small = arr.size < min_numel
        if small and not _worth_coding(meta, payload, tensor_exact, arr):
            keep.append(init)
            continue
        header.append(meta)
        payloads.append(payload)
        exact = exact and tensor_exact  # a float tensor coded at `bits` bits is not exact
        if small:  # in the file's size, like the graph; the bound and its coded part are the report's tensors
            continue
        coded += len(payload)  # the counts, any alphabet and shared values count in the coded size
        bound_bits += arr.size * empirical_entropy(tensor_symbols(arr, bits))
        numel += arr.size
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    graph = zlib.compress(model.SerializeToString(), 9)
    head = json.dumps({"bits": bits, "tensors": header, "graph_bytes": len(graph)}, separators=(",", ":")).encode()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", len(head)) + head + graph + b"".join(payloads))
    return PackageStats(
        bytes=Path(dst).stat().st_size,
        coded_bytes=coded,
        entropy_bound_bytes=math.ceil(bound_bits / 8),
        tensors=len(header),
        numel=numel,
        exact=exact,
    )


def unpack(
    path: str | Path,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray], dict[str, float], dict[str, np.ndarray]]:
    """(graph with the small tensors, {name: decoded symbols}, {name: scale}, {name: shared
    values}) of a package. A tensor with shared values is values[symbols]; otherwise a
    scale of 0 marks an integer tensor stored exactly, else weights = symbols x scale."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{Path(path).name} is not a transfer package (bad magic)")
    (n,) = struct.unpack("<Q", data[len(MAGIC) : len(MAGIC) + 8])
    start = len(MAGIC) + 8
    head = json.loads(data[start : start + n])
    pos = start + n + head["graph_bytes"]
    model = onnx.ModelProto.FromString(zlib.decompress(data[start + n : pos]))
    symbols, scales, shared = {}, {}, {}
    for t in head["tensors"]:
        if "raw" in t:  # a wide stream of (nearly) distinct values, stored as they are
            flat = np.frombuffer(_inflate(data[pos : pos + t["raw"]]), np.dtype(t["dtype"]).newbyteorder("<"))
            pos += t["raw"]
            symbols[t["name"]], scales[t["name"]] = flat.reshape(t["shape"]).astype(t["dtype"]), float(t["scale"])
            continue
        counts = _unvarints(_inflate(data[pos : pos + t["book"]]), t["span"])
        pos += t["book"]
        alphabet = None
        if "alphabet" in t:  # a wide stream: symbols index the sorted values listed here
            alphabet = np.cumsum(_unzigzag(_unvarints(_inflate(data[pos : pos + t["alphabet"]]), t["distinct"])))
            pos += t["alphabet"]
        if "values" in t:
            width = np.dtype(t["values_dtype"]).itemsize * t["values"]
            shared[t["name"]] = np.frombuffer(data[pos : pos + width], t["values_dtype"]).astype(t["dtype"])
            pos += width
        words = np.frombuffer(data[pos : pos + 4 * t["words"]], dtype="<u4").astype(np.uint32)
        pos += 4 * t["words"]
        flat = _decode(t["low"], counts, words)
        flat = flat if alphabet is None else alphabet[flat]
        symbols[t["name"]] = flat.reshape(t["shape"]).astype(t["dtype"] if t["scale"] == 0 else np.int64)
        scales[t["name"]] = float(t["scale"])
    return model, symbols, scales, shared


def verify(src: str | Path, path: str | Path, bits: int = 8) -> int:
    """Decode the package at ``path`` and compare every tensor with the symbols ``src``
    encodes to; returns the number of tensors checked, raises on any difference."""
    inits = {i.name: numpy_helper.to_array(i) for i in dense(onnx.load(str(src))).graph.initializer}
    _, symbols, _, _ = unpack(path)
    for name, decoded in symbols.items():
        expected, _, _ = _symbols(inits[name], bits)
        if decoded.shape != expected.shape or not np.array_equal(decoded, expected):
            raise ValueError(f"package {Path(path).name}: tensor {name!r} does not decode to what was encoded")
    return len(symbols)


def rebuild(path: str | Path, dst: str | Path) -> Path:
    """The ONNX model a package describes: integer and weight-shared tensors exactly, other
    float tensors dequantized."""
    model, symbols, scales, shared = unpack(path)
    for name, sym in symbols.items():
        if name in shared:
            arr = shared[name][sym]
        else:
            arr = sym if scales[name] == 0 else (sym.astype(np.float32) * np.float32(scales[name]))
        model.graph.initializer.append(numpy_helper.from_array(arr, name))
    onnx.save(model, str(dst))
    return Path(dst)
