"""A damaged log is found and named; a killed writer leaves all of its batch or none of it;
concurrent writers never lose, duplicate or reorder an event."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import log_bytes, mf_process, read_log

SEGMENT = ".metaforge/events/000001.jsonl"


def _fill(repo, mf, n=5):
    for i in range(n):
        assert mf("mutate", "add", f"BOMItem:C{i}", f"quantity={i + 1}", cwd=repo).code == 0


def test_verify_passes_on_a_healthy_log(repo, mf):
    _fill(repo, mf)
    r = mf("verify", "--json", cwd=repo)
    assert r.code == 0 and r.json["ok"] is True and r.json["events"] == 5 and r.json["index"] == "agrees"


def test_torn_last_line_is_named_blocks_writes_and_repair_drops_only_it(repo, mf):
    _fill(repo, mf)
    good = log_bytes(repo)
    seg = repo / SEGMENT
    with open(seg, "ab") as f:
        f.write(b'{"v":1,"seq":6,"id":"abc","type":"node.cre')  # a crash mid-write
    r = mf("verify", "--json", cwd=repo)
    assert r.code == 1
    assert r.json["problems"][0]["kind"] == "torn_tail"
    assert f"{SEGMENT}:6: torn last line" in r.json["problems"][0]["message"]
    w = mf("mutate", "add", "BOMItem:NEW", cwd=repo)
    assert w.code == 1 and "torn last line" in w.err and "mf verify --repair" in w.err
    # reads still answer from the index, with a warning
    s = mf("show", "BOMItem:C1", "--json", cwd=repo)
    assert s.code == 0 and "warning" in s.err
    r = mf("verify", "--repair", "--json", cwd=repo)
    assert r.code == 0, r.out
    assert r.json["repaired"]["line"] == 6
    assert log_bytes(repo) == good
    assert mf("mutate", "add", "BOMItem:NEW", cwd=repo).code == 0
    assert mf("verify", cwd=repo).code == 0


def test_an_edited_line_in_the_middle_is_found_by_the_hash_chain(repo, mf):
    _fill(repo, mf)
    seg = repo / SEGMENT
    lines = seg.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"quantity":3', '"quantity":30')
    seg.write_text("".join(lines))
    r = mf("verify", "--json", cwd=repo)
    assert r.code == 1
    assert r.json["problems"][0]["message"].startswith(f"{SEGMENT}:3: hash does not match")
    # --repair only drops a torn tail: it refuses to touch the middle
    before = log_bytes(repo)
    assert mf("verify", "--repair", cwd=repo).code == 1
    assert log_bytes(repo) == before


def test_a_deleted_line_in_the_middle_is_found(repo, mf):
    _fill(repo, mf)
    seg = repo / SEGMENT
    lines = seg.read_text().splitlines(keepends=True)
    del lines[2]
    seg.write_text("".join(lines))
    r = mf("verify", cwd=repo)
    assert r.code == 1 and f"{SEGMENT}:3: seq 4 where 3 was expected" in r.err


def test_a_line_rewritten_with_a_fresh_hash_breaks_the_chain(repo, mf):
    from metaforge.events import Draft, encode

    _fill(repo, mf)
    seg = repo / SEGMENT
    lines = seg.read_text().splitlines(keepends=True)
    old = json.loads(lines[2])
    forged, _, _ = encode(3, Draft(old["type"], old["entity"], old["version"], {"properties": {"quantity": 99}}),
                          old["ts"], old["actor"], "f" * 64)
    lines[2] = forged.decode()
    seg.write_text("".join(lines))
    r = mf("verify", cwd=repo)
    assert r.code == 1 and f"{SEGMENT}:3: chain broken" in r.err


def test_a_missing_segment_is_named(repo, mf):
    _fill(repo, mf, 2)
    (repo / ".metaforge/events/000003.jsonl").write_text("")
    r = mf("verify", cwd=repo)
    assert r.code == 1 and ".metaforge/events/000002.jsonl is missing" in r.err


# ---- killed writers ------------------------------------------------------------------------

KILLER = textwrap.dedent("""
    import os, signal, sys
    import metaforge.store.log as L
    mode = sys.argv[1]
    if mode == "before-commit":          # every byte of the batch written, journal still there
        real_unlink = os.unlink
        def unlink(path, *a, **k):
            if str(path).endswith("log.journal"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_unlink(path, *a, **k)
        L.os.unlink = unlink
    elif mode == "mid-write":            # half of the batch on disk, then the power goes
        real_open = open
        class Half:
            def __init__(self, f): self.f = f
            def __enter__(self): return self
            def __exit__(self, *a): self.f.close()
            def write(self, data):
                self.f.write(data[: len(data) // 2]); self.f.flush(); os.fsync(self.f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            def __getattr__(self, name): return getattr(self.f, name)
        def fake_open(path, mode="r", *a, **k):
            f = real_open(path, mode, *a, **k)
            return Half(f) if mode == "ab" else f
        L.open = fake_open
    elif mode == "before-index":         # batch committed, index not yet written
        import metaforge.store.index as I
        I.GraphIndex.commit = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    from metaforge.cli import main
    main(sys.argv[2:])
""")


def _big_change_file(repo, n=10_000):
    changes = [{"add": f"BOMItem:R{i}", "props": {"resistance": f"{i + 1}ohm", "quantity": 1}} for i in range(n)]
    (repo / "big.json").write_text(json.dumps(changes))


@pytest.mark.parametrize("mode, lands", [("mid-write", False), ("before-commit", False), ("before-index", True)])
def test_a_writer_killed_mid_batch_leaves_all_or_nothing(repo, mf, mode, lands):
    _fill(repo, mf, 3)
    _big_change_file(repo)
    before = log_bytes(repo)
    p = subprocess.run([sys.executable, "-c", KILLER, mode, "mutate", "apply", "big.json"], cwd=repo,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    if mode != "before-index":
        assert (repo / ".metaforge/log.journal").exists()  # the crash left its journal behind
    r = mf("verify", "--json", cwd=repo)
    assert r.code == 0, r.out
    assert r.json["events"] == (10_003 if lands else 3)
    if not lands:
        assert log_bytes(repo) == before
    assert not (repo / ".metaforge/log.journal").exists()
    assert len(mf("query", "--type", "BOMItem", "--json", cwd=repo).json) == (10_003 if lands else 3)


def test_sigkill_at_random_moments_of_a_10000_change_apply(repo, mf):
    """The real CLI, killed from outside at moments spread over its run."""
    _big_change_file(repo)
    started = time.perf_counter()
    p = mf_process("mutate", "apply", "big.json", "--dry-run", cwd=repo)
    assert p.returncode == 0, p.stderr
    span = time.perf_counter() - started
    for i in range(8):
        proc = subprocess.Popen([sys.executable, "-m", "metaforge", "mutate", "apply", "big.json"], cwd=repo,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(span * (0.3 + 0.15 * i))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        r = mf("verify", "--json", cwd=repo)
        assert r.code == 0, r.out
        assert r.json["events"] in (0, 10_000)
        if r.json["events"]:
            break
    assert read_log(repo) == [] or len(read_log(repo)) == 10_000


# ---- concurrent writers ----------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time
    from metaforge.repo import Repo
    from metaforge.thread.commands import Change, execute
    name, n, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    repo = Repo.find(".")
    while time.time() < start:
        time.sleep(0.001)
    for i in range(n):
        execute(repo, [Change("add", f"BOMItem:{name}-{i}", props={"quantity": i})], actor=f"agent:{name}")
""")


def test_two_processes_writing_500_each_at_once(repo, mf):
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, name, "500", str(start)], cwd=repo,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    events = read_log(repo)
    assert [e["seq"] for e in events] == list(range(1, 1001))
    assert len({e["id"] for e in events}) == 1000
    for name in ("a", "b"):
        mine = [int(e["entity"].split("-")[1]) for e in events if e["actor"] == f"agent:{name}"]
        assert mine == list(range(500))  # each writer's events in its own order
    # they really interleaved
    actors = [e["actor"] for e in events]
    assert sum(1 for x, y in zip(actors, actors[1:]) if x != y) > 10
    assert mf("verify", cwd=repo).code == 0


RACER = textwrap.dedent("""
    import sys, time
    from metaforge.errors import VersionConflict
    from metaforge.repo import Repo
    from metaforge.thread.commands import Change, execute
    from metaforge.thread.queries import show
    name, n, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    repo = Repo.find(".")
    while time.time() < start:
        time.sleep(0.001)
    won = lost = 0
    for i in range(n):
        repo.sync_warnings()
        seen = show(repo.index, "BOMItem:SHARED")["version"]
        try:
            execute(repo, [Change("set", "BOMItem:SHARED", props={"notes": f"{name}{i}"}, expect_version=seen)],
                    actor=f"agent:{name}")
            won += 1
        except VersionConflict:
            lost += 1
    print(won, lost)
""")


def test_racing_writers_with_expected_versions_never_merge_silently(repo, mf):
    mf("mutate", "add", "BOMItem:SHARED", cwd=repo)
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", RACER, name, "150", str(start)], cwd=repo,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(tuple(map(int, out.split())))
    won = sum(w for w, _ in results)
    assert sum(w + l for w, l in results) == 300
    node = mf("show", "BOMItem:SHARED", "--json", cwd=repo).json
    assert node["version"] == 1 + won
    assert len(read_log(repo)) == 1 + won
    assert mf("verify", cwd=repo).code == 0
