"""The CLI is thin: a command parses, makes one library call, renders. These tests pin the keyword
arguments a command passes to its library call (as DVC's command tests do), with the library
function replaced, and that one command resolves its repository and actor once."""

from __future__ import annotations

from pathlib import Path

import pytest

from metaforge.cli import state


class _Result:
    """What `execute` answers, as far as `mf mutate --json` reads it."""

    appended = 0
    refused = False

    def as_dict(self) -> dict:
        return {"ok": True}


@pytest.fixture
def calls(monkeypatch):
    """calls.of(module, name) replaces a library function by a recorder; calls.seen lists (args, kwargs)."""

    class Recorder:
        def __init__(self):
            self.seen: list[tuple[tuple, dict]] = []

        def of(self, module, name: str, answer):
            def fake(*args, **kwargs):
                self.seen.append((args, kwargs))
                return answer() if callable(answer) else answer

            monkeypatch.setattr(module, name, fake)

    return Recorder()


def test_mutate_set_passes_changes_actor_message_and_dry_run(repo, mf, calls):
    from metaforge.thread import commands
    from metaforge.thread.commands import Change

    calls.of(commands, "execute", _Result)
    r = mf("mutate", "set", "BOMItem:C1", "value=10uF", "qty:=2", "--expect-version", "3", "-m", "why",
           "--dry-run", "--actor", "agent:ci", "--json", cwd=repo)
    assert r.code == 0, r.err
    [(args, kwargs)] = calls.seen
    assert args[0].root == repo.resolve()
    assert args[1] == [Change("set", "BOMItem:C1", props={"value": "10uF", "qty": 2}, expect_version=3)]
    assert kwargs == {"actor": "agent:ci", "message": "why", "dry_run": True}


def test_mutate_without_actor_acts_as_mf_actor(repo, mf, calls, monkeypatch):
    from metaforge.thread import commands

    monkeypatch.setenv("MF_ACTOR", "agent:nightly")
    calls.of(commands, "execute", _Result)
    assert mf("mutate", "remove", "BOMItem:C1", "--json", cwd=repo).code == 0
    [(_, kwargs)] = calls.seen
    assert kwargs == {"actor": "agent:nightly", "message": None, "dry_run": False}


def test_a_bad_actor_is_refused_before_the_library_is_called(repo, mf, calls):
    from metaforge.thread import commands

    calls.of(commands, "execute", _Result)
    r = mf("mutate", "set", "BOMItem:C1", "value=1", "--actor", "robot", cwd=repo)
    assert r.code == 2 and "not user:<name> or agent:<code>" in r.err
    assert calls.seen == []


def test_ingest_passes_paths_from_dash_c_and_its_options(repo, mf, calls, tmp_path, monkeypatch):
    from metaforge.thread import artifacts

    monkeypatch.chdir(tmp_path)  # paths are taken relative to -C, not to where mf was started
    calls.of(artifacts, "ingest", lambda: {"files": [], "changes": 0, "warnings": [], "appended": 0, "result": None})
    r = mf("ingest", "hw", "bom.csv", "--adapter", "bom_csv", "--keep-going", "-m", "first read", "--dry-run",
           "--json", cwd=repo)
    assert r.code == 0, r.err
    [(args, kwargs)] = calls.seen
    assert args[0].root == repo.resolve()
    assert args[1] == [repo / "hw", repo / "bom.csv"]
    progress = kwargs.pop("progress")
    assert callable(progress)
    assert kwargs == {"actor": "user:tester", "message": "first read", "adapter": "bom_csv", "keep_going": True,
                      "dry_run": True}
    assert "result" not in r.json  # the batch's internals stay out of --json


def test_device_register_passes_its_options(repo, mf, calls):
    from metaforge.thread import devices

    calls.of(devices, "register", _Result)
    r = mf("device", "register", "FC-1", "--model", "Drone-v1", "--firmware", "1.2.0", "--location", "lab",
           "--group", "bench", "--source", "board_temp_c:degC:10", "--policy", "mode=periodic", "--policy",
           "sample_rate_hz=2", "-m", "built", "--actor", "user:ana", "--json", cwd=repo)
    assert r.code == 0, r.err
    [(args, kwargs)] = calls.seen
    assert args[1:] == ("FC-1", "Drone-v1")
    assert kwargs == {"actor": "user:ana", "firmware": "1.2.0", "location": "lab",
                      "policy": {"mode": "periodic", "sample_rate_hz": "2"}, "group": "bench",
                      "sources": ["board_temp_c:degC:10"], "message": "built"}


def test_one_command_finds_its_repository_once_and_closes_it(repo, mf, monkeypatch):
    from metaforge.repo import Repo

    found, closed = [], []
    real_find, real_close = Repo.find.__func__, Repo.close

    def find(cls, start=None):
        found.append(start)
        return real_find(cls, start)

    def close(self):
        closed.append(self.root)
        real_close(self)

    monkeypatch.setattr(Repo, "find", classmethod(find))
    monkeypatch.setattr(Repo, "close", close)
    r = mf("mutate", "add", "Requirement:REQ-1", "text=hover 20 min", "-m", "first", cwd=repo)
    assert r.code == 0, r.err
    assert found == [str(repo)] and closed == [repo.resolve()]
    assert state.context is None  # nothing of this run is left for the next


def test_help_opens_no_repository(tmp_path, mf):
    r = mf("mutate", "set", "--help", cwd=tmp_path)  # not a repository: --help must not care
    assert r.code == 0 and "--actor" in r.out


def test_no_command_module_renders_through_another():
    """Rendering lives in cli/render.py: no command module imports another command's module for it."""
    cli = Path(__file__).resolve().parents[1] / "metaforge" / "cli"
    for source in cli.glob("*.py"):
        text = source.read_text()
        assert "from metaforge.cli.mutate import" not in text, source.name
        assert "from metaforge.cli.drift import" not in text, source.name
