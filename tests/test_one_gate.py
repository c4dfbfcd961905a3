"""One gate for every change: the write policy applied to every source and actor kind, the
approval rules applied to file edits, and nothing appended outside the lock."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, log_bytes, read_log
from metaforge.errors import ConstraintViolation
from metaforge.thread.commands import Change
from metaforge.thread.policy import LAND, POLICY, PROPOSE, REFUSE, WARN, Source, as_rows

MODEL = "TwinModel:DroneFlightController-v2.1"
RULE = '\n[[approval.rules]]\ntypes = ["Requirement"]\n'
CAP = "Constraint:u1-current-cap"


@pytest.fixture(scope="module")
def gated_base(tmp_path_factory):
    """A template twin with one more approval rule (any Requirement change) and a constraint on
    BOMItem:U1's current, made once; each test works on a copy."""
    from metaforge.cli.app import run
    from metaforge.repo import Repo

    path = tmp_path_factory.mktemp("gate") / "base"
    assert run(["init", str(path), "--template", "drone-flight-controller"]) == 0
    cfg = path / ".metaforge" / "config.toml"
    cfg.write_text(cfg.read_text() + RULE)
    repo = Repo(path)
    with repo.transaction("user:lead", Source.TEMPLATE) as tx:  # decided, like the template's own
        tx.change([Change("add", CAP, props={"severity": "error", "expression": "BOMItem:U1.current <= 1A"})])
    repo.close()
    return path


def _copy(base: Path, tmp: Path) -> Path:
    dst = tmp / "twin"
    shutil.copytree(base, dst, symlinks=True)
    return dst


CELLS = sorted(POLICY.items(), key=lambda kv: (kv[0][0].value, kv[0][1]))


@pytest.mark.parametrize(("source", "kind"), [k for k, _ in CELLS], ids=[f"{s.name}-{k}" for (s, k), _ in CELLS])
def test_the_policy_table_on_a_constraint_violation(gated_base, tmp_path, source, kind):
    """Each source × actor kind: an error-level violation is refused (nothing appended) or lands
    with the violation said, as the table declares."""
    from metaforge.repo import Repo

    path = _copy(gated_base, tmp_path)
    repo = Repo(path)
    repo.index.sync(repo.log, locked=False)
    before = log_bytes(path)
    actor = f"{kind}:someone"
    breaking = [Change("set", "BOMItem:U1", props={"current": "2A"})]
    if POLICY[(source, kind)].on_violation == REFUSE:
        with pytest.raises(ConstraintViolation, match="u1-current-cap"):
            with repo.transaction(actor, source) as tx:
                tx.change(breaking, "too much")
        assert log_bytes(path) == before
        assert repo.index.props("BOMItem:U1")["current"] != {"value": 2, "unit": "A"}
    else:
        assert POLICY[(source, kind)].on_violation == WARN
        with repo.transaction(actor, source) as tx:
            result = tx.change(breaking, "what was made")
        assert any(w.startswith("u1-current-cap: 2 A > 1 A") for w in result.warnings)
        assert repo.index.props("BOMItem:U1")["current"] == {"value": 2, "unit": "A"}
        assert read_log(path)[-1]["actor"] == actor
    repo.close()


@pytest.mark.parametrize(("source", "kind"), [k for k, _ in CELLS], ids=[f"{s.name}-{k}" for (s, k), _ in CELLS])
def test_the_policy_table_on_a_change_an_approval_rule_covers(gated_base, tmp_path, source, kind):
    """Each source × actor kind: a change a rule covers becomes a proposal (the entity keeps its
    value) or lands, as the table declares."""
    from metaforge.repo import Repo

    path = _copy(gated_base, tmp_path)
    repo = Repo(path)
    repo.index.sync(repo.log, locked=False)
    old = repo.index.props("Requirement:REQ-001")
    actor = f"{kind}:someone"
    with repo.transaction(actor, source) as tx:
        result = tx.change([Change("set", "Requirement:REQ-001", props={"priority": "may"})], "reprioritize")
    now = repo.index.props("Requirement:REQ-001")
    if POLICY[(source, kind)].on_approval == PROPOSE:
        assert result.proposal and now == old
        last = read_log(path)[-1]
        assert (last["type"], last["actor"], last["payload"]["source"]) == ("proposal.created", actor, source.value)
    else:
        assert POLICY[(source, kind)].on_approval == LAND
        assert result.proposal is None and now["priority"] == "may"
    repo.close()


def test_every_source_and_actor_kind_has_a_rule():
    sources = [s for s in Source if s is not Source.RECORD]
    assert {(s, k) for s in sources for k in ("user", "agent")} == set(POLICY)


def test_the_readme_shows_the_policy_table_as_it_is():
    readme = (ROOT / "README.md").read_text()
    for row in as_rows():
        line = f"| {row['source']} | `{row['actor']}:` | {row['constraint violation']} | {row['approval rule']} |"
        assert line in readme, f"README.md lacks the policy row: {line}"


def test_append_refuses_without_the_lock(twin):
    from metaforge.events import Draft
    from metaforge.repo import Repo
    from metaforge.store.log import LogUnlocked

    repo = Repo(twin)
    repo.index.sync(repo.log, locked=False)
    before = log_bytes(twin)
    with pytest.raises(LogUnlocked, match="outside the write lock"):
        repo.log.append(repo.index.position(), [Draft("node.created", "BOMItem:X", 1, {})], "agent:raw", "2026-01-01T00:00:00.000Z")
    assert log_bytes(twin) == before
    repo.close()


def test_no_writer_takes_the_log_lock_itself():
    """Only the store (the index catching up) and the transaction take the lock."""
    allowed = {"metaforge/store/index.py", "metaforge/store/log.py", "metaforge/thread/transaction.py"}
    found = []
    for path in (ROOT / "metaforge").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel not in allowed and re.search(r"\.lock\(\)", path.read_text()):
            found.append(rel)
    assert found == []


# ---- the scenario, end to end as a user types it ---------------------------------------

def _git(path: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)


@pytest.fixture
def frozen_bom(tmp_path, mf):
    """A drone twin in DVT (BOM changes need approval from DVT on) whose BOM file was read in and
    committed."""
    path = tmp_path / "R"
    assert mf("init", str(path), "--template", "drone-flight-controller").code == 0
    (path / "hw").mkdir()
    (path / "hw" / "bom.csv").write_text("Reference,Value,MPN\nR1,10k,RC0402FR-0710KL\n")
    assert mf("ingest", "hw", cwd=path).code == 0
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "bom")
    assert mf("mutate", "set", MODEL, "phase=DVT", "-m", "design frozen", cwd=path).code == 0
    return path


def test_a_bom_file_edit_at_dvt_becomes_a_proposal_and_stays_drifted(frozen_bom, mf):
    path = frozen_bom
    typed = mf("mutate", "set", "BOMItem:R1", "mpn=RC0402FR-0722KL", "-m", "47k", "--json", cwd=path)
    assert typed.code == 0 and typed.json["proposal"]  # the typed change: a proposal (as before)
    bom = path / "hw" / "bom.csv"
    bom.write_text(bom.read_text().replace("10k,RC0402FR-0710KL", "47k,RC0402FR-0747KL"))
    r = mf("ingest", "hw", "--json", cwd=path)
    assert r.code == 0, r.err
    pid = r.json["proposal"]
    assert pid and r.json["appended"] == 0
    assert read_log(path)[-1]["type"] == "proposal.created"
    assert mf("show", "BOMItem:R1", "--json", cwd=path).json["properties"]["mpn"] == "RC0402FR-0710KL"
    drift = mf("drift", "--json", cwd=path)
    assert drift.code == 1 and drift.json["drifts"][0]["path"] == "hw/bom.csv"
    assert drift.json["drifts"][0]["proposal"] == pid
    # reading the same file again does not propose it twice
    again = mf("ingest", "hw", "--json", cwd=path)
    assert again.code == 0 and again.json["files"][0] == {"path": "hw/bom.csv", "adapter": "bom_csv",
                                                          "status": "proposed", "entities": 0, "proposal": pid}
    assert [p["id"] for p in mf("proposals", "--json", cwd=path).json] == [typed.json["proposal"], pid]
    # approved: the file's values are the graph's, and the file no longer drifts
    assert mf("approve", pid, "--actor", "user:lead", cwd=path).code == 0
    assert mf("show", "BOMItem:R1", "--json", cwd=path).json["properties"]["mpn"] == "RC0402FR-0747KL"
    assert mf("drift", cwd=path).code == 0
    assert mf("verify", cwd=path).code == 0


def test_a_rejected_file_edit_leaves_the_graph_and_the_drift(frozen_bom, mf):
    path = frozen_bom
    bom = path / "hw" / "bom.csv"
    bom.write_text(bom.read_text().replace("RC0402FR-0710KL", "RC0402FR-0747KL"))
    pid = mf("ingest", "hw", "--json", cwd=path).json["proposal"]
    assert mf("reject", pid, "-m", "not at DVT", "--actor", "user:lead", cwd=path).code == 0
    assert mf("show", "BOMItem:R1", "--json", cwd=path).json["properties"]["mpn"] == "RC0402FR-0710KL"
    drift = mf("drift", "--json", cwd=path)
    assert drift.code == 1 and "proposal" not in drift.json["drifts"][0]  # decided: an ordinary drift now
    # accepting the file by hand is again a request for approval, and the drift stays open
    r = mf("drift", "resolve", "hw/bom.csv", "--accept-file", "--json", cwd=path)
    assert r.code == 0 and r.json["proposal"] and r.json["resolved"] is False
    assert mf("drift", cwd=path).code == 1


def test_a_person_file_that_breaks_a_constraint_lands_with_a_warning_an_agent_file_is_refused(tmp_path, mf):
    path = tmp_path / "R"
    assert mf("init", str(path), "--template", "drone-flight-controller").code == 0
    proposed = mf("mutate", "add", "Constraint:no-47k", "severity=error",
                  'expression=count(BOMItem where value == "47k") == 0', "--json", cwd=path)
    assert mf("approve", proposed.json["proposal"], cwd=path).code == 0  # constraints need approval here
    (path / "hw").mkdir()
    (path / "hw" / "bom.csv").write_text("Reference,Value\nR9,47k\n")
    before = log_bytes(path)
    agent = mf("ingest", "hw", "--actor", "agent:bom-sync", "--json", cwd=path)
    assert agent.code == 1 and agent.json["error"]["kind"] == "constraint_violation"
    assert log_bytes(path) == before
    person = mf("ingest", "hw", "--json", cwd=path)
    assert person.code == 0 and person.json["warnings"] and person.json["appended"] > 0


def test_whatever_commits_starts_the_knowledge_update_and_tells_listeners(twin, mf, monkeypatch):
    """After every commit, whoever made it: the background knowledge update (one at a time, by
    its marker) and this process's listeners; a refused change tells no one."""
    import subprocess as sp

    from metaforge.thread import transaction

    started, heard = [], []
    monkeypatch.delenv("MF_NO_BACKGROUND", raising=False)
    monkeypatch.setattr(sp, "Popen", lambda args, **kw: started.append(args))
    stop = transaction.on_commit(lambda repo, seq: heard.append(seq))
    try:
        (twin / ".metaforge" / "knowledge.db").touch()
        assert mf("mutate", "add", "BOMItem:K1", cwd=twin).code == 0
        assert started and started[0][-3:] == ["knowledge", "update", "--quiet"]
        assert mf("mutate", "add", "BOMItem:K2", cwd=twin).code == 0
        assert len(started) == 1  # the first updater has not started reading yet: no second one
        (twin / ".metaforge" / transaction.KNOWLEDGE_PENDING).unlink()  # it started
        (twin / "hw").mkdir()
        (twin / "hw" / "bom.csv").write_text("Reference,Value\nK3,1k\n")
        assert mf("ingest", "hw", cwd=twin).code == 0
        assert len(started) == 2 and len(heard) == 3
        assert mf("mutate", "add", "BOMItem:K1", cwd=twin).code != 0  # refused: nothing committed
        assert len(heard) == 3
    finally:
        stop()


def test_the_server_event_feed_wakes_on_a_commit_of_its_process(twin):
    """mf serve's event hub polls the log every poll_s; a write of its own process wakes it at once."""
    import asyncio
    import threading

    from metaforge.repo import Repo
    from metaforge.serve.hubs import EventHub

    async def scenario():
        hub = EventHub(twin=None, poll_s=30.0)
        polled = asyncio.Event()
        hub._poll_logged = polled.set
        task = asyncio.create_task(hub.run())
        await asyncio.sleep(0.05)

        def write():
            repo = Repo(twin)
            with repo.transaction("user:tester", Source.CLI) as tx:
                tx.change([Change("add", "BOMItem:W1")])
            repo.close()

        threading.Thread(target=write).start()
        await asyncio.wait_for(polled.wait(), 5.0)  # not the 30 s poll
        task.cancel()

    asyncio.run(scenario())
