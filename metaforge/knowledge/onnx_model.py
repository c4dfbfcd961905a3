"""all-MiniLM-L6-v2 as an ONNX graph built from the same safetensors weights, run by ONNX Runtime.

No export from torch is needed: the graph is written op by op from the BERT definition (the
NumPy forward pass in embed.py is the reference it is tested against) and kept in the user's cache
directory, so it is built once per machine. ONNX Runtime fuses attention, GELU and LayerNorm and
runs them multi-threaded: the element-wise work that bounds NumPy is gone.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

OPSET = 17


def build(weights: dict[str, np.ndarray], layers: int, heads: int = 12, dim: int = 384):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name: str, array) -> str:
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    w = weights
    const("word", w["embeddings.word_embeddings.weight"])
    const("pos", w["embeddings.position_embeddings.weight"])
    const("type0", w["embeddings.token_type_embeddings.weight"][0])
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
    const("idx1", np.array(1, dtype=np.int64))
    const("zero_i", np.array(0, dtype=np.int64))
    const("one_i", np.array(1, dtype=np.int64))
    const("tiny", np.float32(1e-9))
    const("tiny2", np.float32(1e-12))

    def layer_norm(x: str, prefix: str, out: str) -> str:
        g, b = const(prefix + ".g", w[prefix + ".weight"]), const(prefix + ".b", w[prefix + ".bias"])
        return node("LayerNormalization", [x, g, b], out, axis=-1, epsilon=1e-12)

    def linear(x: str, prefix: str, out: str) -> str:
        wt = const(prefix + ".w", np.ascontiguousarray(w[prefix + ".weight"].T))
        b = const(prefix + ".bb", w[prefix + ".bias"])
        return node("Add", [node("MatMul", [x, wt], out + ".mm"), b], out)

    node("Shape", ["input_ids"], "ids_shape")
    node("Gather", ["ids_shape", "idx1"], "seq_len", axis=0)
    node("Range", ["zero_i", "seq_len", "one_i"], "positions")
    x = node("Add", [node("Add", [node("Gather", ["word", "input_ids"], "we"), node("Gather", ["pos", "positions"], "pe")],
                          "wp"), "type0"], "emb")
    x = layer_norm(x, "embeddings.LayerNorm", "x0")
    inv = node("Sub", ["one", "attention_mask"], "inv_mask")
    bias = node("Unsqueeze", [node("Mul", [inv, "neg"], "bias2")], "bias", )
    nodes[-1].input.append("axes12")
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
    graph = helper.make_graph(
        nodes, "minilm",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, ["batch", "seq"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="metaforge")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def cached_model_path(source: Path) -> Path:
    from metaforge import __version__

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    stamp = f"{source.stat().st_size}-{int(source.stat().st_mtime)}"
    return Path(base) / "metaforge" / f"minilm-{__version__}-{stamp}.onnx"


def session(weights_file: Path, load_weights, layers_of):
    """An ONNX Runtime session for the model, building (once) and caching the graph."""
    import onnxruntime as ort

    path = cached_model_path(weights_file)
    if not path.exists():
        weights = load_weights()
        data = build(weights, layers_of(weights))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = min(os.cpu_count() or 1, 4)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
