"""Random damage to log and index (issue 16): whatever is done to the files, no command serves or
appends onto a graph that differs from a replay of a verified log.

Each example copies a repository (a real git repository with a real log and index), damages it
(byte flips, truncation, line swaps, lines dropped or doubled, the segment removed; random 4 KB pages or a
truncation in index.db), then runs reads and a write through `mf`'s own entry point. The oracle
verifies the chain itself (hash of each line, seq without gaps, `prev` links) and folds the
events with the graph fold:

- a read that succeeds answers the graph of the log as it was last verified (the undamaged
  one), or of the damaged log if that one still verifies (a truncation on a line boundary);
- a write that succeeds leaves a log that verifies from its first line to its last, whose index
  answers exactly its replay; a write that fails leaves the log byte for byte as it was;
- damage to the index alone never fails a read.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaforge.cli.app import run
from metaforge.events import GENESIS, check_hash
from metaforge.graph import GraphState

SEGMENT = ".metaforge/events/000001.jsonl"
N = 60


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    path = root / "product"
    env = {"MF_ACTOR": "user:tester"}
    os.environ.update(env)
    assert _mf("init", str(path))[0] == 0
    changes = [{"add": f"BOMItem:R{i}", "props": {"quantity": i + 1, "notes": f"n{i}" * 40}} for i in range(N)]
    changes += [{"set": f"BOMItem:R{i}", "props": {"mpn": f"M{i}"}} for i in range(0, N, 3)]
    (root / "c.json").write_text(json.dumps(changes))
    assert _mf("-C", str(path), "mutate", "apply", str(root / "c.json"))[0] == 0
    subprocess.run(["git", "add", "-A"], cwd=path, check=True, capture_output=True)
    subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@x.invalid", "commit", "-qm", "twin"],
                   cwd=path, check=True)
    assert _mf("-C", str(path), "status")[0] == 0  # index written and its WAL folded in
    return path


def _mf(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(args))
    return code, out.getvalue(), err.getvalue()


def _verified_prefix(data: bytes) -> tuple[list[dict], bool]:
    """The oracle: the events of the log up to its first fault, and whether it has none."""
    events, prev, seq = [], GENESIS, 0
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    for line in complete:
        h = check_hash(line)
        try:
            d = orjson.loads(line)
        except ValueError:
            return events, False
        seq += 1
        if h is None or not isinstance(d, dict) or d.get("seq") != seq or d.get("prev") != prev:
            return events, False
        events.append(d)
        prev = h
    return events, tail == b""


def _bytes(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def _graph(events: list[dict]) -> dict:
    state = GraphState()
    for e in events:
        state.apply(e)
    return {nid: (n.version, n.props) for nid, n in state.nodes.items() if n is not None and not n.deleted}


def _served(repo: Path) -> tuple[int, dict | None]:
    code, out, _ = _mf("-C", str(repo), "query", "--type", "BOMItem", "--json")
    if code != 0:
        return code, None
    return 0, {n["id"]: (n["version"], n["properties"]) for n in json.loads(out)}


LOG_DAMAGE = st.sampled_from(["flip", "truncate", "swap", "drop", "double", "remove"])
INDEX_DAMAGE = st.sampled_from(["page", "pages", "truncate", "header"])


def _damage_log(path: Path, kind: str, rnd: random.Random) -> None:
    data = bytearray(path.read_bytes())
    lines = bytes(data).splitlines(keepends=True)
    if kind == "remove":
        path.unlink()
    elif kind == "flip":
        at = rnd.randrange(len(data))
        data[at] ^= 1 << rnd.randrange(8)
        path.write_bytes(bytes(data))
    elif kind == "truncate":
        path.write_bytes(bytes(data[:rnd.randrange(len(data))]))
    else:
        i = rnd.randrange(len(lines) - 1)
        if kind == "swap":
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif kind == "drop":
            del lines[i]
        else:
            lines.insert(i, lines[i])
        path.write_bytes(b"".join(lines))


def _damage_index(path: Path, kind: str, rnd: random.Random) -> None:
    size = path.stat().st_size
    pages = size // 4096
    with open(path, "r+b") as f:
        if kind in ("page", "pages"):
            for _ in range(1 if kind == "page" else rnd.randint(2, 5)):
                f.seek(rnd.randrange(pages) * 4096)
                f.write(rnd.randbytes(4096))
        elif kind == "truncate":
            f.truncate(rnd.randrange(size))
        else:
            f.seek(rnd.randrange(100))
            f.write(rnd.randbytes(8))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(["log", "index", "both"]), log_kind=LOG_DAMAGE, index_kind=INDEX_DAMAGE,
       seed=st.integers(0, 2**32 - 1))
def test_no_command_serves_or_appends_onto_a_graph_a_verified_log_does_not_give(base, tmp_path_factory, target,
                                                                                log_kind, index_kind, seed):
    rnd = random.Random(seed)
    repo = tmp_path_factory.mktemp("case") / "product"
    shutil.copytree(base, repo)
    seg = repo / SEGMENT
    original = seg.read_bytes()
    good = _graph(_verified_prefix(original)[0])
    if target in ("log", "both"):
        _damage_log(seg, log_kind, rnd)
    if target in ("index", "both"):
        _damage_index(repo / ".metaforge/index.db", index_kind, rnd)
    damaged = _bytes(seg)
    events, whole = _verified_prefix(damaged)
    allowed = [good] + ([_graph(events)] if whole else [])

    # reads
    code, served = _served(repo)
    if target == "index":
        assert code == 0, "damage to the index alone must never fail a read"
    if code == 0:
        assert served in allowed, f"served a graph no verified log gives ({target} {log_kind} {index_kind})"

    # a write
    before = _bytes(seg)
    code, _, err = _mf("-C", str(repo), "mutate", "set", "BOMItem:R1", "notes=after")
    after = _bytes(seg)
    if code == 0:
        events, whole = _verified_prefix(after)
        assert _verified_prefix(before)[1], f"appended onto a log that did not verify ({target} {log_kind})"
        assert whole and after.startswith(before), f"the log does not verify after the write: {err}"
        code, served = _served(repo)
        assert code == 0 and served == _graph(events)
    else:
        assert after == before, "a refused write changed the log"
        assert code in (1, 2), err
