"""The index is a projection: deleted or stale, it comes back from the log with the same answers."""

import os
import subprocess

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st



def _answers(mf, path):
    """Everything the read side says about the twin."""
    entities = mf("query", "--json", cwd=path).json
    shown = [mf("show", e["id"], "--json", cwd=path).json for e in entities]
    status = mf("status", "--json", cwd=path).json
    log = mf("log", "--limit", "0", "--json", cwd=path).json
    return entities, shown, status["semantic_version"], status["entities_by_type"], status["edges_by_relation"], log


def test_deleting_the_index_rebuilds_it_with_the_same_answers(twin, mf):
    mf("mutate", "set", "BOMItem:U1", "current=95mA", "-m", "measured", cwd=twin)
    mf("mutate", "remove", "BOMItem:C7", cwd=twin)
    before = _answers(mf, twin)
    for suffix in ("", "-wal", "-shm"):
        p = twin / f".metaforge/index.db{suffix}"
        if p.exists():
            os.unlink(p)
    assert _answers(mf, twin) == before
    r = mf("rebuild", "--json", cwd=twin)
    assert r.code == 0 and r.json["events"] == before[2]
    assert _answers(mf, twin) == before
    assert mf("verify", cwd=twin).code == 0


def test_a_damaged_index_file_is_replaced(twin, mf):
    before = _answers(mf, twin)
    (twin / ".metaforge/index.db").write_bytes(b"this is not sqlite" * 100)
    for suffix in ("-wal", "-shm"):
        (twin / f".metaforge/index.db{suffix}").unlink(missing_ok=True)
    assert _answers(mf, twin) == before


def test_the_index_follows_git_checkout_of_another_log(twin, mf):
    subprocess.run(["git", "add", "-A"], cwd=twin, check=True)
    subprocess.run(["git", "commit", "-qm", "twin"], cwd=twin, check=True)
    base = _answers(mf, twin)
    subprocess.run(["git", "checkout", "-qb", "change"], cwd=twin, check=True)
    mf("mutate", "set", "BOMItem:U1", "current=120mA", cwd=twin)
    subprocess.run(["git", "commit", "-qam", "more current"], cwd=twin, check=True)
    assert mf("show", "BOMItem:U1", "--json", cwd=twin).json["properties"]["current"]["value"] == 120
    subprocess.run(["git", "checkout", "-q", "-"], cwd=twin, check=True)
    assert _answers(mf, twin) == base  # the log shrank: the index was rebuilt, not trusted
    subprocess.run(["git", "checkout", "-q", "change"], cwd=twin, check=True)
    assert mf("show", "BOMItem:U1", "--json", cwd=twin).json["properties"]["current"]["value"] == 120


def test_events_appended_by_another_writer_are_caught_up(repo, mf):
    """An index that missed events (a writer killed after its append) catches up on the next read."""
    from metaforge.repo import Repo
    from metaforge.events import Draft

    mf("mutate", "add", "BOMItem:A", cwd=repo)
    r = Repo.find(repo)
    with r.log.lock():
        head = r.index.position()
        r.log.append(head, [Draft("node.created", "BOMItem:B", 1, {"properties": {"quantity": 2}})],
                     "agent:raw", "2026-01-01T00:00:00.000Z")
    r.close()
    node = mf("show", "BOMItem:B", "--json", cwd=repo).json
    assert node["properties"] == {"quantity": 2} and node["createdBy"] == "agent:raw"


OPS = st.lists(st.tuples(st.sampled_from(["add", "set", "remove", "link", "unlink"]),
                         st.integers(0, 5), st.integers(0, 5), st.integers(0, 100)), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_replaying_the_log_gives_the_same_index(tmp_path_factory, ops):
    """Property: whatever sequence of commands ran, a rebuild from the log equals the live index."""
    from metaforge.errors import MetaforgeError
    from metaforge.repo import Repo
    from metaforge.thread.commands import Change, execute
    from metaforge.thread.setup import init

    path = tmp_path_factory.mktemp("prop")
    init(path)
    repo = Repo(path)
    for op, a, b, n in ops:
        ids = (f"DesignElement:D{a}", f"BOMItem:B{b}")
        change = {"add": Change("add", ids[0], props={"layers": n}),
                  "set": Change("set", ids[0], props={"layers": n}),
                  "remove": Change("remove", ids[0] if n % 2 else ids[1]),
                  "link": Change("link", ids[0], rel="USES_COMPONENT", dst=ids[1]),
                  "unlink": Change("unlink", ids[0], rel="USES_COMPONENT", dst=ids[1])}[op]
        extra = [Change("add", ids[1])] if op == "link" else []
        for c in extra + [change]:
            try:
                execute(repo, [c], actor="agent:prop")
            except MetaforgeError:
                pass
    live = _dump(repo)
    with repo.log.lock():
        repo.index.rebuild(repo.log)
    assert _dump(repo) == live
    from metaforge.thread.verify import verify
    assert verify(repo)["ok"]
    repo.close()


def _dump(repo):
    conn = repo.index.conn
    return (list(conn.execute("SELECT * FROM nodes ORDER BY id")),
            list(conn.execute("SELECT * FROM edges ORDER BY src, rel, dst")),
            list(conn.execute("SELECT * FROM events ORDER BY seq")),
            repo.index.position()[:4])
