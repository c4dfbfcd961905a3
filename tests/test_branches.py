"""Branches and reviews, with real git: semantic diff between commits, and merges, rebases and
cherry-picks of twin state through the merge driver that `mf init` registers."""

import re
import subprocess

import pytest

from conftest import read_log


def git(path, *args, check=True):
    p = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {p.stdout}{p.stderr}")
    return p


@pytest.fixture
def forked(twin, mf, monkeypatch):
    """The drone twin committed on master, with a branch `feat` made from it."""
    git(twin, "add", "-A")
    git(twin, "commit", "-qm", "twin")
    git(twin, "branch", "feat")
    return twin


def on(path, branch, mf, actor, *mutations):
    git(path, "checkout", "-q", branch)
    for args in mutations:
        r = mf("mutate", *args, "--actor", actor, cwd=path)
        assert r.code == 0, r.err
    git(path, "commit", "-qam", f"{branch}: {len(mutations)} change(s)")


# ---- mf diff ---------------------------------------------------------------------------------

def test_diff_names_every_kind_of_change_with_units_margins_and_authors(forked, mf):
    on(forked, "feat", mf, "user:alice",
       ("set", "BOMItem:U1", "current=150mA", "-m", "measured at 168 MHz"),
       ("add", "BOMItem:U7", "rail=3V3", "current=10mA", "mpn=TCAN1042"),
       ("link", "DesignElement:schematic", "USES_COMPONENT", "BOMItem:U7"),
       ("unlink", "DesignElement:schematic", "USES_COMPONENT", "BOMItem:C7"),
       ("remove", "Requirement:REQ-004"))
    r = mf("diff", "master..feat", "--json", cwd=forked)
    assert r.code == 1
    d = r.json
    changed = {e["id"]: e["properties"] for e in d["entities"]["changed"]}
    assert changed["BOMItem:U1"]["current"] == {"before": {"value": 90, "unit": "mA"}, "after": {"value": 150, "unit": "mA"}}
    assert [e["id"] for e in d["entities"]["added"]] == ["BOMItem:U7"]
    assert [e["id"] for e in d["entities"]["removed"]] == ["Requirement:REQ-004"]
    assert ["DesignElement:schematic", "USES_COMPONENT", "BOMItem:U7"] in d["edges"]["added"]
    assert ["DesignElement:schematic", "USES_COMPONENT", "BOMItem:C7"] in d["edges"]["removed"]
    budget = next(c for c in d["constraints"] if c["constraint"] == "Constraint:power-budget-3v3")
    assert budget["before"]["margin"] == pytest.approx(0.7571, abs=1e-4)
    assert budget["after"]["message"] == "power-budget-3v3: 186.6 mA <= 480 mA"
    assert budget["after"]["margin"] == pytest.approx(0.6113, abs=1e-4)
    first = d["events"]["added"][0]
    assert (first["actor"], first["msg"], first["type"]) == ("user:alice", "measured at 168 MHz", "property.set")
    text = mf("diff", "master", "feat", cwd=forked).out
    assert "BOMItem:U1.current: 90mA → 150mA" in text and "margin 76 % → " not in text
    assert "power-budget-3v3: pass (116.6 mA <= 480 mA, margin 76 %) → pass (186.6 mA <= 480 mA, margin 61 %)" in text


def test_diff_as_markdown_for_a_pull_request(forked, mf):
    on(forked, "feat", mf, "user:alice", ("set", "BOMItem:U1", "current=150mA", "-m", "measured"))
    md = mf("diff", "master...feat", "--format", "markdown", cwd=forked).out
    assert md.startswith("### Twin changes: `merge-base(master, feat)` → `feat`")
    assert "| BOMItem:U1 | current | 90mA | 150mA |" in md
    assert "| power-budget-3v3 | ✅ 116.6 mA <= 480 mA (margin 76 %) | ✅ 176.6 mA <= 480 mA (margin 63 %) |" in md
    after = int(re.search(r"semantic version \d+ → (\d+)\)", md.splitlines()[0]).group(1))
    assert f"- `#{after}` property.set `BOMItem:U1` v2 by user:alice — measured" in md  # the one event of the branch


def test_diff_exit_codes_and_revisions(forked, mf):
    assert mf("diff", cwd=forked).code == 0            # nothing since the merge base
    assert mf("diff", "HEAD", cwd=forked).code == 0
    mf("mutate", "set", "BOMItem:U2", "current=1mA", cwd=forked)
    r = mf("diff", "--json", cwd=forked)                # merge base with master vs the working tree
    assert r.code == 1 and r.json["b"]["label"] == "working tree"
    assert [e["id"] for e in r.json["entities"]["changed"]] == ["BOMItem:U2"]
    r = mf("diff", "nope..HEAD", cwd=forked)
    assert r.code == 2 and "unknown revision 'nope'" in r.err


# ---- merges through git ------------------------------------------------------------------------

def test_init_registers_the_merge_driver(forked):
    assert ".metaforge/events/*.jsonl merge=mf-events" in (forked / ".gitattributes").read_text()
    assert "merge-driver" in git(forked, "config", "merge.mf-events.driver").stdout


def test_a_clean_merge_of_independent_changes(forked, mf):
    on(forked, "feat", mf, "user:alice", ("set", "BOMItem:U1", "current=100mA", "-m", "alice"),
       ("add", "BOMItem:X1", "rail=5V", "current=5mA"))
    on(forked, "master", mf, "user:bob", ("set", "BOMItem:C1", "capacitance=22uF", "-m", "bob"))
    r = git(forked, "merge", "feat", "-m", "merge feat", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    events = read_log(forked)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    tail = events[-3:]
    assert [(e["actor"], e["entity"]) for e in tail] == [("user:bob", "BOMItem:C1"), ("user:alice", "BOMItem:U1"),
                                                         ("user:alice", "BOMItem:X1")]
    assert tail[1]["msg"] == "alice"
    assert mf("verify", cwd=forked).code == 0
    assert mf("show", "BOMItem:U1", "--json", cwd=forked).json["properties"]["current"]["value"] == 100
    assert mf("show", "BOMItem:C1", "--json", cwd=forked).json["properties"]["capacitance"]["value"] == 22


def test_the_same_change_on_both_sides_is_a_duplicate(forked, mf):
    on(forked, "feat", mf, "user:alice", ("set", "BOMItem:U1", "current=100mA"), ("set", "BOMItem:U2", "current=2mA"))
    on(forked, "master", mf, "user:bob", ("set", "BOMItem:U1", "current=100mA"))
    before = len(read_log(forked))
    assert git(forked, "merge", "feat", "-m", "m", check=False).returncode == 0
    events = read_log(forked)
    assert len(events) == before + 1  # U1's identical change dropped, U2's replayed
    assert mf("verify", cwd=forked).code == 0


def test_a_cherry_picked_commit_merged_later_is_not_doubled(forked, mf):
    on(forked, "feat", mf, "user:alice", ("set", "BOMItem:U1", "current=100mA"))
    pick = git(forked, "rev-parse", "HEAD").stdout.strip()
    on(forked, "master", mf, "user:bob", ("set", "BOMItem:C1", "capacitance=22uF"))
    assert git(forked, "cherry-pick", pick, check=False).returncode == 0
    assert mf("show", "BOMItem:U1", "--json", cwd=forked).json["properties"]["current"]["value"] == 100
    n = len(read_log(forked))
    assert git(forked, "merge", "feat", "-m", "m", check=False).returncode == 0
    assert len(read_log(forked)) == n  # the picked event is the same event: dropped by id
    assert mf("verify", cwd=forked).code == 0


def _conflicted_merge(forked, mf):
    on(forked, "feat", mf, "user:alice", ("set", "BOMItem:U1", "current=110mA", "-m", "alice's value"),
       ("set", "BOMItem:U2", "current=1mA"))
    on(forked, "master", mf, "user:bob", ("set", "BOMItem:U1", "current=95mA", "-m", "bob's value"))
    r = git(forked, "merge", "feat", "-m", "m", check=False)
    assert r.returncode != 0
    assert "BOMItem:U1.current was set to 95mA on one side and 110mA on the other" in r.stderr


def test_a_property_conflict_stops_the_merge_and_continue_keeps_ours(forked, mf):
    _conflicted_merge(forked, mf)
    r = mf("merge", "--json", cwd=forked)
    assert r.code == 1 and r.json["conflicts"][0]["kind"] == "property"
    # the log in the stopped merge is valid: the held event is out, the rest is in
    assert mf("verify", cwd=forked).code == 0
    assert mf("show", "BOMItem:U2", "--json", cwd=forked).json["properties"]["current"]["value"] == 1
    r = mf("merge", "--continue", "--json", cwd=forked)
    assert r.code == 0 and r.json["git"] == "merge" and len(r.json["dropped"]) == 1
    assert git(forked, "status", "--porcelain").stdout.strip() == ""
    assert "m" in git(forked, "log", "-1", "--format=%s").stdout
    assert mf("show", "BOMItem:U1", "--json", cwd=forked).json["properties"]["current"]["value"] == 95
    assert read_log(forked)[-1]["type"] == "merge.resolved"
    assert mf("verify", cwd=forked).code == 0


def test_continue_taking_theirs(forked, mf):
    _conflicted_merge(forked, mf)
    r = mf("merge", "--continue", "--take", "theirs", "--actor", "user:lead", cwd=forked)
    assert r.code == 0, r.err
    assert mf("show", "BOMItem:U1", "--json", cwd=forked).json["properties"]["current"]["value"] == 110
    assert mf("verify", cwd=forked).code == 0


def test_abort_gives_the_merge_up(forked, mf):
    _conflicted_merge(forked, mf)
    before_head = git(forked, "rev-parse", "HEAD").stdout
    assert mf("merge", "--abort", cwd=forked).code == 0
    assert git(forked, "rev-parse", "HEAD").stdout == before_head
    assert not (forked / ".git" / "MERGE_HEAD").exists()
    assert mf("show", "BOMItem:U1", "--json", cwd=forked).json["properties"]["current"]["value"] == 95
    assert mf("show", "BOMItem:U2", "--json", cwd=forked).json["properties"]["current"]["value"] == 0.88
    assert mf("verify", cwd=forked).code == 0


def test_removed_on_one_side_changed_on_the_other(forked, mf):
    on(forked, "feat", mf, "user:alice", ("set", "BOMItem:RX1", "current=120mA"))
    on(forked, "master", mf, "user:bob", ("remove", "BOMItem:RX1"))
    r = git(forked, "merge", "feat", "-m", "m", check=False)
    assert r.returncode != 0 and "BOMItem:RX1 was removed on one side and changed on the other" in r.stderr
    assert mf("merge", "--continue", cwd=forked).code == 0
    assert mf("show", "BOMItem:RX1", cwd=forked).code == 2
    assert mf("verify", cwd=forked).code == 0


def test_a_replayed_change_that_breaks_a_constraint_is_a_conflict(forked, mf):
    # each side alone keeps the LDO junction under 115 °C; both together do not
    on(forked, "feat", mf, "user:alice", ("set", "BOMItem:U6", "current=75mA"))
    on(forked, "master", mf, "user:bob", ("set", "BOMItem:U2", "current=60mA"))
    r = git(forked, "merge", "feat", "-m", "m", check=False)
    assert r.returncode != 0 and "(constraint)" in r.stderr and "thermal-ldo" in r.stderr
    assert mf("merge", "--continue", cwd=forked).code == 0
    assert mf("check", cwd=forked).code == 0
    assert mf("verify", cwd=forked).code == 0


def test_preview_says_what_a_merge_would_do_and_changes_nothing(forked, mf):
    _conflicted_merge(forked, mf)
    mf("merge", "--abort", cwd=forked)
    before = (forked / ".metaforge/events/000001.jsonl").read_bytes()
    r = mf("merge", "--preview", "feat", "--json", cwd=forked)
    assert r.code == 1 and r.json["kept"] == 1 and r.json["replayed"] == 1 and len(r.json["conflicts"]) == 1
    assert (forked / ".metaforge/events/000001.jsonl").read_bytes() == before


def test_a_rebase_replays_the_branch_through_the_driver(forked, mf):
    on(forked, "feat", mf, "user:alice", ("set", "BOMItem:U1", "current=100mA"))
    on(forked, "feat", mf, "user:alice", ("add", "BOMItem:X1", "rail=5V", "current=5mA"))
    on(forked, "master", mf, "user:bob", ("set", "BOMItem:C1", "capacitance=22uF"))
    git(forked, "checkout", "-q", "feat")
    r = git(forked, "rebase", "master", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    events = read_log(forked)
    assert [e["entity"] for e in events[-3:]] == ["BOMItem:C1", "BOMItem:U1", "BOMItem:X1"]
    assert mf("verify", cwd=forked).code == 0
    assert git(forked, "rev-list", "--count", "master..feat").stdout.strip() == "2"


def test_a_fresh_clone_registers_the_driver_with_hooks_install(forked, mf, tmp_path):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(forked), str(clone))
    assert git(clone, "config", "merge.mf-events.driver", check=False).returncode != 0
    assert mf("hooks", "install", cwd=clone).code == 0
    assert "merge-driver" in git(clone, "config", "merge.mf-events.driver").stdout


CONFLICTS = {
    "property": ([("set", "BOMItem:U1", "current=110mA")], [("set", "BOMItem:U1", "current=95mA")],
                 "BOMItem:U1.current was set to 95mA on one side and 110mA on the other"),
    "changed-vs-removed": ([("set", "BOMItem:RX1", "current=120mA")], [("remove", "BOMItem:RX1")],
                           "BOMItem:RX1 was removed on one side and changed on the other"),
    "removed-vs-changed": ([("remove", "BOMItem:RX1")], [("set", "BOMItem:RX1", "current=120mA")],
                           "BOMItem:RX1 was changed on one side and removed on the other"),
    "linked-vs-removed": ([("link", "DesignElement:power", "USES_COMPONENT", "BOMItem:RX1")], [("remove", "BOMItem:RX1")],
                          "BOMItem:RX1 was removed on one side and linked on the other"),
    "created-twice": ([("add", "BOMItem:X9", "current=1mA")], [("add", "BOMItem:X9", "current=2mA")],
                      "BOMItem:X9 was created on both sides with different properties"),
    "constraint": ([("set", "BOMItem:U6", "current=75mA")], [("set", "BOMItem:U2", "current=60mA")], "thermal-ldo"),
}


@pytest.mark.parametrize("finish", ["continue", "abort"])
@pytest.mark.parametrize("kind", sorted(CONFLICTS))
def test_each_kind_of_conflict_stops_and_finishes(forked, mf, kind, finish):
    theirs, ours, message = CONFLICTS[kind]
    on(forked, "feat", mf, "user:alice", *theirs)
    on(forked, "master", mf, "user:bob", *ours)
    head = git(forked, "rev-parse", "HEAD").stdout
    ours_log = (forked / ".metaforge/events/000001.jsonl").read_bytes()
    r = git(forked, "merge", "feat", "-m", "m", check=False)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert mf("verify", cwd=forked).code == 0  # the stopped merge's log is valid
    r = mf("merge", f"--{finish}", cwd=forked)
    assert r.code == 0, r.err
    if finish == "abort":
        assert git(forked, "rev-parse", "HEAD").stdout == head
        assert (forked / ".metaforge/events/000001.jsonl").read_bytes() == ours_log
    else:
        assert git(forked, "rev-parse", "HEAD^2", check=False).returncode == 0  # a merge commit
        assert read_log(forked)[-1]["type"] == "merge.resolved"
    assert git(forked, "status", "--porcelain").stdout.strip() == ""
    assert mf("verify", cwd=forked).code == 0
    assert mf("check", cwd=forked).code == 0


def test_a_rebase_that_stops_on_a_conflict_is_continued_by_mf(forked, mf):
    on(forked, "feat", mf, "user:alice", ("set", "BOMItem:U1", "current=110mA"))
    on(forked, "feat", mf, "user:alice", ("set", "BOMItem:U2", "current=1mA"))
    on(forked, "master", mf, "user:bob", ("set", "BOMItem:U1", "current=95mA"))
    git(forked, "checkout", "-q", "feat")
    r = git(forked, "rebase", "master", check=False)
    assert r.returncode != 0 and "BOMItem:U1.current was set to" in r.stdout + r.stderr
    r = mf("merge", "--continue", "--json", cwd=forked)
    assert r.code == 0, r.err
    assert r.json["git"] == "rebase"
    assert not (forked / ".git" / "rebase-merge").exists()
    assert mf("show", "BOMItem:U2", "--json", cwd=forked).json["properties"]["current"]["value"] == 1
    assert mf("show", "BOMItem:U1", "--json", cwd=forked).json["properties"]["current"]["value"] == 95
    assert mf("verify", cwd=forked).code == 0


def test_proposals_made_on_both_branches_keep_distinct_names(forked, mf):
    cfg = forked / ".metaforge/config.toml"
    assert "approval.rules" in cfg.read_text()
    git(forked, "checkout", "-q", "feat")
    assert mf("mutate", "set", "Constraint:power-budget-5v", "severity=warning", cwd=forked).code == 0
    git(forked, "commit", "-qam", "feat proposal")
    git(forked, "checkout", "-q", "master")
    assert mf("mutate", "set", "Constraint:esc-current", "severity=warning", cwd=forked).code == 0
    git(forked, "commit", "-qam", "master proposal")
    assert git(forked, "merge", "feat", "-m", "m", check=False).returncode == 0
    pending = mf("proposals", "--json", cwd=forked).json
    assert len(pending) == 2 and len({p["id"] for p in pending}) == 2
    for p in pending:
        assert mf("approve", p["id"], cwd=forked).code == 0
    assert mf("verify", cwd=forked).code == 0
