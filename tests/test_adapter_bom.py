"""BOM CSV adapter: real-looking exports of KiCad and common BOM tools, byte-exact round trips,
one-cell edits, rows dropped and added, and the refusals."""

from __future__ import annotations

import csv
import io
import shutil
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaforge.adapters import AdapterError
from metaforge.adapters.bom import BomAdapter, parse_references
from metaforge.adapters.csv_spans import split_records
from metaforge.adapters.registry import GROUP
from metaforge.thread.entities import validate_properties

DATA = Path(__file__).parent / "data" / "bom"
FILES = sorted(p.name for p in DATA.glob("*.csv"))
bom = BomAdapter()


def parse(path: Path):
    return bom.parse(path, path.name)


def unchanged(result) -> dict:
    return {e.id: dict(e.props) for e in result.entities}


@pytest.fixture
def copy(tmp_path):
    def make(name: str) -> Path:
        dst = tmp_path / name
        shutil.copyfile(DATA / name, dst)
        return dst
    return make


@pytest.mark.parametrize("name", FILES)
def test_every_format_round_trips_byte_for_byte(name):
    path = DATA / name
    result = parse(path)
    assert result.entities
    for e in result.entities:
        validate_properties("BOMItem", e.props)  # the graph accepts what the adapter reads
        assert e.id == f"BOMItem:{e.props['references'][0]}" and e.region == f"row:{e.props['references'][0]}"
    assert bom.project(path, name, unchanged(result)) == path.read_bytes()


@pytest.mark.parametrize("name", FILES)
def test_a_changed_value_changes_only_that_cell(name, tmp_path):
    path = DATA / name
    result = parse(path)
    target = result.entities[-1]
    entities = unchanged(result)
    entities[target.id]["value"] = "47k 1% (changed)"
    out = bom.project(path, name, entities)
    before, after = path.read_bytes(), out
    enc = result.extra["encoding"]
    old_lines, new_lines = before.decode(enc).splitlines(True), after.decode(enc).splitlines(True)
    assert len(old_lines) == len(new_lines)
    differing = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
    assert differing == [target.line - 1]
    delim = result.extra["delimiter"]
    old_cells = split_records(old_lines[target.line - 1], delim)[0].cells
    new_cells = split_records(new_lines[target.line - 1], delim)[0].cells
    changed = [i for i, (a, b) in enumerate(zip(old_cells, new_cells)) if a.value != b.value]
    assert len(changed) == 1 and new_cells[changed[0]].value == "47k 1% (changed)"
    (tmp_path / name).write_bytes(out)
    reread = {e.id: e.props for e in bom.parse(tmp_path / name, name).entities}
    assert reread[target.id]["value"] == "47k 1% (changed)"
    assert all(reread[e.id] == e.props for e in result.entities if e.id != target.id)


def test_kicad_grouped_export_reads_dnp_and_drops_kicad_placeholders():
    items = {e.id: e for e in parse(DATA / "kicad8_grouped_bom.csv").entities}
    assert items["BOMItem:C1"].props["references"] == ["C1", "C2", "C3"]
    assert items["BOMItem:C1"].props["quantity"] == 3
    assert items["BOMItem:R9"].props["dnp"] is True and items["BOMItem:C1"].props["dnp"] is False
    assert "datasheet" not in items["BOMItem:C1"].props  # "~" is KiCad's empty
    assert items["BOMItem:U1"].props["datasheet"].startswith("https://www.st.com/")
    assert items["BOMItem:J1"].line == 7


def test_kicad_script_export_with_a_preamble_finds_its_header():
    result = parse(DATA / "pic_programmer_bom.csv")
    assert result.extra["header_line"] == 6
    items = {e.id: e for e in result.entities}
    assert items["BOMItem:D1"].props["references"] == ["D1", "D2", "D3"]  # "D1, D2, D3, "
    assert items["BOMItem:U1"].props["supplier"] == "Microchip"  # the script's "Vendor"
    assert items["BOMItem:U1"].line == 11


def test_jlcpcb_semicolon_altium_and_kibom_dialects():
    jlc = {e.id: e.props for e in parse(DATA / "jlcpcb_bom.csv").entities}
    assert jlc["BOMItem:C1"] == {"references": ["C1", "C2", "C5"], "value": "100nF", "supplier_pn": "C1525",
                                 "footprint": "0402"}
    mouser = parse(DATA / "mouser_order_bom.csv")
    assert mouser.extra["delimiter"] == ";" and mouser.extra["encoding"] == "cp1252"
    m = {e.id: e.props for e in mouser.entities}
    assert m["BOMItem:C10"]["value"] == "4,7µF" and m["BOMItem:C10"]["mpn"] == "GRM188R61E475KE11D"
    assert m["BOMItem:U5"]["supplier_pn"] == "595-TPS62130RGTR"
    altium = parse(DATA / "altium_bom.tsv.csv")
    a = {e.id: e.props for e in altium.entities}
    assert altium.extra["delimiter"] == "\t"
    assert a["BOMItem:C1"]["references"] == ["C1", "C2", "C3", "C4", "C9"] and a["BOMItem:C1"]["quantity"] == 5
    assert a["BOMItem:C1"]["manufacturer"] == "Yageo" and a["BOMItem:C1"]["supplier"] == "Digi-Key"
    kibom = parse(DATA / "kibom_bom.csv")
    assert [e.id for e in kibom.entities] == ["BOMItem:C1", "BOMItem:R1", "BOMItem:U1"]
    assert "warnings" not in kibom.extra  # its summary under a blank line is not a row
    assert {e.id: e.props for e in kibom.entities}["BOMItem:U1"]["description"] == "Regulator, LDO"


def test_references_lists_and_ranges():
    assert parse_references("C1, C2, C5-C7") == ["C1", "C2", "C5", "C6", "C7"]
    assert parse_references("C1 C2") == ["C1", "C2"]
    assert parse_references("R10-12") == ["R10", "R11", "R12"]
    assert parse_references("C1, C2, ") == ["C1", "C2"]
    assert parse_references("U1-A") == ["U1-A"]


def test_projection_writes_references_quantity_and_dnp_in_the_files_style(copy):
    path = copy("altium_bom.tsv.csv")
    entities = unchanged(parse(path))
    entities["BOMItem:C1"].update(references=["C1", "C2", "C3", "C4", "C5", "C9"], quantity=6)
    text = bom.project(path, path.name, entities).decode("utf-8")
    assert "\nC1-C5, C9\tCAP 100nF 50V X7R\tCapacitor\t0603\t6\t" in text

    path = copy("kicad8_grouped_bom.csv")
    entities = unchanged(parse(path))
    entities["BOMItem:R9"]["dnp"] = False
    entities["BOMItem:C4"].update(dnp=True, references=["C4", "C8"], quantity=2)
    text = bom.project(path, path.name, entities).decode()
    assert '"C4,C8","10uF","~","Capacitor_SMD:C_0805_2012Metric","2","DNP"\n' in text
    assert '"R9","1k","~","Resistor_SMD:R_0402_1005Metric","1",""\n' in text


def test_a_value_that_needs_quotes_gets_them_only_there(copy):
    path = copy("jlcpcb_bom.csv")
    entities = unchanged(parse(path))
    entities["BOMItem:C3"]["value"] = 'Cap 10uF, 25V "X5R"'
    out = bom.project(path, path.name, entities)
    assert b'\r\n"Cap 10uF, 25V ""X5R""",C3,0805,C15850\r\n' in out
    path.write_bytes(out)
    assert {e.id: e.props for e in parse(path).entities}["BOMItem:C3"]["value"] == 'Cap 10uF, 25V "X5R"'


def test_a_prop_set_to_none_empties_its_cell_and_a_missing_one_is_left_alone(copy):
    path = copy("mouser_order_bom.csv")
    entities = unchanged(parse(path))
    entities["BOMItem:L1"]["description"] = None
    del entities["BOMItem:L1"]["mpn"]
    out = bom.project(path, path.name, entities).decode("cp1252")
    assert "\r\n2;L1;1;2,2µH;XFL4020-222MEC;Coilcraft;994-XFL4020-222MEC;\r\n" in out


def test_rows_the_graph_dropped_go_and_new_items_are_appended_in_the_files_style(copy):
    path = copy("kicad8_grouped_bom.csv")
    entities = unchanged(parse(path))
    del entities["BOMItem:C4"]
    entities["BOMItem:D1"] = {"references": ["D1", "D2"], "quantity": 2, "value": "BAT54", "dnp": False,
                              "footprint": "Diode_SMD:D_SOD-323"}
    text = bom.project(path, path.name, entities).decode()
    assert '"C4"' not in text
    assert text.endswith('"J1","Conn_01x04","~","Connector_JST:JST_SH_SM04B-SRSS-TB_1x04-1MP_P1.00mm_Horizontal","1",""\n'
                         '"D1,D2","BAT54","","Diode_SMD:D_SOD-323","2",""\n')

    path = copy("mouser_order_bom.csv")  # no line end after the last row, semicolons, not quoted
    entities = unchanged(parse(path))
    entities["BOMItem:R7"] = {"references": ["R7"], "quantity": 1, "value": "100k", "manufacturer": "Yageo"}
    out = bom.project(path, path.name, entities).decode("cp1252")
    assert out.endswith("Abwärtswandler 3A\r\n;R7;1;100k;;Yageo;;")


def test_a_value_the_files_encoding_cannot_hold_is_refused(copy):
    path = copy("mouser_order_bom.csv")
    entities = unchanged(parse(path))
    entities["BOMItem:L1"]["description"] = "功率电感"
    with pytest.raises(AdapterError, match=r"mouser_order_bom.csv: the file is cp1252 and cannot hold '功"):
        bom.project(path, path.name, entities)


def test_references_ranges_are_capped():
    assert parse_references("R1-R999999") == ["R1-R999999"]


def test_projection_refuses_a_graph_whose_quantity_disagrees_with_its_references(copy):
    path = copy("kicad8_grouped_bom.csv")
    entities = unchanged(parse(path))
    entities["BOMItem:C1"]["references"] = ["C1", "C2", "C3", "C7"]
    with pytest.raises(AdapterError, match=r"kicad8_grouped_bom.csv:2: column 'Qty': quantity 3 but 4 references"):
        bom.project(path, path.name, entities)


@pytest.mark.parametrize("content, message", [
    (b"Value,Footprint,Qty\n100n,0402,2\n", r"bad_bom.csv:1: no reference column"),
    (b"Reference,Value,Qty\nC1 C2,100n,two\n", r"bad_bom.csv:2: column 'Qty': quantity 'two' is not a whole number"),
    (b"Reference,Value,Qty\nC1 C2,100n,2.5\n", r"bad_bom.csv:2: column 'Qty': quantity '2.5' is not a whole number"),
    (b"Reference,Value\nC1,100n\nC2 C1,1u\n", r"bad_bom.csv:3: reference C1 is also on line 2"),
    (b'Reference,Value\nC1,"100n\nR1,1k\n', r"bad_bom.csv:2: a quoted cell starting on line 2 is never closed"),
    (b"Reference,Value,DNP\nC1,100n,maybe\n", r"bad_bom.csv:2: column 'DNP': 'maybe' is not a DNP mark"),
    (b"", r"bad_bom.csv:1: no reference column"),
    (b"Reference,Value\n", r"bad_bom.csv:1: no rows with references"),
])
def test_bad_files_are_refused_naming_file_line_and_column(tmp_path, content, message):
    path = tmp_path / "bad_bom.csv"
    path.write_bytes(content)
    with pytest.raises(AdapterError, match=message):
        bom.parse(path, path.name)


def test_a_row_without_references_is_reported_not_silently_read(tmp_path):
    path = tmp_path / "mech_bom.csv"
    path.write_bytes(b"Reference,Value,Qty\nC1,100n,1\n,M3 screw,4\n")
    result = bom.parse(path, path.name)
    assert [e.id for e in result.entities] == ["BOMItem:C1"]
    assert result.extra["warnings"] == ["mech_bom.csv:3: a row without references, not read"]
    assert bom.project(path, path.name, unchanged(result)) == path.read_bytes()


def test_the_adapter_is_registered_and_owns_bom_file_names():
    (ep,) = [e for e in entry_points(group=GROUP) if e.name == "bom_csv"]
    adapter = ep.load()()
    assert adapter.name == "bom_csv" and adapter.version == "2"
    assert adapter.owns("hw/main_board-BOM.csv") and adapter.owns("hw/pic.bom.csv")
    assert not adapter.owns("hw/notes.csv")


# ---- property: any BOM the csv module writes round-trips, and an edit stays in its cell --------

_text = st.text(alphabet=st.sampled_from(list("abcXYZ019 ,;\"'µ.-_/\t\n")), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(1, 4), _text, _text), min_size=1, max_size=6),
       delimiter=st.sampled_from([",", ";", "\t"]),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
       newline=st.sampled_from(["\n", "\r\n"]),
       new_value=_text)
def test_property_round_trip_and_single_cell_edit(tmp_path, rows, delimiter, quoting, newline, new_value):
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator=newline)
    w.writerow(["Reference", "Qty", "Value", "MPN"])
    n = 1
    for count, value, mpn in rows:
        refs = [f"R{n + k}" for k in range(count)]
        n += count
        w.writerow([" ".join(refs), count, value, mpn])
    path = tmp_path / "prop_bom.csv"
    path.write_bytes(buf.getvalue().encode())
    result = bom.parse(path, path.name)
    assert len(result.entities) == len(rows)
    assert bom.project(path, path.name, unchanged(result)) == path.read_bytes()
    entities = unchanged(result)
    first = result.entities[0].id
    entities[first]["value"] = new_value
    path.write_bytes(bom.project(path, path.name, entities))
    again = {e.id: e.props for e in bom.parse(path, path.name).entities}
    assert again[first].get("value") == (new_value.strip() or None)
    for e in result.entities[1:]:
        assert again[e.id] == e.props


def test_a_row_whose_quantity_is_not_its_references_is_read_and_named(tmp_path):
    """A person's inconsistent edit is read (drift shows it as an item naming the row), never
    taken into the graph (ingest refuses it) nor written (projection refuses to make one)."""
    path = tmp_path / "bad_bom.csv"
    path.write_bytes(b"Ref;Value;Quantity\nC1;100n;1\nR1,R2;10k;3\n")
    result = bom.parse(path, path.name)
    assert result.extra["inconsistent"] == {
        "BOMItem:R1": {"line": 3, "message": "column 'Quantity': quantity 3 but 2 references (R1, R2)"}}
    assert bom.project(path, path.name, unchanged(result)) == path.read_bytes()
