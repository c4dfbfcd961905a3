"""Figures for the knowledge layer and the install (issues 9 and 17).
Run: .venv/bin/python benchmarks/bench_knowledge.py [--skip-env]

1. Environment sizes: `pip install .` and `pip install '.[test]'` into fresh venvs under /tmp (from
   a copy of the checkout; pip's cache makes this a minute, not a download), and that neither has
   torch, CUDA or NVIDIA libraries.
2. Labelled-set quality: recall@5, MRR and top-1 of hybrid, vector and keyword search over the 46
   questions of tests/data/ask_labelled.json (23 decisions on the drone twin).
3. `mf ask` wall time, as a user runs it (a new process each time): the first ask after `mf init`
   (the template's chunks embedded then), the same on a machine whose cache is empty (the ONNX
   graph built once), and the warm p50 over ten different questions on the template repository
   and on a repository of 100,000 chunks.
4. Indexing: chunks embedded and stored per second, on the drone twin grown to ~600 chunks.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from bench_core import mf_cmd, timed  # noqa: E402

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's mf has its bytecode cached
ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["why did the flash current go up?", "which regulator feeds the logic rail?", "what limits the ESC current?",
             "why is the battery 3S?", "where are flight logs stored?", "what does the barometer do?",
             "which part is obsolete?", "how hot can the LDO get?", "what was tested at end of line?",
             "which pins are assigned to SPI?"]

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
    timed(["ask", "which regulator feeds the logic rail?", "--json"], path)  # indexes what init left
    return statistics.median(times) * 1000, ask_p50(path, "warm-big")


CPU: dict[str, float] = {}  # figure -> CPU seconds (user + sys) of the same runs: what load does not change


def ask(path: Path, question: str, env: dict | None = None) -> tuple[float, float]:
    """Wall and CPU time (user + sys of the process and its threads) of one `mf ask --json`."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(mf_cmd() + ["ask", question, "--json"], cwd=path, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        sys.exit(f"mf ask failed: {p.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def ask_p50(path: Path, name: str) -> float:
    """Median wall time of `mf ask` over ten different questions, each a new process."""
    runs = [ask(path, q) for q in QUESTIONS]
    CPU[name] = statistics.median(c for _, c in runs)
    return statistics.median(w for w, _ in runs)


def bench_template(work: Path) -> tuple[float, float, float]:
    """First ask after `mf init` (machine cache warm), the same with an empty machine cache, and
    the warm p50, on the template repository."""
    path = work / "template"
    subprocess.run(mf_cmd() + ["init", str(path), "--template", "drone-flight-controller"], check=True,
                   capture_output=True)
    first, CPU["first"] = ask(path, "why did the flash current go up?")
    fresh = work / "template-fresh"
    cache = work / "empty-cache"
    cache.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    subprocess.run(mf_cmd() + ["init", str(fresh), "--template", "drone-flight-controller"], check=True,
                   capture_output=True, env=env)
    first_on_machine, CPU["first-machine"] = ask(fresh, "why did the flash current go up?", env)
    return first, first_on_machine, ask_p50(path, "warm")


def bench_quality(work: Path) -> dict:
    from ask_labelled import labelled_twin, quality

    from metaforge.knowledge.index import update

    repo, keys = labelled_twin(work / "labelled")
    update(repo)
    out = {mode: quality(repo, keys, mode) for mode in ("hybrid", "vector", "keyword")}
    repo.close()
    return out


def bench_env(work: Path) -> dict[str, float]:
    """MB of a fresh venv after `pip install .` and after `pip install '.[test]'`."""
    src = work / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith("metaforge/knowledge/model/"):
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    sizes = {}
    for name, spec in (("pip install .", "."), ("pip install '.[test]'", ".[test]")):
        venv = work / f"venv-{len(sizes)}"
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", spec], cwd=src,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        listed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True,
                                text=True).stdout.lower()
        heavy = [p for p in ("torch", "nvidia", "triton", "sentence-transformers", "transformers") if p in listed]
        if heavy:
            sys.exit(f"{name} installed {', '.join(heavy)}")
        du = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True, check=True).stdout.split()[0]
        sizes[name] = float(du)
    return sizes


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="mf-bench-knowledge-"))
    started = time.perf_counter()
    rows = []
    if "--skip-env" not in sys.argv:
        for name, mb in bench_env(work).items():
            rows.append((f"environment after {name}, MB", mb, 800 if "test" not in name else 1500, "<", "MB"))
    quality = bench_quality(work)
    for mode, q in quality.items():
        print(f"{mode:8} recall@5 {q['recall']:.2f}  MRR {q['mrr']:.2f}  top-1 {q['top1']:.2f}  ({q['n']} questions)")
    for question, rank, first in quality["hybrid"]["missed"]:
        print(f"  hybrid missed: {question!r} at rank {rank}; first {first[0]}")
    rows += [("labelled set, hybrid recall@5", quality["hybrid"]["recall"], 0.9, ">=", ""),
             ("labelled set, hybrid MRR", quality["hybrid"]["mrr"], 0.7, ">=", "")]
    first, first_machine, warm = bench_template(work)
    rows += [("mf ask, first after mf init (template)", first, 3, "<=", "s"),
             ("mf ask, first after mf init, empty machine cache", first_machine, 3, "<=", "s"),
             ("mf ask, warm p50 (template, 10 questions)", warm, 0.3, "<=", "s")]
    cpu = [("first", "first after mf init"), ("first-machine", "first, empty machine cache"),
           ("warm", "warm p50, template"), ("warm-big", "warm p50, 100,000 chunks")]
    rate, n = bench_indexing(work)
    p50, warm_big = bench_search(work)
    rows += [(f"indexing, chunks/s ({n} chunks of the drone twin)", rate, 200, ">", "/s"),
             ("search over 100,000 chunks, p50 in process", p50, 50, "<", "ms"),
             ("mf ask, warm p50 (100,000 chunks, 10 questions)", warm_big, 0.6, "<=", "s")]
    print(f"\n{'figure':<58} {'measured':>10} {'target':>10}")
    ok = True
    for name, value, limit, op, unit in rows:
        good = {">": value > limit, "<": value < limit, ">=": value >= limit, "<=": value <= limit}[op]
        ok &= good
        print(f"{name:<58} {value:>8.2f} {unit:<3} {op} {limit} {unit}  {'ok' if good else 'MISSED'}")
    print("CPU time of the same mf ask runs (user + sys; what a busy machine does not inflate): " +
          ", ".join(f"{label} {CPU[key]:.2f} s" for key, label in cpu if key in CPU))
    load = os.getloadavg()[0]
    print(f"\n({time.perf_counter() - started:.0f} s; load average {load:.1f} on {os.cpu_count()} cores)")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
