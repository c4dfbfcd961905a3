import json

import pytest

from conftest import log_bytes, read_log

GOOD = """\
message: bring up the power stage
changes:
  - add: BOMItem:U4
    props: {mpn: AP2112K-3.3TRG1, max_current: 600mA, rail: 3V3}
  - add: DesignElement:LDO
    props: {kind: component}
  - link: [DesignElement:LDO, USES_COMPONENT, BOMItem:U4]
  - set: BOMItem:U4
    props: {max_current: 0.6A, quiescent_current: 55uA}
    msg: datasheet rev C
"""


def test_apply_lands_a_whole_file_with_its_messages(repo, mf):
    (repo / "changes.yaml").write_text(GOOD)
    r = mf("mutate", "apply", "changes.yaml", "--json", cwd=repo)
    assert r.code == 0, r.err
    assert r.json["appended"] == 4
    events = read_log(repo)
    assert [e["msg"] for e in events] == ["bring up the power stage"] * 3 + ["datasheet rev C"]
    assert mf("show", "BOMItem:U4", "--json", cwd=repo).json["version"] == 2


def test_apply_reads_json_too(repo, mf):
    changes = [{"add": "BOMItem:C1", "props": {"quantity": 2}}, {"set": "BOMItem:C1", "props": {"quantity": 3}}]
    (repo / "c.json").write_text(json.dumps(changes))
    assert mf("mutate", "apply", "c.json", cwd=repo).code == 0
    assert mf("show", "BOMItem:C1", "--json", cwd=repo).json["properties"]["quantity"] == 3


@pytest.mark.parametrize("name, text, message", [
    ("bad.yaml", "- add: BOMItem:C1\n  props: {quantity: 1\n", "bad.yaml:3:1: malformed YAML"),
    ("bad.json", '[{"add": "BOMItem:C1",}]', "bad.json:1:22: malformed JSON: trailing comma"),
    ("unknown.yaml", "- add: BOMItem:C1\n- set: BOMItem:C9\n  props: {quantity: 1}\n",
     "unknown.yaml:2: set BOMItem:C9: unknown entity BOMItem:C9"),
    ("rel.yaml", "- add: BOMItem:C1\n- add: DesignElement:D\n- link: [DesignElement:D, HOLDS, BOMItem:C1]\n",
     "rel.yaml:3: link DesignElement:D HOLDS BOMItem:C1: unknown relation 'HOLDS'"),
    ("dangling.yaml", "- add: DesignElement:D\n- link: [DesignElement:D, USES_COMPONENT, BOMItem:NOPE]\n",
     "dangling.yaml:2: link DesignElement:D USES_COMPONENT BOMItem:NOPE: link target BOMItem:NOPE does not exist"),
    ("prop.yaml", "- add: BOMItem:C1\n  props:\n    colour: red\n", "prop.yaml:1: add BOMItem:C1: BOMItem has no property 'colour'"),
    ("op.yaml", "- make: BOMItem:C1\n", "op.yaml:1: a change names exactly one of"),
    ("items.json", '[{"add": "BOMItem:C1"}, {"add": "BOMItem:C1"}]', "items.json: change #2: add BOMItem:C1: BOMItem:C1 already exists"),
    ("shape.yaml", "just: text\n", "unknown top-level key 'just'"),
])
def test_a_bad_file_is_refused_with_the_place_and_nothing_lands(repo, mf, name, text, message):
    mf("mutate", "add", "BOMItem:EXISTING", cwd=repo)
    before = log_bytes(repo)
    (repo / name).write_text(text)
    r = mf("mutate", "apply", name, cwd=repo)
    assert r.code in (1, 2), r.err
    assert message in r.err
    assert log_bytes(repo) == before
    assert mf("query", "--json", cwd=repo).json[0]["id"] == "BOMItem:EXISTING"
    assert len(mf("query", "--json", cwd=repo).json) == 1


def test_missing_file(repo, mf):
    r = mf("mutate", "apply", "nope.yaml", cwd=repo)
    assert r.code == 2 and "nope.yaml: no such file" in r.err


def test_changes_in_one_file_see_each_other(repo, mf):
    text = "\n".join(["- add: BOMItem:C1", "- remove: BOMItem:C1", "- add: BOMItem:C1",
                      "  props: {quantity: 7}"])
    (repo / "c.yaml").write_text(text)
    assert mf("mutate", "apply", "c.yaml", cwd=repo).code == 0
    node = mf("show", "BOMItem:C1", "--json", cwd=repo).json
    assert node["version"] == 3 and node["properties"] == {"quantity": 7}
