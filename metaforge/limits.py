"""What `mf` accepts from outside, in one place: sizes, nesting, characters, numbers.

Every refusal is a BadInput (exit 2) that names the limit it hit. The same constants serve the
command line, `mf mutate apply` files, and anything else that writes (`mf serve` request bodies):
one event is one line of a log everyone reviews in git, so nothing in it may be megabytes long,
nested past reason, not a finite number, or carry terminal control codes into someone's shell.

At the bottom of the layers (it imports only errors), so every layer may use it.
"""

from __future__ import annotations

import math
import re

from metaforge.errors import BadInput

MAX_ID_CHARS = 256                 # an entity id, `Type:name` (KiCad refs and MPNs are far shorter)
MAX_ACTOR_CHARS = 128              # `user:<name>` / `agent:<code>`
MAX_MESSAGE_CHARS = 16 * 1024      # a change's rationale (-m, msg:, message:)
MAX_VALUE_BYTES = 64 * 1024        # one property value, as JSON (a long description, a lookup table)
MAX_DEPTH = 32                     # lists and mappings nested in one property value
MAX_APPLY_FILE_BYTES = 256 << 20   # a `mf mutate apply` file (1,000,000 adds take ~100 MB of YAML)
MAX_REQUEST_BYTES = 8 << 20        # a request body of `mf serve` (the default of its --max-body)

# C0 and C1 control characters, and the Unicode marks that reorder text on screen (bidi overrides
# and isolates): refused in ids and actors, escaped wherever mf prints text it did not write.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_LAYOUT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def printable(text: str, keep_layout: bool = True) -> str:
    """Text mf did not write, safe to print: control characters become visible escapes (`\\x1b`),
    so a value cannot move the cursor, recolour the terminal or hide what follows. Newlines and
    tabs stay when `keep_layout`."""
    pattern = _CONTROL_BUT_LAYOUT if keep_layout else _CONTROL
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape_one, text)


def _escape_one(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def check_id(text: str) -> str:
    return _check_name("entity id", text, MAX_ID_CHARS, "MAX_ID_CHARS")


def check_actor_text(text: str) -> str:
    return _check_name("actor", text, MAX_ACTOR_CHARS, "MAX_ACTOR_CHARS")


def _check_name(what: str, text: str, limit: int, name: str) -> str:
    """An id or an actor: at most `limit` characters, no control character."""
    if len(text) > limit:
        raise BadInput(f"{what} is {len(text):,} characters long: the limit is {limit:,} ({name})")
    if has_control(text):
        raise BadInput(f"{what} '{printable(text, keep_layout=False)}' holds a control character",
                       "ids and actors are plain printable text")
    return text


def check_message(text: str | None, where: str = "message") -> None:
    if text is not None and len(text) > MAX_MESSAGE_CHARS:
        raise BadInput(f"{where} is {len(text):,} characters long: the limit is {MAX_MESSAGE_CHARS:,} "
                       "(MAX_MESSAGE_CHARS)", "put a long rationale in a file of the repository and refer to it")


def check_value(where: str, value) -> None:
    """One property value: finite numbers only, nested at most MAX_DEPTH, at most MAX_VALUE_BYTES."""
    if isinstance(value, str):
        if len(value) > MAX_VALUE_BYTES // 4 and len(value.encode()) > MAX_VALUE_BYTES:
            raise BadInput(f"{where}: the value is {len(value.encode()):,} bytes: the limit is {MAX_VALUE_BYTES:,} "
                           "(MAX_VALUE_BYTES)", "keep large data in a file of the repository and refer to it")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadInput(f"{where}: {value} is not a finite number", "numbers must be finite")
        return
    if isinstance(value, int):
        _check_int(where, value)
        return
    if isinstance(value, (list, dict)):
        size = _walk(where, value, 1)
        if size > MAX_VALUE_BYTES:
            raise BadInput(f"{where}: the value is about {size:,} bytes: the limit is {MAX_VALUE_BYTES:,} "
                           "(MAX_VALUE_BYTES)", "keep large data in a file of the repository and refer to it")


def _walk(where: str, value, depth: int) -> int:
    """Check nesting and numbers; return about how many bytes the value takes as JSON."""
    if depth > MAX_DEPTH:
        raise BadInput(f"{where}: nested deeper than {MAX_DEPTH} levels (MAX_DEPTH)")
    items = value.items() if isinstance(value, dict) else enumerate(value)
    size = 2
    for k, v in items:
        size += len(k) + 4 if isinstance(k, str) else 1
        if isinstance(v, (list, dict)):
            size += _walk(where, v, depth + 1)
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise BadInput(f"{where}: {v} is not a finite number", "numbers must be finite")
            size += 24
        elif isinstance(v, str):
            size += len(v) + 2
        elif isinstance(v, int):
            _check_int(where, v)
            size += 8
        else:
            size += 8
        if size > MAX_VALUE_BYTES:
            return size
    return size


def _check_int(where: str, value: int) -> None:
    if not -(1 << 63) <= value < (1 << 63):
        raise BadInput(f"{where}: {value} is outside the 64-bit integer range (MAX_INT)",
                       "write it as a number with a unit or exponent (1e30) if it is that large")


def refuse_constant(name: str):
    """For json.loads(parse_constant=...): NaN, Infinity and -Infinity are not values."""
    raise BadInput(f"{name} is not a finite number", "numbers must be finite")


def check_file_size(name: str, size: int, limit: int = MAX_APPLY_FILE_BYTES) -> None:
    if size > limit:
        raise BadInput(f"{name}: {size:,} bytes: the limit is {limit:,} (MAX_APPLY_FILE_BYTES)",
                       "split it into several files")
