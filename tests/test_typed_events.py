"""Typed events: every event type is declared once with its payload model; writes are held to it;
readers get typed events on demand; upcasting runs on read; a line of an event format this build
does not know fails `mf verify` naming file and line, and every other command refuses it rather
than fold it into the index. Unknown event *types* at a known format still pass through."""

import hashlib
import re
import sqlite3
from pathlib import Path

import orjson
import pytest

from conftest import ROOT, log_bytes, read_log
from metaforge import events as ev
from metaforge.errors import InvalidEvent, LogCorrupt, UnknownFormat
from metaforge.repo import Repo

SEGMENT = ".metaforge/events/000001.jsonl"


def _fill(repo, mf, n=3):
    for i in range(n):
        assert mf("mutate", "add", f"BOMItem:C{i}", f"quantity={i + 1}", cwd=repo).code == 0


def _line(body: dict) -> bytes:
    """A line hashed the way the log hashes it, whatever its `v` says (a newer mf's line)."""
    raw = orjson.dumps(body)
    return raw[:-1] + b',"hash":"' + hashlib.sha256(raw).hexdigest().encode() + b'"}\n'


def _append_by_hand(repo: Path, v: int, type_: str, entity: str, payload: dict) -> None:
    last = read_log(repo)[-1]
    body = {"v": v, "seq": last["seq"] + 1, "id": "f" * 20, "type": type_, "entity": entity, "version": 1,
            "ts": "2031-01-01T00:00:00.000Z", "actor": "user:future", "payload": payload, "prev": last["hash"]}
    with open(repo / SEGMENT, "ab") as f:
        f.write(_line(body))


def _indexed(repo: Path, sql: str, args=()) -> list:
    conn = sqlite3.connect(repo / ".metaforge/index.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# ---- the registry ------------------------------------------------------------------------------

def test_every_event_type_is_declared_once_with_a_payload_model():
    from metaforge.events.payloads import DECLARED, Payload

    names = {v for k, v in vars(ev).items() if k.isupper() and isinstance(v, str) and re.fullmatch(r"[a-z]+\.[a-z_]+", v)}
    assert names == set(DECLARED), names ^ set(DECLARED)
    for name, model in DECLARED.items():
        assert issubclass(model, Payload) and model.event_type == name
        assert model.model_config["frozen"] and model.model_config["extra"] == "forbid"


def test_writers_name_event_types_by_their_constants():
    """A string literal as the type of a draft would be a second, unchecked declaration."""
    literal = re.compile(r"""Draft\(\s*["']|\[\(\s*["'][a-z]+\.[a-z_]+["']""")
    found = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "metaforge").rglob("*.py")
             for i, text in enumerate(p.read_text().splitlines(), 1) if literal.search(text)]
    assert not found, found


# ---- writes are held to the declarations -------------------------------------------------------

def test_a_draft_that_does_not_fit_its_model_is_refused_naming_type_and_field():
    bad = ev.Draft(ev.EDGE_CREATED, "BOMItem:C0", 2, {"rel": "SATISFIES"})
    with pytest.raises(InvalidEvent) as caught:
        ev.encode(1, bad, ev.now(), "user:tester", ev.GENESIS)
    assert "edge.created on BOMItem:C0" in caught.value.message
    assert "to: Field required" in caught.value.message
    assert InvalidEvent.exit_code == 3  # a bug, not the user's input
    with pytest.raises(InvalidEvent, match=r"node.updated .*set: Input should be a valid dictionary"):
        ev.encode(1, ev.Draft(ev.NODE_UPDATED, "BOMItem:C0", 2, {"set": ["quantity"]}), ev.now(), "u:x", ev.GENESIS)
    with pytest.raises(InvalidEvent, match=r"property.set .*colour: Extra inputs are not permitted"):
        ev.encode(1, ev.Draft(ev.PROPERTY_SET, "BOMItem:C0", 2, {"key": "k", "value": 1, "colour": "red"}),
                  ev.now(), "u:x", ev.GENESIS)


def test_nothing_is_written_when_one_draft_of_a_batch_does_not_fit(repo, mf):
    _fill(repo, mf)
    before = log_bytes(repo)
    r = Repo(repo)
    good = ev.Draft(ev.PROPERTY_SET, "BOMItem:C0", 2, {"key": "quantity", "value": 5})
    bad = ev.Draft(ev.DEVICE_STATE_UPDATED, "DeviceInstance:D1", 1, {"from": "ok", "to": 3, "metrics": {}})
    with r.log.lock():
        head = r.index.position()
        with pytest.raises(InvalidEvent, match=r"device.state_updated on DeviceInstance:D1: .*to: Input should be a valid string"):
            r.log.append(head, [good, bad], "user:tester", ev.now())
    r.close()
    assert log_bytes(repo) == before
    assert not (repo / ".metaforge/log.journal").exists()
    assert mf("verify", cwd=repo).code == 0


def test_undeclared_types_are_not_checked_so_a_merge_can_replay_them():
    line, _, _ = ev.encode(1, ev.Draft("telemetry.future_thing", "X:y", 1, {"anything": [1, 2]}), ev.now(), "u:x",
                           ev.GENESIS)
    assert b'"type":"telemetry.future_thing"' in line


# ---- typed reads -------------------------------------------------------------------------------

def test_the_reader_hands_typed_events_on_demand_and_they_round_trip(twin):
    from metaforge.events.payloads import DECLARED

    repo = Repo(twin)
    seen = set()
    for rec in repo.log.read():
        typed = rec.typed()
        assert isinstance(typed, ev.Event)
        assert isinstance(typed.payload, DECLARED[typed.type])
        stored = {k: v for k, v in rec.event.items() if k != "v"}
        assert typed.as_dict() == stored
        seen.add(typed.type)
    assert {ev.NODE_CREATED, ev.EDGE_CREATED} <= seen
    created = next(r.typed() for r in repo.log.read() if r.event["type"] == ev.NODE_CREATED)
    with pytest.raises(Exception):  # frozen: a read event is a fact
        created.payload.properties = {}
    repo.close()


def test_a_typed_read_of_an_undeclared_type_keeps_its_payload_as_it_is():
    d = {"v": 1, "seq": 7, "id": "a" * 20, "type": "telemetry.future_thing", "entity": "X:y", "version": 1,
         "ts": "t", "actor": "u:x", "payload": {"k": 1}, "prev": ev.GENESIS, "hash": "0" * 64}
    assert ev.typed(d).payload == {"k": 1}


def test_a_typed_read_of_a_payload_that_does_not_fit_is_a_log_problem():
    d = {"v": 1, "seq": 7, "id": "a" * 20, "type": ev.EDGE_CREATED, "entity": "X:y", "version": 1,
         "ts": "t", "actor": "u:x", "payload": {"rel": "R"}, "prev": ev.GENESIS, "hash": "0" * 64}
    with pytest.raises(LogCorrupt, match="event 7: its edge.created payload does not fit its declaration: to: Field required"):
        ev.typed(d)


# ---- upcasting on read -------------------------------------------------------------------------

def test_a_format_bump_upcasts_old_lines_on_read_and_they_still_verify(repo, mf, monkeypatch):
    """What a later mf does when an event changes shape: FORMAT 2 and a step from 1. The lines
    written at format 1 keep their bytes (their hashes), and every reader sees them upcast."""
    import metaforge.store.log as store_log

    _fill(repo, mf)

    def rename_quantity(d):
        if d["type"] == ev.NODE_CREATED and "quantity" in (d["payload"].get("properties") or {}):
            props = dict(d["payload"]["properties"])
            props["qty"] = props.pop("quantity")
            d = {**d, "payload": {**d["payload"], "properties": props}}
        return d

    monkeypatch.setattr(ev, "FORMAT", 2)
    monkeypatch.setattr(store_log, "FORMAT", 2)
    monkeypatch.setitem(ev.UPCASTERS, 1, rename_quantity)
    r = Repo(repo)
    records = list(r.log.read())
    assert [rec.event["v"] for rec in records] == [2, 2, 2]
    assert records[0].event["payload"]["properties"] == {"qty": 1}
    assert r.log.lines_at([(records[1].segment, records[1].offset)])[0]["payload"]["properties"] == {"qty": 2}
    r.index.rebuild(r.log)
    assert r.index.props("BOMItem:C2") == {"qty": 3}
    r.close()


# ---- a line from a newer mf --------------------------------------------------------------------

def test_a_line_of_a_newer_format_fails_verify_naming_file_and_line(repo, mf):
    _fill(repo, mf)
    _append_by_hand(repo, 2, ev.NODE_CREATED, "BOMItem:FUTURE", {"properties": {"quantity": 9}})
    r = mf("verify", "--json", cwd=repo)
    assert r.code == 1
    problem = r.json["problems"][0]
    assert problem["kind"] == "unknown_format"
    assert problem["message"] == f"{SEGMENT}:4: written by a newer mf (event format 2, this mf reads up to 1)"
    assert "upgrade mf" in problem["hint"]
    plain = mf("verify", cwd=repo)
    assert plain.code == 1 and f"{SEGMENT}:4: written by a newer mf" in plain.err


def test_a_newer_format_is_judged_before_the_hash(repo, mf):
    """A newer mf may hash differently: its line is named for its format, not as damaged."""
    _fill(repo, mf)
    with open(repo / SEGMENT, "ab") as f:
        f.write(b'{"v":3,"seq":4,"type":"node.created","sig":"ed25519:..."}\n')
    r = mf("verify", "--json", cwd=repo)
    assert r.code == 1 and r.json["problems"][0]["message"].startswith(f"{SEGMENT}:4: written by a newer mf (event format 3")


def test_commands_refuse_a_newer_format_and_never_fold_it(repo, mf):
    _fill(repo, mf)
    mf("status", cwd=repo)  # the index is built up to seq 3
    _append_by_hand(repo, 2, ev.NODE_CREATED, "BOMItem:FUTURE", {"properties": {"quantity": 9}})
    before = log_bytes(repo)
    w = mf("mutate", "add", "BOMItem:NEW", cwd=repo)
    assert w.code == 1 and f"{SEGMENT}:4: written by a newer mf (event format 2, this mf reads up to 1)" in w.err
    assert "upgrade mf" in w.err
    assert log_bytes(repo) == before
    for args in (["show", "BOMItem:C1"], ["status"], ["log"], ["query", "--type", "BOMItem"]):
        r = mf(*args, cwd=repo)
        assert r.code == 1 and "written by a newer mf" in r.err, (args, r.err)
    assert _indexed(repo, "SELECT id FROM nodes WHERE id = 'BOMItem:FUTURE'") == []
    assert _indexed(repo, "SELECT max(seq) FROM events") == [(3,)]
    assert _indexed(repo, "SELECT value FROM meta WHERE key = 'pos.seq'") == [("3",)]
    # a fresh clone has no index: the same refusal, and nothing from the line is folded
    (repo / ".metaforge/index.db").unlink()
    r = mf("show", "BOMItem:C1", cwd=repo)
    assert r.code == 1 and "written by a newer mf" in r.err
    assert _indexed(repo, "SELECT count(*) FROM nodes WHERE id = 'BOMItem:FUTURE'") == [(0,)]


def test_the_reader_stops_at_the_newer_line_after_handing_the_ones_before(repo, mf):
    _fill(repo, mf)
    _append_by_hand(repo, 2, ev.NODE_CREATED, "BOMItem:FUTURE", {})
    _append_by_hand(repo, 1, ev.NODE_CREATED, "BOMItem:LATER", {})  # never reached
    r = Repo(repo)
    handed = []
    with pytest.raises(UnknownFormat) as caught:
        for rec in r.log.read():
            handed.append(rec.event["entity"])
    r.close()
    assert handed == ["BOMItem:C0", "BOMItem:C1", "BOMItem:C2"]
    assert caught.value.details == {"file": SEGMENT, "line": 4, "format": 2}
    assert isinstance(caught.value, LogCorrupt) and caught.value.exit_code == 1


# ---- unknown types at a known format: forward compatible as before ------------------------------

def test_an_unknown_type_at_a_known_format_is_kept_and_ignored_by_the_graph(repo, mf):
    _fill(repo, mf)
    last = read_log(repo)[-1]
    line, _, _ = ev.encode(4, ev.Draft("telemetry.future_thing", "BOMItem:C1", 1, {"x": 1}), ev.now(),
                           "agent:future", last["hash"])
    with open(repo / SEGMENT, "ab") as f:
        f.write(line)
    v = mf("verify", "--json", cwd=repo)
    assert v.code == 0 and v.json["events"] == 4 and v.json["index"] == "agrees", v.out
    assert mf("show", "BOMItem:C1", "--json", cwd=repo).json["version"] == 1
    assert mf("mutate", "set", "BOMItem:C1", "quantity=7", cwd=repo).code == 0
    assert _indexed(repo, "SELECT seq, type FROM events WHERE seq = 4") == [(4, "telemetry.future_thing")]
    assert mf("verify", cwd=repo).code == 0


# ---- the API schema uses the same declarations -------------------------------------------------

def test_the_openapi_document_describes_each_event_type_by_its_declaration(twin):
    from metaforge.events.payloads import DECLARED
    from metaforge.serve.app import create_app
    from metaforge.serve.settings import ServeSettings
    from metaforge.thread.queries import history

    schemas = create_app(ServeSettings(root=twin)).openapi()["components"]["schemas"]
    for name, model in DECLARED.items():
        variant = schemas[f"{model.__name__}Event"]["properties"]
        assert variant["type"]["const"] == name
        assert variant["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        declared = {f.alias or k for k, f in model.model_fields.items()}
        assert set(schemas[model.__name__].get("properties", {})) == declared
    assert schemas["UndeclaredEvent"]["properties"]["type"]["not"]["enum"] == sorted(DECLARED)

    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    validator = jsonschema_rs.validator_for({"$ref": "#/components/schemas/EventList", "components": {"schemas": schemas}})
    events = history(Repo(twin), None, None, 10_000, 0, reverse=True)
    assert validator.is_valid({"events": events, "last_seq": events[-1]["seq"], "more": False})
    broken = next(dict(e, payload={"rel": e["payload"]["rel"]}) for e in events if e["type"] == ev.EDGE_CREATED)
    assert not validator.is_valid({"events": [broken], "last_seq": 1, "more": False})
    future = dict(events[0], type="telemetry.future_thing", payload={"anything": 1})
    assert validator.is_valid({"events": [future], "last_seq": 1, "more": False})


def test_a_format_that_is_no_format_is_damage_not_a_newer_mf(repo, mf):
    _fill(repo, mf)
    _append_by_hand(repo, 0, ev.NODE_CREATED, "BOMItem:ZERO", {})
    r = mf("verify", "--json", cwd=repo)
    assert r.code == 1 and r.json["problems"][0]["kind"] == "log"
    assert r.json["problems"][0]["message"] == f"{SEGMENT}:4: event format 0 is not a format of mf"
