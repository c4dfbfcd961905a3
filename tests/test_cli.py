"""The CLI contract: exit codes, JSON-only stdout, help everywhere, completions, start-up hygiene."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, mf_process

COMMANDS = [["init"], ["show"], ["query"], ["trace"], ["log"], ["status"], ["verify"], ["rebuild"], ["types"],
            ["check"], ["proposals"], ["approve"], ["reject"], ["template", "save"], ["template", "list"],
            ["diff"], ["merge"], ["hooks", "install"], ["seal"], ["ask"], ["knowledge", "update"],
            ["knowledge", "reconcile"], ["device", "register"], ["device", "list"], ["device", "show"],
            ["device", "policy"], ["device", "source"], ["device", "retire"],
            ["ingest", "files"], ["project"], ["drift", "check"], ["drift", "watch"], ["drift", "reconcile"],
            ["drift", "resolve"], ["hooks", "uninstall"], ["ingest", "telemetry"], ["ingest", "mqtt"],
            ["telemetry", "query"], ["telemetry", "dead-letters"], ["telemetry", "prune"], ["serve"],
            ["sim", "run"], ["sim", "what-if"], ["sim", "sweep"], ["sim", "calibrate"],
            ["sim", "compare"], ["sim", "models"], ["sim", "register"],
            ["mutate"], ["mutate", "add"], ["mutate", "set"], ["mutate", "unset"], ["mutate", "remove"],
            ["mutate", "link"], ["mutate", "unlink"], ["mutate", "apply"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_is_in_the_readme(mf, command):
    r = mf(*command, "--help")
    assert r.code == 0
    assert "Usage: mf " + " ".join(command) in r.out
    lines = [l for l in r.out.splitlines() if l.strip()]
    assert len(lines) >= 3  # a description, not just the usage line
    if command not in (["mutate"], ["template"], ["hooks"], ["knowledge"]):
        assert "--json" in r.out
    assert f"mf {' '.join(command)}" in (ROOT / "README.md").read_text()


def test_help_lists_every_command(mf):
    out = mf("--help").out
    for command in ("init", "mutate", "show", "query", "trace", "log", "status", "verify", "rebuild"):
        assert f"  {command} " in out


def test_version(mf):
    from metaforge import __version__

    p = mf_process("--version", cwd=ROOT)
    assert p.returncode == 0 and p.stdout == f"mf {__version__}\n"
    assert mf("--version").out == f"mf {__version__}\n"


def test_usage_errors_exit_2(mf):
    assert mf("mutate", "set").code == 2
    assert mf("frobnicate").code == 2
    assert mf("query", "--limit", "many").code == 2


@pytest.mark.parametrize("args", [["status"], ["query"], ["show", "BOMItem:U1"], ["trace", "BOMItem:U1"],
                                  ["log"], ["verify"], ["rebuild"],
                                  ["mutate", "set", "BOMItem:U1", "current=91mA", "--dry-run"]])
def test_json_output_is_only_json(twin, args):
    p = mf_process(*args, "--json", cwd=twin)
    assert p.returncode == 0, p.stderr
    json.loads(p.stdout)


def test_json_errors_are_json_on_stdout_and_one_line_on_stderr(twin):
    p = mf_process("mutate", "set", "BOMItem:U1", "current=1V", "--json", cwd=twin)
    assert p.returncode == 2
    assert json.loads(p.stdout)["error"]["kind"] == "bad_input"
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("mf: error: ")


def test_internal_errors_exit_3_with_one_line_and_traceback_only_with_debug(twin, mf, monkeypatch):
    import metaforge.thread.queries as queries

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(queries, "status", broken)
    r = mf("status", cwd=twin)
    assert r.code == 3
    assert r.err == "mf: internal error: RuntimeError: disk on fire (run with --debug for the traceback)\n"
    r = mf("--debug", "status", cwd=twin)
    assert r.code == 3 and "Traceback" in r.err


def test_hook_friendly_exit_codes_from_a_real_process(twin):
    assert mf_process("verify", cwd=twin).returncode == 0
    assert mf_process("mutate", "add", "BOMItem:U1", cwd=twin).returncode == 1   # refused: exists
    assert mf_process("mutate", "add", "Nope:U1", cwd=twin).returncode == 2      # bad input
    (twin / ".metaforge/events/000001.jsonl").open("ab").write(b"{torn")
    assert mf_process("verify", cwd=twin).returncode == 1                         # finding


def test_completions_are_committed_and_current():
    from metaforge.cli.completions import SHELLS, script

    for shell in SHELLS:
        text = (ROOT / "completions" / f"mf.{shell}").read_text()
        assert text == script(shell), f"run scripts/gen-completions ({shell})"
        assert "_MF_COMPLETE" in text


def test_completion_answers_through_the_real_entry_point():
    p = subprocess.run([sys.executable, "-m", "metaforge"], cwd=ROOT, capture_output=True, text=True,
                       env={**__import__("os").environ, "COMP_WORDS": "mf mutate se", "COMP_CWORD": "2",
                            "_MF_COMPLETE": "complete_bash"})
    assert p.stdout.split() == ["set"]


HEAVY = ("numpy", "scipy", "pint", "kiutils", "cadquery", "OCP", "yaml")


@pytest.mark.parametrize("args, also_absent", [
    (["--version"], ("typer", "rich", "pydantic", "metaforge.store")),
    (["--help"], ("pydantic", "metaforge.store")),
    (["status"], ("pydantic",)),
    (["show", "BOMItem:U1"], ("pydantic",)),
    (["drift"], ("pydantic",)),  # a pre-commit hook's read: no write machinery
    (["query", "--where", "mpn~RC"], ("pydantic",)),
    (["log", "--limit", "3"], ("pydantic",)),
    (["mutate", "set", "BOMItem:U1", "current=91mA"], ()),
    (["sim", "--help"], ("pydantic", "metaforge.sim")),
])
def test_commands_import_only_what_they_need(twin, args, also_absent):
    code = ("import sys, runpy; sys.argv = ['mf'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('metaforge', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('\\nLOADED', ' '.join(sorted(m for m in sys.modules)))")
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=twin, capture_output=True, text=True)
    loaded = set(p.stdout.rsplit("LOADED", 1)[1].split())
    for module in HEAVY + also_absent:
        assert module not in loaded, f"mf {' '.join(args)} imported {module}"
