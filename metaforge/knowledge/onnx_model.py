"""all-MiniLM-L6-v2 as an ONNX graph built from the same safetensors weights, run by ONNX Runtime.

No export from torch is needed: the graph is written op by op from the BERT definition (the
NumPy forward pass in embed.py is the reference it is tested against) and serialized by the small
protobuf writer below (the `onnx` package and its protobuf runtime would add 37 MB to the install
for this one job). It is kept in the user's cache directory, so it is built once per machine.

The embedding tables (the word table is 30,522 × 384, half the weights) stay out of the graph:
embed.py looks up the rows a text needs in the memory-mapped safetensors file and feeds their sum
in, so a session loads 43 MB, not 90, and a question touches a dozen rows of the table.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

OPSET = 17
GRAPH_VERSION = "3"  # the graph's own shape: a change here builds a new cached file

# ---- a minimal protobuf writer for onnx.proto's ModelProto --------------------------------------


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _int(field: int, n: int) -> bytes:
    return _key(field, 0) + _varint(n)


def _bytes(field: int, data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    return _key(field, 2) + _varint(len(data)) + data


def _float(field: int, x: float) -> bytes:
    return _key(field, 5) + struct.pack("<f", x)


_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.int64): 7}


def _tensor(name: str, array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    if array.dtype not in _DTYPES:
        array = array.astype(np.float32)
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, _DTYPES[array.dtype]) + _bytes(8, name) + _bytes(9, array.astype(array.dtype.newbyteorder("<")).tobytes())


def _attribute(name: str, value) -> bytes:
    if isinstance(value, float):
        return _bytes(1, name) + _float(2, value) + _int(20, 1)
    if isinstance(value, int):
        return _bytes(1, name) + _int(3, value) + _int(20, 2)
    if isinstance(value, (list, tuple)):
        return _bytes(1, name) + b"".join(_int(8, v) for v in value) + _int(20, 7)
    raise TypeError(f"attribute {name}: {value!r}")


def _node(op: str, inputs: list[str], outputs: list[str], attrs: dict) -> bytes:
    return (b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
            + _bytes(4, op) + b"".join(_bytes(5, _attribute(k, v)) for k, v in attrs.items()))


def _value_info(name: str, elem_type: int, dims: list) -> bytes:
    shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, elem_type) + _bytes(2, shape)))


def _model(nodes: list[bytes], inits: list[bytes], inputs: list[bytes], outputs: list[bytes]) -> bytes:
    graph = (b"".join(_bytes(1, n) for n in nodes) + _bytes(2, "minilm") + b"".join(_bytes(5, t) for t in inits)
             + b"".join(_bytes(11, i) for i in inputs) + b"".join(_bytes(12, o) for o in outputs))
    return _int(1, 8) + _bytes(2, "metaforge") + _bytes(7, graph) + _bytes(8, _bytes(1, "") + _int(2, OPSET))


# ---- the graph ----------------------------------------------------------------------------------


def build(weights: dict[str, np.ndarray], layers: int, heads: int = 12, dim: int = 384) -> bytes:
    """The model from token vectors to the pooled, normalized sentence embedding. Inputs: `tokens`
    float [batch, seq, dim], each the sum of its word, position and token-type embeddings (embed.py
    adds them, from the memory-mapped tables), and `attention_mask` float [batch, seq]."""
    nodes: list[bytes] = []
    inits: list[bytes] = []

    def const(name: str, array) -> str:
        inits.append(_tensor(name, np.asarray(array)))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(_node(op, inputs, [out], attrs))
        return out

    w = weights
    const("one", np.float32(1))
    const("half", np.float32(0.5))
    const("sqrt2", np.float32(np.sqrt(2)))
    const("neg", np.float32(-1e9))
    const("scale", np.float32(1 / np.sqrt(dim // heads)))
    const("shape4", np.array([0, 0, heads, dim // heads], dtype=np.int64))
    const("shape3", np.array([0, 0, dim], dtype=np.int64))
    const("axis1", np.array([1], dtype=np.int64))
    const("axes12", np.array([1, 2], dtype=np.int64))
    const("axis2", np.array([2], dtype=np.int64))
    const("tiny", np.float32(1e-9))
    const("tiny2", np.float32(1e-12))

    def layer_norm(x: str, prefix: str, out: str) -> str:
        g, b = const(prefix + ".g", w[prefix + ".weight"]), const(prefix + ".b", w[prefix + ".bias"])
        return node("LayerNormalization", [x, g, b], out, axis=-1, epsilon=1e-12)

    def linear(x: str, prefix: str, out: str) -> str:
        wt = const(prefix + ".w", np.ascontiguousarray(w[prefix + ".weight"].T))
        b = const(prefix + ".bb", w[prefix + ".bias"])
        return node("Add", [node("MatMul", [x, wt], out + ".mm"), b], out)

    x = layer_norm("tokens", "embeddings.LayerNorm", "x0")
    inv = node("Sub", ["one", "attention_mask"], "inv_mask")
    bias = node("Unsqueeze", [node("Mul", [inv, "neg"], "bias2"), "axes12"], "bias")
    for i in range(layers):
        p = f"encoder.layer.{i}."
        q = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.query", f"q{i}"), "shape4"], f"q{i}r")],
                 f"q{i}t", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.key", f"k{i}"), "shape4"], f"k{i}r")],
                 f"k{i}t", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.value", f"v{i}"), "shape4"], f"v{i}r")],
                 f"v{i}t", perm=[0, 2, 1, 3])
        s = node("Add", [node("Mul", [node("MatMul", [q, k], f"s{i}"), "scale"], f"s{i}s"), bias], f"s{i}b")
        a = node("Softmax", [s], f"a{i}", axis=-1)
        c = node("Reshape", [node("Transpose", [node("MatMul", [a, v], f"c{i}")], f"c{i}t", perm=[0, 2, 1, 3]),
                             "shape3"], f"c{i}r")
        o = linear(c, p + "attention.output.dense", f"o{i}")
        x = layer_norm(node("Add", [x, o], f"r{i}"), p + "attention.output.LayerNorm", f"x{i}a")
        h = linear(x, p + "intermediate.dense", f"h{i}")
        gelu = node("Mul", [node("Mul", [h, "half"], f"g{i}h"),
                            node("Add", ["one", node("Erf", [node("Div", [h, "sqrt2"], f"g{i}d")], f"g{i}e")],
                                 f"g{i}p")], f"g{i}")
        f = linear(gelu, p + "output.dense", f"f{i}")
        x = layer_norm(node("Add", [x, f], f"r{i}b"), p + "output.LayerNorm", f"x{i}b")
    m = node("Unsqueeze", ["attention_mask", "axis2"], "m3")
    summed = node("ReduceSum", [node("Mul", [x, m], "xm"), "axis1"], "sum", keepdims=0)
    count = node("Max", [node("ReduceSum", [m, "axis1"], "cnt", keepdims=0), "tiny"], "cntc")
    pooled = node("Div", [summed, count], "pooled")
    norm = node("Max", [node("Sqrt", [node("ReduceSum", [node("Mul", [pooled, pooled], "sq"), "axis1"], "ss",
                                           keepdims=1)], "norm"), "tiny2"], "normc")
    node("Div", [pooled, norm], "embedding")
    return _model(nodes, inits, [_value_info("tokens", 1, ["batch", "seq", dim]),
                                 _value_info("attention_mask", 1, ["batch", "seq"])],
                  [_value_info("embedding", 1, ["batch", dim])])


def cached_model_path(source: Path) -> Path:
    """Where the graph built from these weights is cached: named by what the weights are (their
    size, and a digest of their header and of their first and last MB: 2 ms to read), so every
    install of the same weights on a machine shares one file."""
    import hashlib

    from metaforge import __version__

    size = source.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(source, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read())
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "metaforge" / f"minilm-{__version__}-g{GRAPH_VERSION}-{h.hexdigest()[:16]}.onnx"


def session(weights_file: Path, load_weights, layers_of, threads: int | None = None):
    """An ONNX Runtime session for the model. Once per machine the graph is built and ONNX Runtime's
    optimized form of it saved next to it; later sessions load that form with no optimizing to do.
    Indexing runs it on up to 4 threads (a question is embedded in NumPy, see embed.py)."""
    import onnxruntime as ort

    path = cached_model_path(weights_file)
    optimized = path.with_name(f"{path.stem}-ort{ort.__version__}.opt.onnx")
    if not path.exists():
        weights = load_weights()
        _write(path, build(weights, layers_of(weights)))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
    options.log_severity_level = 3
    if optimized.exists():
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(optimized), options, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - a damaged cache file is made again
            optimized.unlink(missing_ok=True)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    tmp = optimized.with_name(f".{optimized.name}.{os.getpid()}")
    options.optimized_model_filepath = str(tmp)
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    if tmp.exists():
        os.replace(tmp, optimized)
    return sess


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
