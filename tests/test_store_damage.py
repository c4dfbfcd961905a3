"""The store under damage (issue 16, cases 1-4): a changed log is noticed by every command, a log
cut short is not "repaired" into a shorter history, a damaged index is moved aside and rebuilt,
and an operating-system refusal is one line naming path and cause. Real files, real `mf` processes."""

import json
import os
import subprocess

import pytest

from conftest import log_bytes, mf_process

SEGMENT = ".metaforge/events/000001.jsonl"


def _repo(tmp_path, n=128, name="product"):
    path = tmp_path / name
    assert mf_process("init", str(path), cwd=tmp_path).returncode == 0
    changes = [{"add": f"BOMItem:R{i}", "props": {"quantity": i + 1, "notes": "n" * 120}} for i in range(n)]
    (tmp_path / "changes.json").write_text(json.dumps(changes))
    r = mf_process("mutate", "apply", str(tmp_path / "changes.json"), cwd=path)
    assert r.returncode == 0, r.stderr
    return path


def _commit(path):
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "twin"], cwd=path, check=True)


# ---- case 1: a changed log goes unnoticed ------------------------------------------------------


@pytest.mark.parametrize("damage", ["swap", "same_length_edit"])
def test_a_log_changed_in_the_middle_is_noticed_and_never_appended_onto(tmp_path, damage):
    repo = _repo(tmp_path, n=20)
    seg = repo / SEGMENT
    lines = seg.read_bytes().splitlines(keepends=True)
    if damage == "swap":
        lines[5], lines[6] = lines[6], lines[5]
    else:
        assert b'"quantity":8,' in lines[7]
        lines[7] = lines[7].replace(b'"quantity":8,', b'"quantity":9,')
    seg.write_bytes(b"".join(lines))
    before = log_bytes(repo)
    status = mf_process("status", cwd=repo)
    assert status.returncode == 0
    assert f"{SEGMENT}:{6 if damage == 'swap' else 8}:" in status.stderr  # named, not silent
    w = mf_process("mutate", "set", "BOMItem:R1", "notes=x", cwd=repo)
    assert w.returncode == 1
    assert f"{SEGMENT}:{6 if damage == 'swap' else 8}:" in w.stderr and "mf verify" in w.stderr
    assert "refusing to append" in w.stderr
    assert log_bytes(repo) == before  # nothing appended onto the broken chain (no seq 21)


def test_a_log_that_only_grew_is_caught_up_from_where_the_index_stood(tmp_path):
    """Another writer's append (killed before its index write) is verified from the index's position."""
    from metaforge.events import Draft
    from metaforge.repo import Repo

    repo = _repo(tmp_path, n=5)
    r = Repo(repo)
    head = r.index.position()
    with r.log.lock():
        r.log.append(head, [Draft("node.created", "BOMItem:X1", 1, {"properties": {}})],
                     "user:tester", "2026-01-01T00:00:00.000Z")
    r.close()
    s = mf_process("show", "BOMItem:X1", "--json", cwd=repo)
    assert s.returncode == 0 and json.loads(s.stdout)["id"] == "BOMItem:X1" and s.stderr == ""


def test_an_index_copied_from_another_repository_is_not_trusted(tmp_path):
    a = _repo(tmp_path, n=5, name="a")
    b = _repo(tmp_path, n=7, name="b")
    for suffix in ("", "-wal", "-shm"):
        src = a / f".metaforge/index.db{suffix}"
        if src.exists():
            (b / f".metaforge/index.db{suffix}").write_bytes(src.read_bytes())
    s = mf_process("status", "--json", cwd=b)
    assert s.returncode == 0 and json.loads(s.stdout)["entities"] == 7
    assert s.stderr.count("another repository") == 1 and "moved aside" in s.stderr
    assert mf_process("status", cwd=b).stderr == ""  # said once


# ---- case 2: verify --repair accepted a log cut in half --------------------------------------


def test_repair_refuses_a_log_cut_in_half_and_force_records_the_cut(tmp_path):
    repo = _repo(tmp_path)
    _commit(repo)
    seg = repo / SEGMENT
    data = seg.read_bytes()
    seg.write_bytes(data[:len(data) // 2])
    cut = seg.read_bytes()
    kept = cut.count(b"\n")
    r = mf_process("verify", "--repair", "--json", cwd=repo)
    assert r.returncode == 1
    err = json.loads(r.stdout)["error"]
    assert err["lost"]["first"] == kept + 1 and err["lost"]["last"] == 128 and err["lost"]["count"] == 128 - kept
    assert err["lost"]["git"] is True
    assert f"seq {kept + 1}..128" in r.stderr and "git checkout HEAD -- .metaforge/events/000001.jsonl" in r.stderr
    assert seg.read_bytes() == cut  # nothing cut
    assert mf_process("mutate", "add", "BOMItem:NEW", cwd=repo).returncode == 1
    f = mf_process("verify", "--repair", "--force", "--json", cwd=repo)
    assert f.returncode == 0, f.stdout + f.stderr
    rep = json.loads(f.stdout)["repaired"]
    assert rep["events_dropped"]["count"] == 128 - kept
    record = json.loads((repo / rep["record"]).read_text())
    assert record["events_dropped"]["first"] == kept + 1
    assert (repo / ".metaforge/cut" / record["cut_bytes"]).read_bytes() == cut[cut.rfind(b"\n") + 1:]
    s = mf_process("status", "--json", cwd=repo)
    assert json.loads(s.stdout)["entities"] == kept
    assert mf_process("verify", cwd=repo).returncode == 0


def test_a_log_cut_on_a_line_boundary_is_named_not_followed(tmp_path):
    repo = _repo(tmp_path, n=30)
    seg = repo / SEGMENT
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(lines[:10]))
    s = mf_process("status", "--json", cwd=repo)
    assert "ends at seq 10" in s.stderr and json.loads(s.stdout)["entities"] == 30  # the index, with a warning
    v = mf_process("verify", "--json", cwd=repo)
    assert v.returncode == 1 and "seq 11..30" in v.stdout
    assert mf_process("mutate", "add", "BOMItem:NEW", cwd=repo).returncode == 1


def test_a_torn_last_line_alone_is_cut(tmp_path):
    repo = _repo(tmp_path, n=5)
    good = log_bytes(repo)
    with open(repo / SEGMENT, "ab") as f:
        f.write(b'{"v":1,"seq":6,"id":"x","type":"node.cre')
    r = mf_process("verify", "--repair", "--json", cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["repaired"]["events_dropped"] is None
    assert log_bytes(repo) == good


def test_a_git_checkout_of_a_shorter_log_is_followed_not_reported(tmp_path):
    repo = _repo(tmp_path, n=5)
    _commit(repo)
    assert mf_process("mutate", "add", "BOMItem:NEW", cwd=repo).returncode == 0
    subprocess.run(["git", "checkout", "--", ".metaforge/events"], cwd=repo, check=True)
    s = mf_process("status", "--json", cwd=repo)
    assert s.returncode == 0 and s.stderr == "" and json.loads(s.stdout)["entities"] == 5
    assert mf_process("verify", cwd=repo).returncode == 0


# ---- case 3: one damaged page of index.db ----------------------------------------------------


def _quick_check(index) -> bool:
    """Does SQLite itself find the file damaged? (on a copy: the check must not touch the original)"""
    import shutil
    import sqlite3

    copy = index.with_name("probe.db")
    shutil.copy(index, copy)
    try:
        c = sqlite3.connect(copy)
        try:
            return c.execute("PRAGMA quick_check").fetchall() != [("ok",)]
        finally:
            c.close()
    except sqlite3.DatabaseError:
        return True
    finally:
        copy.unlink()


@pytest.mark.parametrize("page", [1, 5, 9, 17, 23])
@pytest.mark.parametrize("command", [["rebuild"], ["status", "--json"], ["verify"], ["show", "BOMItem:R7", "--json"]])
def test_a_damaged_index_page_is_moved_aside_and_rebuilt(tmp_path, page, command):
    """`dd if=/dev/urandom of=.metaforge/index.db bs=4096 seek=N count=1 conv=notrunc`: no command fails
    on it or answers from it; `rebuild` and `verify` find it whenever SQLite's own check does, a read
    whenever it touches the page."""
    repo = _repo(tmp_path)
    index = repo / ".metaforge/index.db"
    mf_process("status", cwd=repo)  # WAL folded in by the last connection's close
    assert index.stat().st_size > (page + 1) * 4096
    with open(index, "r+b") as f:
        f.seek(page * 4096)
        f.write(os.urandom(4096))
    damaged = _quick_check(index)
    r = mf_process(*command, cwd=repo)
    notices = r.stderr.count("index.db could not be read") + r.stderr.count("index.db is damaged")
    assert notices <= 1 and "internal error" not in r.stderr
    if command == ["verify"]:
        assert r.returncode == (1 if damaged else 0), r.stderr
        assert notices == int(damaged)
    else:
        assert r.returncode == 0, r.stderr
    if command == ["rebuild"]:
        assert notices == int(damaged)
    if notices:
        assert (repo / ".metaforge/index.db.damaged").exists()
    if command[0] == "show":
        assert json.loads(r.stdout)["properties"]["quantity"] == 8
    if command[0] == "status":
        assert json.loads(r.stdout)["entities"] == 128
    s = mf_process("status", "--json", cwd=repo)
    assert s.returncode == 0 and json.loads(s.stdout)["entities"] == 128
    assert mf_process("rebuild", cwd=repo).returncode == 0
    assert mf_process("verify", cwd=repo).returncode == 0


@pytest.mark.parametrize("content", [b"not sqlite at all" * 300, b""])
def test_a_foreign_file_as_index_is_moved_aside(tmp_path, content):
    import sqlite3

    repo = _repo(tmp_path, n=5)
    index = repo / ".metaforge/index.db"
    for suffix in ("-wal", "-shm"):
        (repo / f".metaforge/index.db{suffix}").unlink(missing_ok=True)
    index.unlink()
    if content:
        index.write_bytes(content)
    else:  # a SQLite database of something else
        c = sqlite3.connect(index)
        c.execute("CREATE TABLE t (x)")
        c.commit()
        c.close()
    s = mf_process("status", "--json", cwd=repo)
    assert s.returncode == 0 and json.loads(s.stdout)["entities"] == 5
    assert "moved aside" in s.stderr


# ---- case 4: disk full, read-only file system ---------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A real 8 MB tmpfs (needs root: mount)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.fail(f"cannot mount a tmpfs here (root needed): {r.stderr.decode()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def _fill(mnt, leave: int):
    """Fill the file system but `leave` bytes."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


@pytest.mark.parametrize("leave, where", [(8192, ".metaforge/index.db"),  # too little for the index's -shm
                                          (300_000, ".metaforge/events/000001.jsonl")])  # the append itself
def test_disk_full_is_one_line_exit_1_and_the_log_stays_valid(tmp_path, small_fs, leave, where):
    repo = _repo(small_fs, n=5)
    _fill(small_fs, leave)
    before = log_bytes(repo)
    changes = [{"add": f"BOMItem:F{i}", "props": {"notes": "f" * 500}} for i in range(2000)]
    (tmp_path / "big.json").write_text(json.dumps(changes))
    r = mf_process("mutate", "apply", str(tmp_path / "big.json"), cwd=repo)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], r.stderr
    assert f"mf: error: {where}: No space left on device" in lines[0], lines[0]
    assert "internal error" not in lines[0] and "rollback" not in lines[0]
    assert log_bytes(repo) == before
    assert not (repo / ".metaforge/log.journal").exists()
    (small_fs / "filler").unlink()
    v = mf_process("verify", "--json", cwd=repo)
    assert v.returncode == 0 and json.loads(v.stdout)["events"] == 5
    assert mf_process("mutate", "apply", str(tmp_path / "big.json"), cwd=repo).returncode == 0


def test_disk_full_json_keeps_the_cause(tmp_path, small_fs):
    repo = _repo(small_fs, n=3)
    _fill(small_fs, 4096)
    (tmp_path / "c.json").write_text(json.dumps([{"add": f"BOMItem:F{i}", "props": {"notes": "f" * 900}}
                                                 for i in range(500)]))
    r = mf_process("mutate", "apply", str(tmp_path / "c.json"), "--json", cwd=repo)
    assert r.returncode == 1
    err = json.loads(r.stdout)["error"]
    assert err["kind"] == "storage" and err["errno"] == "ENOSPC" and err["path"].startswith(".metaforge/")
    d = mf_process("--debug", "mutate", "apply", str(tmp_path / "c.json"), cwd=repo)
    assert d.returncode == 1 and "The above exception was the direct cause" in d.stderr  # the original, chained


def test_read_only_file_system_is_one_line_exit_1(tmp_path, small_fs):
    repo = _repo(small_fs, n=3)
    before = log_bytes(repo)
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_fs)]).returncode == 0
    r = mf_process("mutate", "add", "BOMItem:RO", cwd=repo)
    assert r.returncode == 1, r.stderr
    line, = r.stderr.strip().splitlines()
    assert "Read-only file system" in line
    assert ".metaforge" in line
    assert log_bytes(repo) == before


def test_permission_denied_is_one_line_exit_1(tmp_path):
    repo = _repo(tmp_path, n=3)
    before = log_bytes(repo)
    meta = repo / ".metaforge"
    for p in [meta, *meta.rglob("*")]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    # root passes permission checks: drop the capabilities that let it (mf stays readable to it,
    # wherever it is installed, and the read-only files are refused as they are to anyone)
    try:
        r = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner",
                            os.environ.get("PYTHON", __import__("sys").executable), "-m", "metaforge", "mutate", "add",
                            "BOMItem:P"], cwd=repo, capture_output=True, text=True)
    finally:
        for p in [meta, *meta.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    assert r.returncode == 1, r.stderr
    line, = r.stderr.strip().splitlines()
    assert "Permission denied" in line and ".metaforge" in line
    assert log_bytes(repo) == before


# ---- case 6: `mf --help` builds no command --------------------------------------------------------


def test_top_level_help_is_the_apps_help_and_imports_no_typer(tmp_path, monkeypatch):
    import sys

    from metaforge.cli.help_text import TOP_HELP, built_help

    monkeypatch.setenv("COLUMNS", "80")
    assert TOP_HELP == built_help(), "run `python -m metaforge.cli.help_text` to write the help again"
    code = ("import sys\nfrom metaforge.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    sys.stderr.write(f'exit={e.code} typer={\"typer\" in sys.modules}')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "COLUMNS": "100"})
    assert r.stdout == TOP_HELP and r.stderr == "exit=0 typer=False"
    narrow = subprocess.run([sys.executable, "-m", "metaforge", "--help"], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "COLUMNS": "60"})
    assert narrow.returncode == 0 and "Commands:" in narrow.stdout  # the app lays it out for a narrow terminal


def test_a_removed_segment_is_named_and_a_stash_of_a_new_one_is_followed(tmp_path):
    repo = _repo(tmp_path, n=4)
    _commit(repo)
    assert mf_process("seal", "--force", cwd=repo).returncode == 0
    assert mf_process("mutate", "add", "BOMItem:NEW", cwd=repo).returncode == 0
    subprocess.run(["git", "stash", "-u", "-q"], cwd=repo, check=True)  # the new segment goes with it
    s = mf_process("status", "--json", cwd=repo)
    assert s.returncode == 0 and s.stderr == "" and json.loads(s.stdout)["entities"] == 4
    (repo / SEGMENT).unlink()  # a committed segment removed by hand
    s = mf_process("status", "--json", cwd=repo)
    assert "cut short or removed" in s.stderr and json.loads(s.stdout)["entities"] == 4
    w = mf_process("mutate", "add", "BOMItem:X", cwd=repo)
    assert w.returncode == 1 and "mf verify" in w.stderr


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.8])
def test_an_index_cut_short_is_moved_aside_not_read_as_zeros(tmp_path, keep):
    """SQLite reads the pages past the end of a cut file as zeros, and can answer from them without
    an error (found by the property test): the header's page count gives it away."""
    repo = _repo(tmp_path)
    mf_process("status", cwd=repo)
    index = repo / ".metaforge/index.db"
    with open(index, "r+b") as f:
        f.truncate(int(index.stat().st_size * keep) // 4096 * 4096 + 123)
    s = mf_process("query", "--type", "BOMItem", "--json", cwd=repo)
    assert s.returncode == 0 and len(json.loads(s.stdout)) == 128
    assert s.stderr.count("moved aside") == 1 and "header counts" in s.stderr


def test_a_running_server_never_answers_from_a_log_changed_by_hand(tmp_path):
    """`mf serve` reads the index as every command does: a value edited into the log while it runs
    is not served; the server answers from the last verified position and says why once."""
    import sys

    import httpx

    sys.path.insert(0, os.path.dirname(__file__))
    from serve_support import Server

    repo = _repo(tmp_path, n=20)
    server = Server(repo)
    try:
        url = f"{server.url}/api/v1/entities/BOMItem:R7"
        assert httpx.get(url).json()["properties"]["quantity"] == 8
        seg = repo / SEGMENT
        lines = seg.read_bytes().splitlines(keepends=True)
        lines[7] = lines[7].replace(b'"quantity":8,', b'"quantity":9,')  # same length, same last line
        seg.write_bytes(b"".join(lines))
        for _ in range(3):
            answer = httpx.get(url)
            assert answer.status_code == 200 and answer.json()["properties"]["quantity"] == 8
    finally:
        err = server.stop()
    assert err.count(f"{SEGMENT}:8:") == 1, err  # named once, not per request


def test_seal_refuses_a_log_that_does_not_verify(tmp_path):
    repo = _repo(tmp_path, n=20)
    subprocess.run(["git", "checkout", "-q", "-b", "main"], cwd=repo, check=False)
    seg = repo / SEGMENT
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[5], lines[6] = lines[6], lines[5]
    seg.write_bytes(b"".join(lines))
    r = mf_process("seal", "--force", cwd=repo)
    assert r.returncode == 1, r.stderr
    assert f"{SEGMENT}:6:" in r.stderr
    assert sorted(p.name for p in (repo / ".metaforge/events").glob("*.jsonl")) == ["000001.jsonl"]  # no new segment
