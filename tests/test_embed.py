"""The local embedding model against sentence-transformers' own output (fixtures made once with
sentence-transformers 6.2 and torch 2.13 on the same weights)."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REF = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module", params=["onnx", "numpy", "mapped"])
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


def test_the_wordpiece_tokenizer_gives_the_ids_tokenizers_gives():
    """mf's own tokenizer against Hugging Face's (a test dependency only), on the README, the
    reference sentences and random text of every kind of character the normalizer treats."""
    import random

    from tokenizers import Tokenizer

    from metaforge.knowledge.embed import MAX_TOKENS, model_dir
    from metaforge.knowledge.wordpiece import WordPiece

    path = model_dir() / "tokenizer.json"
    ours = WordPiece(path, MAX_TOKENS)
    theirs = Tokenizer.from_file(str(path))
    theirs.enable_truncation(max_length=MAX_TOKENS)
    theirs.no_padding()
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    texts = REF["sentences"] + [line for line in readme.splitlines() if line.strip()] + [readme[:6000]]
    rnd = random.Random(17)
    alphabet = ("abcXYZ019 .,;:!?'\"-_/\\()[]{}<>=+*&^%$#@~`|\t\n\r\u00e9\u00fc\u00c5\u00df\u0130\u03a9\u4e2d\u6587"
                "\u3042\u00a0\u2013\u2014\u201c\u201d\u00b0\u00b5\u03bc\u2126\u200b\ufffd\u0000\u0301\U0001F600"
                "\u0660[CLS][SEP][MASK]")
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 60))) for _ in range(2000)]
    texts += ["x" * 150 + " ok", "supercalifragilistic " * 200]
    wrong = [t for t in texts if ours.encode(t) != theirs.encode(t).ids]
    assert not wrong, wrong[:3]


def test_embedding_imports_neither_torch_nor_tokenizers_nor_onnx():
    code = ("import sys; from metaforge.knowledge.embed import Embedder; Embedder().encode(['a question']);"
            "print(sorted(m for m in ('torch', 'tokenizers', 'onnx', 'transformers', 'sentence_transformers',"
            " 'huggingface_hub') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_fetch_model_takes_the_files_from_the_machine_cache_and_checks_them(tmp_path):
    """scripts/fetch-model fills a target from the per-machine cache without the network; a cached
    file whose bytes changed is not used (its sha256 no longer matches)."""
    from metaforge.knowledge.embed import model_dir

    script = Path(__file__).resolve().parents[1] / "scripts" / "fetch-model"
    cache = tmp_path / "cache" / "metaforge"
    src = model_dir()
    text = script.read_text()
    digest = text.split('"model.safetensors": ("', 1)[1][:16]
    cached = cache / f"minilm-weights-{digest}"
    cached.mkdir(parents=True)
    for name in ("model.safetensors", "tokenizer.json"):
        shutil.copyfile(src / name, cached / name)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "model")], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    # a changed byte in the cache: not used; with no index to fetch from, the script fails saying so
    data = bytearray((cached / "tokenizer.json").read_bytes())
    data[100] ^= 1
    (cached / "tokenizer.json").write_bytes(bytes(data))
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "model2")], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode != 0
    assert not (tmp_path / "model2" / "tokenizer.json").exists()
