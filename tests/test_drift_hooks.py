"""`mf hooks install`: real `git commit` runs through mf's pre-commit (drift of the staged files,
constraints) and post-commit (the commit linked to the semantic version); hooks already there
keep running; install is idempotent and uninstall takes out only mf's part."""

import os
import sys

import pytest

from conftest import read_log
from kicad_edits import PCB, SCH, demo_twin, git, set_value

USER_PRE = "#!/bin/bash\nset -e\necho pre >> \"$(git rev-parse --git-dir)/user-hooks.txt\"\nexit 0\n"
USER_POST = ("#!/usr/bin/env python3\nimport subprocess\n"
             "d = subprocess.run(['git', 'rev-parse', '--git-dir'], capture_output=True, text=True).stdout.strip()\n"
             "open(d + '/user-hooks.txt', 'a').write('post\\n')\n")


@pytest.fixture
def board(twin, mf):
    return demo_twin(twin, mf)


def user_hooks(repo):
    hooks = repo / ".git" / "hooks"
    for name, text in (("pre-commit", USER_PRE), ("post-commit", USER_POST)):
        (hooks / name).write_text(text)
        os.chmod(hooks / name, 0o755)
    return hooks


def ran(repo):
    path = repo / ".git" / "user-hooks.txt"
    return path.read_text().split() if path.exists() else []


def commit(repo, message):
    return git("commit", "-m", message, cwd=repo, check=False)


def test_install_chains_is_idempotent_and_uninstall_restores_byte_for_byte(board, mf):
    hooks = user_hooks(board)
    r = mf("hooks", "install", "--json", cwd=board)
    assert r.code == 0, r.err
    assert r.json["hooks"] == {"pre-commit": "chained", "post-commit": "chained"}
    pre = (hooks / "pre-commit").read_text()
    assert pre.startswith("#!/bin/bash\n# >>> mf hooks >>>") and USER_PRE.split("\n", 1)[1] in pre
    assert f"{sys.executable} -m metaforge hooks run pre-commit" in pre  # the Python that installed it
    assert (hooks / "post-commit.mf-chained").read_text() == USER_POST  # a Python hook: run after mf's block
    installed = {p: (hooks / p).read_bytes() for p in ("pre-commit", "post-commit")}
    again = mf("hooks", "install", "--json", cwd=board).json
    assert again["hooks"] == {"pre-commit": "unchanged", "post-commit": "unchanged"}
    assert {p: (hooks / p).read_bytes() for p in installed} == installed
    r = mf("hooks", "uninstall", "--json", cwd=board)
    assert r.json["hooks"] == {"pre-commit": "unchained", "post-commit": "restored"}
    assert (hooks / "pre-commit").read_text() == USER_PRE and (hooks / "post-commit").read_text() == USER_POST
    assert os.access(hooks / "post-commit", os.X_OK) and not (hooks / "post-commit.mf-chained").exists()
    # in a clone without hooks, mf's own are made and taken away whole
    assert mf("hooks", "uninstall", "--json", cwd=board).json["hooks"] == {"pre-commit": "absent", "post-commit": "absent"}
    (hooks / "pre-commit").unlink()
    (hooks / "post-commit").unlink()
    assert mf("hooks", "install", "--json", cwd=board).json["hooks"] == {"pre-commit": "created", "post-commit": "created"}
    assert os.access(hooks / "pre-commit", os.X_OK)
    assert mf("hooks", "uninstall", "--json", cwd=board).json["hooks"] == {"pre-commit": "removed", "post-commit": "removed"}
    assert not (hooks / "pre-commit").exists() and not (hooks / "post-commit").exists()


def test_a_commit_with_drift_is_blocked_and_an_accepted_one_is_linked(board, mf):
    user_hooks(board)
    assert mf("hooks", "install", cwd=board).code == 0
    head = git("rev-parse", "HEAD", cwd=board).stdout
    set_value(board / SCH, "C1", "220uF")
    git("add", SCH, cwd=board)
    p = commit(board, "bigger C1")
    assert p.returncode != 0
    assert f"DesignElement:pic_programmer/C1.value: 100µF → 220uF in {SCH}" in p.stdout + p.stderr
    assert "commit blocked" in p.stderr
    assert git("rev-parse", "HEAD", cwd=board).stdout == head and ran(board) == []
    # accepted into the graph, the file and the events commit; the user's hooks run too
    assert mf("drift", "resolve", SCH, "--accept-file", cwd=board).code == 0
    git("add", "-A", cwd=board)
    p = commit(board, "bigger C1, in the twin")
    assert p.returncode == 0, p.stdout + p.stderr
    assert ran(board) == ["pre", "post"]
    new_head = git("rev-parse", "HEAD", cwd=board).stdout.strip()
    link = read_log(board)[-1]
    assert link["type"] == "state.linked" and link["payload"]["git_commit"] == new_head
    assert link["payload"]["artifacts"] == [SCH] and link["actor"] == "user:Tester"
    assert mf("status", "--commit", "HEAD", "--json", cwd=board).json["git_commit"] == new_head
    # the board lags (graph newer) but is not staged: a commit of other files is not blocked
    assert mf("drift", PCB, cwd=board).code == 1
    (board / "notes.md").write_text("notes\n")
    git("add", "notes.md", ".metaforge", cwd=board)
    assert commit(board, "notes").returncode == 0
    (board / PCB).write_text((board / PCB).read_text() + "\n")
    git("add", PCB, cwd=board)
    p = commit(board, "board touched")
    assert p.returncode != 0 and "graph newer than file" in p.stdout + p.stderr


def test_a_commit_is_blocked_by_a_violated_constraint(board, mf):
    r = mf("mutate", "add", "Constraint:no-farad-caps", "severity=error",
           'expression=count(DesignElement where value == "1F") == 0', "--json", cwd=board)
    if r.json.get("proposal"):
        assert mf("approve", r.json["proposal"].split(":")[1], cwd=board).code == 0
    git("add", "-A", cwd=board)
    git("commit", "-qm", "constraint", "--no-verify", cwd=board)
    assert mf("hooks", "install", cwd=board).code == 0
    set_value(board / SCH, "C1", "1F")
    r = mf("drift", "resolve", SCH, "--accept-file", cwd=board)  # a person's edit lands, loudly
    assert r.code == 0 and "no-farad-caps" in r.err
    git("add", "-A", cwd=board)
    p = commit(board, "a one-farad cap")
    assert p.returncode != 0 and "no-farad-caps" in p.stderr and "commit blocked" in p.stderr


def test_mf_project_commits_with_the_hooks_installed(board, mf):
    assert mf("hooks", "install", cwd=board).code == 0
    assert mf("mutate", "set", "DesignElement:pic_programmer/C1", "value=47uF", cwd=board).code == 0
    git("add", "-A", cwd=board)
    git("commit", "-qm", "twin", cwd=board)  # only events: nothing for the hooks to check or link
    assert read_log(board)[-1]["type"] == "property.set"
    r = mf("project", "--json", cwd=board)
    assert r.code == 0, r.err
    links = [e for e in read_log(board) if e["type"] == "state.linked"]
    assert len(links) == 1 and links[0]["payload"]["git_commit"] == r.json["commit"]  # project's own, once
    assert mf("drift", cwd=board).code == 0
