"""Figures for the knowledge layer (issue 9). Run: .venv/bin/python benchmarks/bench_knowledge.py

1. Indexing: chunks embedded and stored per second, on the drone twin grown to ~600 chunks of the
   kinds a real repository has (parts with descriptions, decisions with rationale, notes).
2. Search over 100,000 chunks, p50 in process after the model is loaded (real embeddings for 1,000
   distinct chunks, the rest near-copies of them with their own words, so both halves of the
   hybrid search have 100,000 rows to rank).
3. `mf ask` wall time from a cold start on that 100,000-chunk repository.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import mf_cmd, timed  # noqa: E402

WORDS = ["regulator", "sensor", "connector", "capacitor", "inductor", "oscillator", "transceiver", "MOSFET",
         "diode", "fuse", "crystal", "buzzer", "LED", "antenna", "header", "shunt", "ferrite", "TVS"]
USES = ["the logic rail", "the motor bus", "the GPS", "telemetry radio", "the camera", "the gimbal",
        "battery sensing", "the buzzer", "status lights", "the debug port", "the SD card", "the ESC signals"]


def grow(path: Path, n_parts: int, n_decisions: int) -> None:
    from metaforge.repo import Repo
    from metaforge.thread.changes_file import change_from_dict
    from metaforge.thread.commands import execute
    from metaforge.thread.policy import Source  # a bench's seed: decided, like a template

    rnd = random.Random(3)
    repo = Repo(path)
    parts = [{"add": f"BOMItem:Z{i}", "props": {
        "description": f"{rnd.choice(WORDS)} for {rnd.choice(USES)}, {rnd.choice(['automotive', 'industrial'])} grade",
        "mpn": f"ZX{i:05d}-{rnd.randrange(100)}", "rail": rnd.choice(["AUX", "SERVO", "VBAT"]),
        "current": f"{rnd.randrange(1, 90)}mA"}} for i in range(n_parts)]
    execute(repo, [change_from_dict(c, "bench") for c in parts], actor="agent:bench", source=Source.TEMPLATE)
    for i in range(n_decisions):
        c = {"set": f"BOMItem:Z{i}", "props": {"current": f"{rnd.randrange(1, 90)}mA"},
             "msg": f"Measured on the EVT bench, run {i}: the {rnd.choice(WORDS)} for {rnd.choice(USES)} drew less than datasheet typical"}
        execute(repo, [change_from_dict(c, "bench")], actor="user:bench", source=Source.TEMPLATE)
    repo.close()


def bench_indexing(work: Path) -> tuple[float, int]:
    from metaforge.knowledge.index import reconcile
    from metaforge.repo import Repo

    path = work / "index"
    subprocess.run(mf_cmd() + ["init", str(path), "--template", "drone-flight-controller"], check=True,
                   capture_output=True)
    grow(path, 400, 150)
    repo = Repo(path)
    repo.sync_warnings()
    from metaforge.knowledge.embed import embedder

    embedder()  # the model load is its own figure (in `mf ask` cold start)
    t = time.perf_counter()
    out = reconcile(repo)
    seconds = time.perf_counter() - t
    repo.close()
    return out["embedded"] / seconds, out["embedded"]


def bench_search(work: Path) -> tuple[float, float]:
    from metaforge.knowledge.chunks import Chunk
    from metaforge.knowledge.embed import embedder
    from metaforge.knowledge.index import open_store, search
    from metaforge.repo import Repo

    path = work / "search"
    subprocess.run(mf_cmd() + ["init", str(path)], check=True, capture_output=True)
    rnd = random.Random(5)
    base = [f"{rnd.choice(WORDS)} {i} for {rnd.choice(USES)}: {rnd.choice(WORDS)} rated {rnd.randrange(1, 100)} V, "
            f"part ZX{i:05d}, decided after the {rnd.choice(['EVT', 'DVT', 'PVT'])} review" for i in range(1000)]
    vectors = embedder().encode(base)
    repo = Repo(path)
    repo.sync_warnings()
    store = open_store(repo)
    rng = np.random.default_rng(7)
    store.conn.execute("BEGIN")
    for start in range(0, 100_000, 5000):
        chunks, vecs = [], []
        for i in range(start, start + 5000):
            j = i % 1000
            chunks.append(Chunk(f"bench:{i}", "component", f"Z{i}", f"{base[j]} (variant {i}, lot {rng.integers(1e6)})", "bench"))
            v = vectors[j] + 0.02 * rng.standard_normal(384).astype(np.float32)
            vecs.append(v / np.linalg.norm(v))
        store.upsert(chunks, np.array(vecs))
    store.set_meta("indexed_seq", "0")
    store.bump()
    store.conn.execute("COMMIT")
    store.close()
    queries = [f"which {rnd.choice(WORDS)} feeds {rnd.choice(USES)}?" for _ in range(40)] + \
              [f"ZX{rnd.randrange(1000):05d}" for _ in range(10)]
    search(repo, queries[0], k=10)  # the model and the vector matrix are loaded once per process
    times = []
    for q in queries:
        t = time.perf_counter()
        search(repo, q, k=10)
        times.append(time.perf_counter() - t)
    repo.close()
    cold = timed(["ask", "which regulator feeds the logic rail?", "--json"], path, runs=5)
    return statistics.median(times) * 1000, cold


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="mf-bench-knowledge-"))
    rate, n = bench_indexing(work)
    p50, cold = bench_search(work)
    rows = [(f"indexing, chunks/s ({n} chunks of the drone twin)", rate, 200, ">", "/s"),
            ("search over 100,000 chunks, p50 in process", p50, 50, "<", "ms"),
            ("mf ask from a cold start, 100,000 chunks", cold, 1.5, "<", "s")]
    print(f"\n{'figure':<58} {'measured':>10} {'target':>10}")
    ok = True
    for name, value, limit, op, unit in rows:
        good = value > limit if op == ">" else value < limit
        ok &= good
        print(f"{name:<58} {value:>8.2f} {unit:<3} {op} {limit} {unit}  {'ok' if good else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
