"""Hostile input (issue 16, case 5): every limit refuses with exit 2 naming it, nothing is written,
and text mf did not write is printed with its control characters escaped. Real `mf` processes."""

import json
import subprocess

import pytest

from conftest import log_bytes, mf_process

from metaforge import limits


@pytest.fixture
def proc_repo(tmp_path):
    path = tmp_path / "product"
    assert mf_process("init", str(path), cwd=tmp_path).returncode == 0
    assert mf_process("mutate", "add", "BOMItem:U1", "quantity=1", cwd=path).returncode == 0
    return path


def _refused(repo, *args, says: str, env=None):
    before = log_bytes(repo)
    r = mf_process(*args, cwd=repo, env=env)
    assert r.returncode == 2, (r.returncode, r.stderr)
    line, = r.stderr.strip().splitlines()  # one line
    assert says in line, line
    assert "internal error" not in line
    assert log_bytes(repo) == before
    return line


def test_non_finite_numbers_are_refused_and_queries_keep_working(proc_repo):
    _refused(proc_repo, "mutate", "set", "BOMItem:U1", "current=1e999A", says="not a finite number")
    _refused(proc_repo, "mutate", "set", "BOMItem:U1", "unit_cost=inf", says="finite")
    _refused(proc_repo, "mutate", "set", "BOMItem:U1", "tags:=[NaN]", says="NaN is not a finite number")
    _refused(proc_repo, "mutate", "set", "BOMItem:U1", "tags:=[1, 1e999]", says="not a finite number")
    _refused(proc_repo, "mutate", "set", "BOMItem:U1", "quantity:=123456789012345678901234567890",
             says="64-bit")
    q = mf_process("query", "--where", "current<=1A", "--json", cwd=proc_repo)
    assert q.returncode == 0


def test_deep_nesting_is_refused_on_the_command_line_and_in_an_apply_file(proc_repo, tmp_path):
    deep = "[" * 2000 + "]" * 2000
    _refused(proc_repo, "mutate", "set", "BOMItem:U1", f"tags:={deep}", says="MAX_DEPTH")
    _refused(proc_repo, "mutate", "set", "BOMItem:U1", "tags:=" + "[" * 40 + "]" * 40, says="MAX_DEPTH")
    assert mf_process("mutate", "set", "BOMItem:U1", "tags:=" + "[" * 5 + "]" * 5, cwd=proc_repo).returncode == 0
    f = tmp_path / "deep.yaml"
    f.write_text("- set: BOMItem:U1\n  props:\n    tags: " + "[" * 3000 + "]" * 3000 + "\n")
    line = _refused(proc_repo, "mutate", "apply", str(f), says="deep")
    assert str(f) in line or "deep.yaml" in line
    j = tmp_path / "deep.json"
    j.write_text(json.dumps([{"set": "BOMItem:U1", "props": {"tags": [json.loads("[" * 100 + "]" * 100)]}}]))
    _refused(proc_repo, "mutate", "apply", str(j), says="MAX_DEPTH")


def test_sizes_are_capped(proc_repo, tmp_path):
    big = "x" * (10 << 20)
    ids = tmp_path / "id.json"
    ids.write_text(json.dumps([{"add": "BOMItem:" + big}]))
    _refused(proc_repo, "mutate", "apply", str(ids), says="MAX_ID_CHARS")
    _refused(proc_repo, "mutate", "add", "BOMItem:" + "a" * 300, says="MAX_ID_CHARS")
    value = tmp_path / "value.json"
    value.write_text(json.dumps([{"set": "BOMItem:U1", "props": {"notes": big}}]))
    _refused(proc_repo, "mutate", "apply", str(value), says="MAX_VALUE_BYTES")
    message = tmp_path / "message.json"
    message.write_text(json.dumps({"message": big, "changes": [{"set": "BOMItem:U1", "props": {"notes": "y"}}]}))
    _refused(proc_repo, "mutate", "apply", str(message), says="MAX_MESSAGE_CHARS")
    _refused(proc_repo, "mutate", "set", "BOMItem:U1", "notes=y", "-m", "m" * (limits.MAX_MESSAGE_CHARS + 1),
             says="MAX_MESSAGE_CHARS")
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(limits.MAX_APPLY_FILE_BYTES + 1)  # sparse: the size is what is refused, before reading
    _refused(proc_repo, "mutate", "apply", str(huge), says="MAX_APPLY_FILE_BYTES")
    for line in (proc_repo / ".metaforge/events/000001.jsonl").read_bytes().splitlines():
        assert len(line) < 4096


@pytest.mark.parametrize("value", ["-500C", "-300K", "-273.16C", "-460F", "-0.001K"])
def test_temperatures_below_absolute_zero_are_refused(proc_repo, value):
    _refused(proc_repo, "mutate", "set", "BOMItem:U1", f"max_temp={value}", says="below absolute zero")


@pytest.mark.parametrize("value", ["-273.15C", "0K", "-40F", "85C"])
def test_temperatures_down_to_absolute_zero_are_accepted(proc_repo, value):
    assert mf_process("mutate", "set", "BOMItem:U1", f"max_temp={value}", cwd=proc_repo).returncode == 0


def test_a_temperature_as_a_mapping_is_checked_too(proc_repo, tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps([{"set": "BOMItem:U1", "props": {"max_temp": {"value": -300, "unit": "degC"}}}]))
    _refused(proc_repo, "mutate", "apply", str(f), says="below absolute zero")


@pytest.mark.parametrize("actor", ["user:\x1b[31mevil", "agent:a\x07b", "user:x\u202egnp.exe", "user:" + "a" * 200])
def test_control_characters_and_long_actors_are_refused(proc_repo, actor):
    line = _refused(proc_repo, "mutate", "set", "BOMItem:U1", "notes=y", "--actor", actor, says="actor")
    assert "\x1b" not in line and "\x07" not in line and "\u202e" not in line
    _refused(proc_repo, "status", says="actor", env={"MF_ACTOR": actor}) if False else None


def test_control_characters_in_ids_are_refused(proc_repo, tmp_path):
    f = tmp_path / "ids.json"
    for bad in ["BOMItem:U\x1b[2J", "BOMItem:U2\n", "BOMItem:U\x00"]:
        f.write_text(json.dumps([{"add": bad}]))
        line = _refused(proc_repo, "mutate", "apply", str(f), says="BOMItem:U")
        assert "\x1b" not in line and "\x00" not in line


def test_text_mf_did_not_write_is_printed_escaped(proc_repo, tmp_path):
    f = tmp_path / "ansi.json"
    f.write_text(json.dumps({"message": "why \x1b]0;owned\x07", "changes": [
        {"set": "BOMItem:U1", "props": {"notes": "hi\x1b[2J\x1b[31mred", "description": "tab\tnew\nline"}}]}))
    r = mf_process("mutate", "apply", str(f), cwd=proc_repo)
    assert r.returncode == 0 and "\x1b" not in r.stderr
    for args in (["show", "BOMItem:U1"], ["log"], ["query", "--type", "BOMItem"], ["trace", "BOMItem:U1"]):
        out = mf_process(*args, cwd=proc_repo)
        assert out.returncode == 0, out.stderr
        assert "\x1b" not in out.stdout + out.stderr and "\x07" not in out.stdout + out.stderr, args
    shown = mf_process("show", "BOMItem:U1", cwd=proc_repo).stdout
    assert "hi\\x1b[2J\\x1b[31mred" in shown
    j = mf_process("show", "BOMItem:U1", "--json", cwd=proc_repo)  # JSON keeps the value, escaped by JSON
    assert json.loads(j.stdout)["properties"]["notes"] == "hi\x1b[2J\x1b[31mred" and "\x1b" not in j.stdout
    err = mf_process("show", "BOMItem:Q\x1b[31m", cwd=proc_repo)
    assert err.returncode == 2 and "\x1b" not in err.stderr


def test_the_limits_are_documented():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in ("MAX_ID_CHARS", "MAX_ACTOR_CHARS", "MAX_MESSAGE_CHARS", "MAX_VALUE_BYTES", "MAX_DEPTH",
                 "MAX_APPLY_FILE_BYTES"):
        assert name in readme and hasattr(limits, name)


def test_a_null_quantity_an_older_mf_stored_does_not_break_queries(proc_repo):
    """An older mf stored `current=1e999A` as {"value": null}: later comparisons must still answer."""
    from metaforge.events import Draft
    from metaforge.repo import Repo

    r = Repo(proc_repo)
    with r.log.lock():
        r.log.append(r.index.position(), [Draft("node.created", "BOMItem:OLD", 1,
                                                {"properties": {"current": {"value": None, "unit": "A"}}})],
                     "user:old", "2026-01-01T00:00:00.000Z")
    r.close()
    assert mf_process("mutate", "set", "BOMItem:U1", "current=5A", cwd=proc_repo).returncode == 0
    for where, ids in (("current<=1A", []), ("current>=1A", ["BOMItem:U1"])):
        q = mf_process("query", "--where", where, "--json", cwd=proc_repo)
        assert q.returncode == 0, q.stderr
        assert [n["id"] for n in json.loads(q.stdout)] == ids
