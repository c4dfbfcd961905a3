"""Reading a file of changes for `mf mutate apply` (YAML or JSON), keeping where each came from.

    - add: BOMItem:C42
      props: {value: 10uF, capacitance: 10uF, voltage: 16V}
      msg: why this part
    - set: BOMItem:C42
      props: {capacitance: 22uF}
      expect_version: 1
    - unset: BOMItem:C42
      keys: [notes]
    - link: [DesignElement:MCU, USES_COMPONENT, BOMItem:C42]
    - unlink: [DesignElement:MCU, USES_COMPONENT, BOMItem:C42]
    - remove: BOMItem:C42

The file may also be a mapping with `changes:` (that list) and `message:` (the rationale of all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metaforge.batch import no_gc
from metaforge.errors import BadInput
from metaforge.limits import MAX_DEPTH, check_file_size, check_message
from metaforge.thread.commands import OPS, Change

_KEYS = frozenset({"props", "properties", "keys", "expect_version", "msg", "message"})
_OPS = frozenset(OPS)
_BY_ID = frozenset({"add", "set"})


def read_changes(path: Path, display: str | None = None) -> tuple[list[Change], str | None]:
    with no_gc():
        return _read_changes(path, display or str(path))


def _read_changes(path: Path, name: str) -> tuple[list[Change], str | None]:
    try:
        check_file_size(name, path.stat().st_size)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{name}: cannot read: {exc}") from None
    try:
        if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{") and path.suffix.lower() not in (".yaml", ".yml"):
            data, lines = _load_json(text, name), None
        else:
            data, lines = _load_yaml(text, name)
    except RecursionError:
        raise BadInput(f"{name}: nested too deep (a property value may nest {MAX_DEPTH} levels: MAX_DEPTH)") from None
    return changes_from_data(data, name, lines)


def changes_from_data(data: Any, name: str, lines=None) -> tuple[list[Change], str | None]:
    """Changes from already-parsed data (a list, or {changes, message}), e.g. a request body;
    `name` prefixes errors ("request: change #2: ...")."""
    message = None
    if isinstance(data, dict):
        unknown = set(data) - {"changes", "message"}
        if unknown:
            raise BadInput(f"{name}: unknown top-level key '{sorted(unknown)[0]}' (expected changes, message)")
        message, data = data.get("message"), data.get("changes")
        if message is not None and not isinstance(message, str):
            raise BadInput(f"{name}: message must be a string")
        check_message(message, f"{name}: message")
        lines = lines[1] if lines else None
    elif lines:
        lines = lines[0]
    if not isinstance(data, list):
        raise BadInput(f"{name}: expected a list of changes")
    changes = [change_from_dict(item, f"{name}:{lines[i]}" if lines else f"{name}: change #{i + 1}")
               for i, item in enumerate(data)]
    return changes, message


def _load_json(text: str, name: str) -> Any:
    import orjson

    try:
        return orjson.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{name}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None


def _load_yaml(text: str, name: str):
    """The data, and the line of each change (for a list, or a mapping's `changes:` list)."""
    import yaml

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise BadInput(f"{where}: malformed YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{name}: malformed YAML: {exc}") from None
    finally:
        loader.dispose()
    items = None
    if isinstance(node, yaml.SequenceNode):
        items = [n.start_mark.line + 1 for n in node.value]
        return data, (items, None)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "changes" and isinstance(value, yaml.SequenceNode):
                items = [n.start_mark.line + 1 for n in value.value]
        return data, (None, items)
    return data, None


def change_from_dict(item: Any, where: str) -> Change:
    """One change as a mapping (a file's item, a stored proposal's); `where` starts each error."""
    if type(item) is dict and len(item) == 2 and type(item.get("props")) is dict:
        # the shape a generated file repeats 100,000 times: {add|set: ID, props: {...}}
        op = next(k for k in item if k != "props")
        if op in _BY_ID and type(item[op]) is str:
            return Change(op, item[op], props=item["props"], where=where)
    if not isinstance(item, dict):
        raise BadInput(f"{where}: a change is a mapping like {{set: BOMItem:C42, props: {{...}}}}")
    op = None
    for key in item:  # one pass over a few keys: set algebra per change costs a second per 100,000
        if key in _OPS:
            if op is not None:
                raise BadInput(f"{where}: a change names exactly one of {', '.join(OPS)}")
            op = key
        elif key not in _KEYS:
            unknown = key
            ops = _OPS & item.keys()
            if len(ops) == 1:
                raise BadInput(f"{where}: unknown key '{unknown}' (allowed: {next(iter(ops))}, {', '.join(sorted(_KEYS))})")
    if op is None:
        raise BadInput(f"{where}: a change names exactly one of {', '.join(OPS)}")
    target = item[op]
    props = item.get("props", item.get("properties")) or {}
    if not isinstance(props, dict):
        raise BadInput(f"{where}: props must be a mapping of property: value")
    expect = item.get("expect_version")
    if expect is not None and (not isinstance(expect, int) or isinstance(expect, bool)):
        raise BadInput(f"{where}: expect_version must be an integer")
    msg = item.get("msg", item.get("message"))
    if msg is not None:
        if not isinstance(msg, str):
            raise BadInput(f"{where}: msg must be a string")
        check_message(msg, f"{where}: msg")
    if op in ("link", "unlink"):
        if not (isinstance(target, list) and len(target) == 3 and all(isinstance(t, str) for t in target)):
            raise BadInput(f"{where}: {op} takes [SOURCE, RELATION, TARGET]")
        return Change(op, target[0], rel=target[1], dst=target[2], expect_version=expect, msg=msg, where=where)
    if not isinstance(target, str):
        raise BadInput(f"{where}: {op} takes an entity id like BOMItem:C42")
    keys = item.get("keys") or []
    if op == "unset" and (not isinstance(keys, list) or not keys):
        raise BadInput(f"{where}: unset takes keys: [name, ...]")
    return Change(op, target, props=props, keys=list(keys), expect_version=expect, msg=msg, where=where)
