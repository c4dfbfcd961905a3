"""`mf query --where` pushed down to SQL answers exactly as Python's reading of every row did.

The reference is the query as it was before the push-down: every live node in id order, each
condition judged by `Condition.matches` until one fails, stopping at the limit. Both must give
the same entities in the same order, or fail with the same error.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaforge.store.index import GraphIndex
from metaforge.store.log import Position
from metaforge.graph import GraphState, Node
from metaforge.thread.queries import Condition, _node_dict, query

UNITS = ["mA", "A", "uA", "degC", "kelvin", "percent", "", "V", "ohm", "kohm", "bogus-unit"]
STRINGS = ["abc", "ABC", "Abc def", "mA", "1.5", "10", "R1", "RC0402FR-0722KL", "true", "", "a\"b", "a\\b",
           "x\ny", "tab\there", "nul\x00end", "é", "ÉTÉ", "\u212a", "İstanbul", "ß", "日本", "[1]", "{'a': 1}",
           "z", "0", " spaced ", "user:tester"]
NUMBERS = [0, 1, -1, 7, 42, 500, 2**53 + 1, -(2**62), 0.1, 0.5, 1.2, 1.5, -3.25, 1e-12, 1e300, 999.9999999999,
           1000.0000000001]
TEXTS = ["", "abc", "ABC", "a", "b", "1", "1.5", "-3", "1e3", "500mA", "1.2A", "0.5", "5V", "20C", "300K", "50%",
         "true", "yes", "nan", "inf", "-inf", "1e999mA", "1_000", '"ab', '"', "\\", "é", "É", "k", "\u212a", "x y",
         "[1]", "{'a': 1}", "R1", "user:tester", "0x10", ".5", "+.5e1mA", "999.9999999999", "1000uA", "1mA",
         "0.001A", "2.5kohm", "300", "abc def", "mA", "i", "tab", "nul", "end", "there", "ny", "u0000", "日本", "1.2", "7", "bogus-unit", "1bogus-unit"]
KEYS = ["v", "w", "id", "name", "type", "version", "created_by"]
OPS = ["=", "!=", "<", "<=", ">", ">=", "~"]
LIMITS = [None, 0, 1, 2, 5, -1]


def values():
    quantity = st.builds(lambda v, u: {"value": v, "unit": u}, st.sampled_from(NUMBERS + ["x"]),
                         st.sampled_from(UNITS + [None]))
    scalar = st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS), st.booleans(), st.none())
    return st.one_of(scalar, quantity, st.lists(scalar, max_size=3), st.just({"a": 1}), st.just({"unit": "mA"}))


def build(path: Path, rows: list[tuple[str, dict, bool]]) -> GraphIndex:
    """An index holding exactly these nodes (id, properties, removed), written as a command would."""
    index = GraphIndex(path)
    state = GraphState()
    for n, (nid, props, deleted) in enumerate(rows):
        state.nodes[nid] = Node(nid, nid.split(":")[0], n % 4 + 1, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z",
                                "user:tester" if n % 3 else "agent:bot", "user:tester", n + 1, n + 1, props, deleted)
        state.dirty.add(nid)
    index.commit(state, [], Position())
    return index


def reference(index: GraphIndex, type_name, where, limit) -> list[dict]:
    """The query before the push-down: Python judges every live node, in id order."""
    conditions = [Condition.parse(w) for w in where]
    out = []
    for n in index.all_nodes():
        if type_name and n.type != type_name:
            continue
        node = _node_dict(n)
        if all(c.matches(node) for c in conditions):
            out.append(node)
            if limit and len(out) >= limit:
                break
    return out


def outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except Exception as exc:  # noqa: BLE001 — the error itself is what is compared
        return "error", type(exc).__name__, str(exc)


def agree(index, type_name, where, limit) -> None:
    expected = outcome(reference, index, type_name, where, limit)
    assert outcome(query, index, type_name, where, limit) == expected, (type_name, where, limit)


def _rows(rng: random.Random, n: int) -> list[tuple[str, dict, bool]]:
    pool = STRINGS + NUMBERS + [True, False, None, [1, "a"], ["R1", "R2"], {"a": 1}, {"unit": "mA"}] + \
        [{"value": v, "unit": u} for v in (0.5, 1, 1.2, 500, 999.9999999999, 1000, "x") for u in UNITS + [None]]
    rows = []
    for i in range(n):
        props = {k: rng.choice(pool) for k in ("v", "w", "name") if rng.random() < 0.8}
        rows.append((f"{rng.choice('AB')}:n{i:03d}", props, rng.random() < 0.1))
    return rows


@pytest.fixture(scope="module")
def table_index(tmp_path_factory):
    index = build(tmp_path_factory.mktemp("pushdown") / "index.db", _rows(random.Random(15), 250))
    yield index
    index.close()


@pytest.mark.parametrize("key", KEYS)
def test_every_single_condition_agrees(table_index, key):
    for op, text in itertools.product(OPS, TEXTS):
        agree(table_index, None, [f"{key}{op}{text}"], None)


def test_conditions_in_combination_with_types_and_limits_agree(table_index):
    rng = random.Random(42)
    for _ in range(1000):
        where = [f"{rng.choice(KEYS[:2] * 3 + KEYS)}{rng.choice(OPS)}{rng.choice(TEXTS)}"
                 for _ in range(rng.randint(1, 3))]
        agree(table_index, rng.choice([None, "A", "B"]), where, rng.choice(LIMITS))


def test_sql_rules_out_what_it_can_so_python_reads_only_the_rest(tmp_path):
    """The push-down is real: a row SQL rules out is never judged in Python."""
    rows = [(f"BOMItem:P{i:03d}", {"mpn": f"MPN-{i}", "current": {"value": i, "unit": ("mA", "A", "uA")[i % 3]}}, False)
            for i in range(300)]
    index = build(tmp_path / "index.db", rows)
    judged = []
    original = Condition.matches

    def spy(self, node):
        judged.append(node["id"])
        return original(self, node)

    Condition.matches = spy
    try:
        assert [n["id"] for n in query(index, None, ["mpn=MPN-42"])] == ["BOMItem:P042"]
        assert judged == ["BOMItem:P042"]
        judged.clear()
        found = [n["id"] for n in query(index, "BOMItem", ["current>=0.25A", "current<290mA"])]
    finally:
        Condition.matches = original
        index.close()
    assert found == [f"BOMItem:P{i:03d}" for i in range(250, 290) if i % 3 == 0]  # in mA; in A all too high
    assert list(dict.fromkeys(judged)) == found  # each row kept is judged on both conditions, no other


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from("AB"), st.dictionaries(st.sampled_from(["v", "w", "name"]), values()),
                               st.booleans()), max_size=12),
       where=st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(OPS), st.sampled_from(TEXTS)),
                      min_size=1, max_size=3),
       type_name=st.sampled_from([None, "A", "B"]), limit=st.sampled_from(LIMITS))
def test_generated_twins_and_conditions_agree(tmp_path_factory, rows, where, type_name, limit):
    path = tmp_path_factory.mktemp("gen") / "index.db"
    index = build(path, [(f"{t}:n{i:02d}", props, deleted) for i, (t, props, deleted) in enumerate(rows)])
    try:
        agree(index, type_name, [f"{k}{op}{text}" for k, op, text in where], limit)
    finally:
        index.close()
