"""The local embedding model against sentence-transformers' own output (fixtures made once with
sentence-transformers 6.2 and torch 2.13 on the same weights)."""

import json
import socket
from pathlib import Path

import numpy as np
import pytest

REF = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module", params=["onnx", "numpy"])
def embedder(request):
    from metaforge.knowledge.embed import Embedder

    e = Embedder(backend=request.param)
    assert (e.session is not None) == (request.param == "onnx")
    return e


def test_embeddings_match_sentence_transformers(embedder):
    got = embedder.encode(REF["sentences"])
    want = np.array(REF["embeddings"], dtype=np.float32)
    assert got.shape == (6, 384)
    assert np.abs(got - want).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_batching_and_order_do_not_change_a_vector(embedder):
    texts = REF["sentences"]
    one_by_one = np.vstack([embedder.encode([t]) for t in texts])
    reversed_batch = embedder.encode(texts[::-1], batch=2)[::-1]
    assert np.abs(one_by_one - reversed_batch).max() < 1e-5


def test_loading_and_embedding_touch_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the embedding model tried to reach the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from metaforge.knowledge.embed import Embedder

    assert Embedder().encode(["offline"]).shape == (1, 384)
