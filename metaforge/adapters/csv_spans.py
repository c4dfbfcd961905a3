"""CSV read as spans of the original text, so a writer can replace one cell and keep every
other byte (quoting, spacing, line endings, preamble lines) exactly as the file had it.

The standard `csv` module gives values, not where they came from; a projection that must
return identical bytes for unchanged rows needs the raw spans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

QUOTE = '"'


@dataclass(slots=True)
class Cell:
    start: int            # raw span in the text, quotes included
    end: int
    quoted: bool
    value: str            # unquoted, "" unescaped


@dataclass(slots=True)
class Record:
    start: int            # span of the record without its line terminator
    end: int
    newline: str          # "\r\n", "\n", "\r", or "" for a last line without one
    line: int             # 1-based line where the record starts
    cells: list[Cell]

    @property
    def blank(self) -> bool:
        return all(not c.value.strip() for c in self.cells)


class UnterminatedQuote(ValueError):
    def __init__(self, line: int):
        super().__init__(f"a quoted cell starting on line {line} is never closed")
        self.line = line


_QUOTED = re.compile(r' *"([^"]*(?:""[^"]*)*)"')
_OPENING = re.compile(r' *"')


@lru_cache(maxsize=8)
def _unquoted(delimiter: str) -> re.Pattern:
    return re.compile(f"[^{re.escape(delimiter)}\r\n]*")


def split_records(text: str, delimiter: str, limit: int | None = None) -> list[Record]:
    """The records of `text` (the first `limit` ones), with the spans of their cells; quoted
    cells may span lines."""
    unquoted = _unquoted(delimiter)
    records: list[Record] = []
    pos, line, n = 0, 1, len(text)
    while pos < n and (limit is None or len(records) < limit):
        start, cells = pos, []
        while True:
            cell, pos = _cell(text, pos, unquoted, line)
            cells.append(cell)
            if pos < n and text[pos] == delimiter:
                pos += 1
                continue
            break
        newline = "\r\n" if text.startswith("\r\n", pos) else text[pos] if pos < n else ""
        records.append(Record(start, pos, newline, line, cells))
        line += text.count("\n", start, pos + len(newline)) + (newline == "\r")
        pos += len(newline)
    return records


def _cell(text: str, pos: int, unquoted: re.Pattern, line: int) -> tuple[Cell, int]:
    m = _QUOTED.match(text, pos)
    if m:
        value = m.group(1).replace('""', '"')
        rest = unquoted.match(text, m.end())  # text after the closing quote, kept as csv does
        return Cell(pos, rest.end(), True, value + rest.group()), rest.end()
    if _OPENING.match(text, pos):
        raise UnterminatedQuote(line)
    m = unquoted.match(text, pos)
    return Cell(pos, m.end(), False, m.group()), m.end()


def needs_quotes(value: str, delimiter: str) -> bool:
    return (delimiter in value or QUOTE in value or "\n" in value or "\r" in value
            or value != value.strip())


def quote(value: str, delimiter: str, always: bool) -> str:
    """A cell's raw text: quoted when the file's style asks for it or the value needs it."""
    if always or needs_quotes(value, delimiter):
        return QUOTE + value.replace(QUOTE, QUOTE * 2) + QUOTE
    return value


# ---- bytes ↔ text, keeping the encoding and any byte-order mark --------------------------

_BOMS = ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def decode(data: bytes) -> tuple[str, str]:
    """The text and the encoding to write it back with (a BOM stays in the text as U+FEFF)."""
    for mark, encoding in _BOMS:
        if data.startswith(mark):
            return data.decode(encoding), encoding
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"
