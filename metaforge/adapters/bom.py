"""BOM CSV ↔ BOMItems: one row per item, its references, quantity, value, MPN, supplier...

Column names are matched the way KiCad's exporters and common BOM tools write them (KiCad's
symbol fields table and BOM scripts, KiBoM, JLCPCB, Altium, Octopart, Digi-Key, Mouser),
case and punctuation ignored. The file is read as spans (see `csv_spans`), so projection
rewrites only the cells whose value the graph changed and keeps every other byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metaforge.adapters.base import Adapter, AdapterError, Parsed, ParseResult, safe_name
from metaforge.adapters.csv_spans import Record, UnterminatedQuote, decode, quote, split_records

# prop → header names (normalized: lower case, only letters, digits and '#'), best first
COLUMNS: dict[str, tuple[str, ...]] = {
    "references": ("references", "reference", "refs", "ref", "designators", "designator", "refdes",
                   "referencedesignators", "referencedesignator", "refdesignators", "partreferences",
                   "partreference", "schematicreference", "schematicreferences"),
    "quantity": ("quantity", "qty", "qnty", "quantityperpcb", "qtyperpcb", "quantityperboard",
                 "qtyperboard", "qtyperunit", "count"),
    "value": ("value", "val", "comment"),
    "mpn": ("mpn", "manufacturerpartnumber", "manufacturerpn", "manufacturerpart#", "manufacturerpartno",
            "mfrpartnumber", "mfrpart#", "mfrpn", "mfr#", "mfrno", "mfgpartnumber", "mfgpart#", "mfgpn",
            "mfpn", "manfpartnumber", "partnumber"),
    "manufacturer": ("manufacturer", "manufacturername", "mfr", "mfrname", "mfg", "manf", "mf", "maker"),
    "supplier": ("supplier", "suppliername", "distributor", "distributorname", "vendor"),
    "supplier_pn": ("supplierpartnumber", "supplierpn", "supplierpart#", "supplierpartno", "spn",
                    "distributorpartnumber", "distributorpn", "vendorpartnumber", "vendorpn", "vendorpart#",
                    "lcscpart#", "lcscpartnumber", "lcscpart", "lcscpn", "lcsc", "lcsc#",
                    "jlcpcbpart#", "jlcpcbpartnumber", "jlcpart#",
                    "digikeypartnumber", "digikeypart#", "digikeypn", "digikey#", "digikey",
                    "mouserpartnumber", "mouserpart#", "mouserpn", "mouser#", "mouserno", "mouser",
                    "farnellpartnumber", "farnell", "newarkpartnumber", "newark", "tmepartnumber"),
    "footprint": ("footprint", "pcbfootprint", "footprintname", "footprintref"),
    "package": ("package", "case", "casepackage", "packagecase"),
    "description": ("description", "desc", "partdescription", "itemdescription"),
    "datasheet": ("datasheet", "datasheeturl"),
    "dnp": ("dnp", "donotplace", "donotpopulate", "dnf", "donotfit", "nopop"),
}
_TRUE = {"dnp", "dnf", "yes", "y", "true", "1", "x", "donotplace", "donotpopulate", "donotfit", "excluded", "nopop"}
_FALSE = {"", "no", "n", "false", "0", "-", "fitted", "populate", "place"}
_EMPTY = {"", "~"}  # KiCad writes "~" for an empty datasheet
_DELIMITERS = (",", ";", "\t", "|")
_HEADER_SEARCH = 40  # records looked at for the header line (KiCad scripts write a preamble)


def normalize_header(text: str) -> str:
    """ "LCSC Part #（optional）" → "lcscpart#", "Reference(s)" → "references", "Mfr. #" → "mfr#"."""
    text = re.sub(r"[(（][^)）]*[)）]\s*$", "", text.strip().lstrip("\ufeff"))
    return re.sub(r"[^a-z0-9#]", "", text.lower())


def _column_map(headers: list[str]) -> dict[str, int]:
    """prop → column index: the best alias present wins; Altium's "Manufacturer 1" counts."""
    names = [normalize_header(h) for h in headers]
    found: dict[str, int] = {}
    for prop, aliases in COLUMNS.items():
        for alias in aliases:
            hits = [i for i, n in enumerate(names) if n == alias or (n.endswith("1") and n[:-1] == alias)]
            hits = [i for i in hits if i not in found.values()]
            if hits:
                found[prop] = hits[0]
                break
    return found


@dataclass
class Table:
    """A BOM file as read: its text, dialect, header and the rows that are BOM items."""

    rel: str
    text: str
    encoding: str
    delimiter: str
    records: list[Record]
    header: int                              # index of the header record
    columns: dict[str, int]                  # prop → column
    rows: dict[int, Parsed] = field(default_factory=dict)   # record index → entity
    warnings: list[str] = field(default_factory=list)
    scope: str = ""                          # "<bom stem>/" when the folder holds other BOMs
    # entity id → (line, what is wrong): a row whose quantity is not its count of references
    inconsistent: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def header_names(self) -> list[str]:
        return [c.value.strip().lstrip("\ufeff") for c in self.records[self.header].cells]

    @property
    def newline(self) -> str:
        return self.records[self.header].newline or "\n"

    @property
    def quote_all(self) -> bool:
        cells = [c for r in self.records[self.header:] for c in r.cells if not r.blank]
        return bool(cells) and sum(c.quoted for c in cells) * 2 > len(cells)


def read_table(data: bytes, rel: str, scope: str = "") -> Table:
    text, encoding = decode(data)
    best: tuple[int, int, str] | None = None
    first_error: UnterminatedQuote | None = None
    for delimiter in _DELIMITERS:  # the header decides the delimiter: only the first lines are split
        try:
            records = split_records(text, delimiter, limit=_HEADER_SEARCH)
        except UnterminatedQuote as exc:
            first_error = first_error or exc
            continue
        for i, rec in enumerate(records):
            cols = _column_map([c.value for c in rec.cells])
            if "references" in cols and len(cols) >= 2:
                if best is None or (i, -len(cols)) < (best[0], -best[1]):
                    best = (i, len(cols), delimiter)
                break
    if best is None:
        if first_error is not None:
            raise AdapterError(rel, str(first_error), line=first_error.line)
        raise AdapterError(rel, "no reference column in the first lines (looked for Reference, Ref, Designator, "
                                "References...) beside a Value, Qty or MPN column", line=1,
                           hint="a BOM CSV needs a header line naming its columns")
    index, _, delimiter = best
    try:
        records = split_records(text, delimiter)
    except UnterminatedQuote as exc:
        raise AdapterError(rel, str(exc), line=exc.line) from None
    table = Table(rel, text, encoding, delimiter, records, index, _column_map([c.value for c in records[index].cells]),
                  scope=scope)
    _read_rows(table)
    return table


def _read_rows(table: Table) -> None:
    seen: dict[str, int] = {}
    after_blank = False
    for i in range(table.header + 1, len(table.records)):
        rec = table.records[i]
        if rec.blank:
            after_blank = True
            continue
        props = _row_props(table, rec)
        refs = props.get("references") or []
        if not refs:
            if not after_blank:  # rows after a blank line are a summary (KiBoM writes one)
                table.warnings.append(f"{table.rel}:{rec.line}: a row without references, not read")
            continue
        for ref in refs:
            if ref in seen:
                raise AdapterError(table.rel, f"reference {ref} is also on line {seen[ref]}", line=rec.line)
            seen[ref] = rec.line
        parsed = Parsed(id=f"BOMItem:{table.scope}{safe_name(refs[0])}", props=props, region=f"row:{refs[0]}",
                        line=rec.line)
        wrong = _quantity_mismatch(table, props)
        if wrong:
            table.inconsistent[parsed.id] = (rec.line, wrong)
        table.rows[i] = parsed
    if not table.rows:
        raise AdapterError(table.rel, "no rows with references under the header", line=table.records[table.header].line)


def _row_props(table: Table, rec: Record) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for prop, col in table.columns.items():
        raw = rec.cells[col].value if col < len(rec.cells) else ""
        try:
            value = cell_value(prop, raw)
        except ValueError as exc:
            raise AdapterError(table.rel, f"column '{table.header_names[col]}': {exc}", line=rec.line) from None
        if value is not None:
            props[prop] = value
    return props


def _quantity_mismatch(table: Table, props: dict) -> str | None:
    """What is wrong with a row whose quantity is not its count of references, else None. Such a
    row is read (drift names it as an item), but never taken into the graph nor written."""
    qty, refs = props.get("quantity"), props["references"]
    if quantity_agrees(qty, refs, props.get("dnp")):
        return None
    name = table.header_names[table.columns["quantity"]]
    return f"column '{name}': quantity {qty} but {len(refs)} references ({', '.join(refs[:6])}{'...' if len(refs) > 6 else ''})"


def quantity_agrees(qty, refs, dnp=False) -> bool:
    """A BOM row's quantity follows from its references (a DNP row may say 0)."""
    return qty is None or refs is None or qty == len(refs) or (qty == 0 and bool(dnp))


# ---- cell values ---------------------------------------------------------------------------

_RANGE = re.compile(r"^([A-Za-z_#]*[A-Za-z_#])(\d+)-(?:\1)?(\d+)$")
_MAX_RANGE = 10_000  # "R1-R999999999" is a typo, not a billion resistors


def parse_references(text: str) -> list[str]:
    """"C1, C2, C5-C7" or "C1 C2" → ["C1", "C2", "C5", "C6", "C7"]."""
    refs: list[str] = []
    for token in re.split(r"[,;\s]+", text.strip()):
        if not token:
            continue
        m = _RANGE.match(token)
        if m and 0 < int(m.group(3)) - int(m.group(2)) <= _MAX_RANGE:
            refs.extend(f"{m.group(1)}{n}" for n in range(int(m.group(2)), int(m.group(3)) + 1))
        else:
            refs.append(token)
    return refs


def cell_value(prop: str, raw: str) -> Any:
    """What a cell says for a prop (None: nothing); ValueError names what is wrong."""
    text = raw.strip()
    if prop == "references":
        return parse_references(text) or None
    if prop == "quantity":
        if not text:
            return None
        if re.fullmatch(r"\d+(\.0*)?", text):
            return int(float(text))
        raise ValueError(f"quantity '{text}' is not a whole number")
    if prop == "dnp":
        key = normalize_header(text)
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
        raise ValueError(f"'{text}' is not a DNP mark (DNP, yes, x, or empty)")
    return None if text in _EMPTY else text


# ---- writing cells in the file's own style -----------------------------------------------------

def format_references(refs: list[str], like: str) -> str:
    """References written the way `like` (a cell of the file) writes them: its separator, its
    ranges (C5-C7), its trailing ", " (KiCad's grouped-by-value script leaves one)."""
    sep = ", " if ", " in like else "," if "," in like else ";" if ";" in like else " "
    use_ranges = any(_RANGE.match(t) for t in re.split(r"[,;\s]+", like) if t)
    text = sep.join(_ranges(refs) if use_ranges else refs)
    body = like.rstrip(" ,;")
    trailing = like[len(body):] if like.strip() and like.rstrip()[-1] in ",;" else ""
    return text + trailing


def _ranges(refs: list[str]) -> list[str]:
    """Runs of three or more consecutive numbers become C5-C7, as KiCad writes them."""
    out: list[str] = []
    i = 0
    while i < len(refs):
        j = i
        m = re.fullmatch(r"([A-Za-z_#]*[A-Za-z_#])(\d+)", refs[i])
        if m:
            while j + 1 < len(refs) and refs[j + 1] == f"{m.group(1)}{int(m.group(2)) + (j + 1 - i)}":
                j += 1
        if j - i >= 2:
            out.append(f"{refs[i]}-{refs[j]}")
            i = j + 1
        else:
            out.append(refs[i])
            i += 1
    return out


def format_value(prop: str, value: Any, like: str, table: Table) -> str:
    if value is None:
        return ""
    if prop == "references":
        if not re.search(r"[,;\s]", like.strip()):  # one reference shows no style: take the file's
            like = _sample_references(table)
        return format_references(list(value), like)
    if prop == "dnp":
        return _dnp_mark(table) if value else ""
    return str(value)


def _dnp_mark(table: Table) -> str:
    """The spelling the file already uses for a DNP row, else KiCad's "DNP"."""
    col = table.columns["dnp"]
    for i in table.rows:
        cells = table.records[i].cells
        if col < len(cells) and cell_value("dnp", cells[col].value):
            return cells[col].value.strip()
    return "DNP"


# ---- the adapter -------------------------------------------------------------------------------

class BomAdapter(Adapter):
    name = "bom_csv"
    version = "2"  # 2: items scoped per BOM beside a board, rows linked from its components
    patterns = ("*bom*.csv", "*.bom.csv", "*bom*.tsv")

    def parse(self, path: Path, rel: str) -> ParseResult:
        table = read_table(_read(path, rel), rel, bom_scope(path))
        extra = {"delimiter": table.delimiter, "encoding": table.encoding,
                 "header_line": table.records[table.header].line,
                 "columns": {p: table.header_names[c] for p, c in table.columns.items()}}
        if table.warnings:
            extra["warnings"] = table.warnings
        project = board_of(path)
        if project:  # the declared link between a row and the board: the components it lists
            extra["links_in"] = [(f"DesignElement:{safe_name(project)}/{safe_name(ref)}", "USES_COMPONENT", p.id)
                                 for p in table.rows.values() for ref in p.props.get("references") or ()]
        if table.inconsistent:  # ingest refuses the file; drift shows each row as an item
            extra["inconsistent"] = {eid: {"line": line, "message": why}
                                     for eid, (line, why) in table.inconsistent.items()}
        return ParseResult(rel, list(table.rows.values()), extra)

    def project(self, path: Path, rel: str, entities: dict[str, dict[str, Any]]) -> bytes:
        """Rows of entities the graph no longer has are dropped, new ones appended; in the others
        only cells whose value differs from the graph's are rewritten. A prop missing from an
        entity's dict leaves its cell alone; a prop set to None empties it."""
        scope = bom_scope(path)
        table = read_table(_read(path, rel), rel, scope)
        text = render(table, entities)
        try:
            data = text.encode(table.encoding)
        except UnicodeEncodeError as exc:
            raise AdapterError(rel, f"the file is {table.encoding} and cannot hold {exc.object[exc.start:exc.end]!r}",
                               hint="save the BOM as UTF-8") from None
        after = read_table(data, rel, scope)  # never write a file this adapter would refuse to read
        if after.inconsistent and not table.inconsistent:
            line, why = next(iter(after.inconsistent.values()))
            raise AdapterError(rel, why, line=line)
        return data


def board_of(path: Path) -> str | None:
    """The KiCad project a BOM beside it lists: the one `.kicad_pro` of the folder, else its one board."""
    for pattern in ("*.kicad_pro", "*.kicad_pcb"):
        found = sorted(path.parent.glob(pattern))
        if len(found) == 1:
            return found[0].stem
    return None


def bom_scope(path: Path) -> str:
    """The id prefix of a BOM's items: none when it is the only BOM of its board's folder
    (`BOMItem:C1`); "<file stem>/" when a folder holding a KiCad board or project holds several
    (a KiCad export and a JLCPCB one of one board), so that each file has its own items and a
    value changed in one is never written into the other."""
    adapter = BomAdapter()
    try:
        names = [p.name for p in path.parent.iterdir() if p.is_file()]
    except OSError:
        return ""
    boms = [n for n in names if adapter.owns(n)]
    board = any(n.endswith((".kicad_pcb", ".kicad_pro")) for n in names)
    return f"{safe_name(path.stem)}/" if board and len(boms) > 1 else ""


def _read(path: Path, rel: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AdapterError(rel, f"cannot read: {exc.strerror or exc}") from None


def render(table: Table, entities: dict[str, dict[str, Any]]) -> str:
    parts: list[str] = []
    pos = 0
    known = set()
    for i, parsed in table.rows.items():
        rec = table.records[i]
        known.add(parsed.id)
        parts.append(table.text[pos:rec.start])
        if parsed.id in entities:
            parts.append(_render_row(table, rec, entities[parsed.id]) + rec.newline)
        pos = rec.end + len(rec.newline)
    new = [props for eid, props in entities.items() if eid not in known]
    if new:
        rows = [_new_row(table, props) for props in new]
        last = table.records[max(table.rows)]
        if not last.newline and last.end == pos:  # a file without a final line end stays so
            parts.append(table.newline + table.newline.join(rows))
        else:
            parts.append("".join(row + table.newline for row in rows))
    parts.append(table.text[pos:])
    return "".join(parts)


def _render_row(table: Table, rec: Record, props: dict[str, Any]) -> str:
    text = table.text
    changes: dict[int, str] = {}
    if "references" in props and "quantity" not in props and "quantity" in table.columns:
        # the quantity follows from the references where the file has both
        qty = cell_value("quantity", rec.cells[table.columns["quantity"]].value) \
            if table.columns["quantity"] < len(rec.cells) else None
        if qty is not None and not (qty == 0 and props.get("dnp", False)):
            props = {**props, "quantity": len(props["references"] or [])}
    for prop, col in table.columns.items():
        if prop not in props or col >= len(rec.cells):
            continue
        cell = rec.cells[col]
        if cell_value(prop, cell.value) == _comparable(prop, props[prop]):
            continue
        value = format_value(prop, props[prop], cell.value, table)
        changes[col] = quote(value, table.delimiter, cell.quoted)
    if not changes:
        return text[rec.start:rec.end]
    out, pos = [], rec.start
    for col in sorted(changes):
        cell = rec.cells[col]
        out += [text[pos:cell.start], changes[col]]
        pos = cell.end
    out.append(text[pos:rec.end])
    return "".join(out)


def _comparable(prop: str, value: Any) -> Any:
    """The graph's value as `cell_value` would read it back, so equal values compare equal."""
    if value is None:
        return None
    if prop == "references":
        return list(value) or None
    if prop == "quantity" or prop == "dnp":
        return value
    text = str(value).strip()
    return None if text in _EMPTY else text


def _new_row(table: Table, props: dict[str, Any]) -> str:
    width = len(table.records[table.header].cells)
    cells = [""] * width
    for prop, col in table.columns.items():
        if prop in props and props[prop] is not None:
            cells[col] = format_value(prop, props[prop], "", table)
    always = table.quote_all
    return table.delimiter.join(quote(c, table.delimiter, always) for c in cells)


def _sample_references(table: Table) -> str:
    col = table.columns["references"]
    for i in table.rows:
        cells = table.records[i].cells
        if len(table.rows[i].props.get("references", [])) > 1:
            return cells[col].value
    return ", "
