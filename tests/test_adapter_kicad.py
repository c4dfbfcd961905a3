"""KiCad adapters on real files: Debian's kicad-demos (KiCad 6) and files saved by KiCad 8.99, 9
and 10-dev (tests/data/kicad). Parsing, the byte-for-byte round trip, in-place edits, refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metaforge.adapters import registry, sexpr
from metaforge.adapters.base import AdapterError
from metaforge.adapters.kicad import BoardAdapter, SchematicAdapter
from metaforge.thread.entities import check_relation, parse_id, validate_properties

DEMOS = Path("/usr/share/kicad/demos")
DATA = Path(__file__).parent / "data" / "kicad"
SCH, PCB = SchematicAdapter(), BoardAdapter()
KICAD5_BOARDS = {"microwave/microwave.kicad_pcb"}


def demos() -> Path:
    assert DEMOS.is_dir() and len(list(DEMOS.rglob("*.kicad_sch"))) >= 30, (
        f"{DEMOS} is missing: the KiCad tests read Debian's KiCad 6 demo projects (apt-get install kicad-demos)")
    return DEMOS


def demo_files(pattern: str) -> list[Path]:
    if not DEMOS.is_dir():
        return [DEMOS / "missing (apt-get install kicad-demos)"]
    return sorted(DEMOS.rglob(pattern))


def parse(path: Path, rel: str | None = None):
    adapter = SCH if path.suffix == ".kicad_sch" else PCB
    return adapter.parse(path, rel or path.name)


def by_id(result) -> dict:
    return {e.id: e for e in result.entities}


def entities_of(result) -> dict[str, dict]:
    return {e.id: dict(e.props) for e in result.entities}


def copy_project(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def changed_lines(old: bytes, new: bytes) -> list[tuple[str, str]]:
    """(old line, new line) for each line replaced; lines inserted come as ("", text)."""
    import difflib
    a, b = old.decode().splitlines(keepends=True), new.decode().splitlines(keepends=True)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "replace":
            assert i2 - i1 == j2 - j1, "lines were added or removed, not edited"
            out += list(zip(a[i1:i2], b[j1:j2]))
        elif op == "insert":
            out.append(("", "".join(b[j1:j2])))
        elif op == "delete":
            raise AssertionError(f"lines removed: {a[i1:i2]}")
    return out


def only_token_changed(old: bytes, new: bytes, before: str, after: str, times: int = 1) -> None:
    """`new` is `old` with the quoted atom `before` replaced by `after` on `times` lines, nothing else."""
    lines = changed_lines(old, new)
    assert len(lines) == times, lines
    for a, b in lines:
        assert a.replace(f'"{before}"', f'"{after}"', 1) == b, (a, b)


# ---- reading -----------------------------------------------------------------------------------

def test_entry_points_name_both_adapters():
    from importlib.metadata import entry_points

    found = {ep.name: ep.load() for ep in entry_points(group=registry.GROUP) if ep.name.startswith("kicad")}
    assert found == {"kicad_sch": SchematicAdapter, "kicad_pcb": BoardAdapter}
    assert SCH.owns("hw/Main.KiCad_Sch") and PCB.owns("hw/main.kicad_pcb") and not SCH.owns("hw/main.kicad_pcb")


def test_schematic_components_of_a_demo():
    result = parse(demos() / "ecc83/ecc83-pp.kicad_sch")
    ents = by_id(result)
    comps = [e for e in result.entities if e.props["kind"] == "component"]
    assert len(comps) == 15
    r1 = ents["DesignElement:ecc83-pp/R1"]
    assert r1.props["value"] == "1.5K"
    assert r1.props["footprint"] == "Resistor_THT:R_Axial_DIN0207_L6.3mm_D2.5mm_P7.62mm_Horizontal"
    assert r1.props["lib_id"] == "ecc83_schlib:R" and r1.props["sheet_path"] == "/"
    assert r1.region == "symbol:00000000-0000-0000-0000-00004549f38a" and r1.line == 696
    assert not any("#" in e.id for e in result.entities), "power symbols are not components"
    sheet = ents["DesignElement:ecc83-pp/sheet/ecc83-pp"]
    assert sheet.props == {"kind": "schematic"}
    assert {t for rel, t in sheet.links if rel == "HAS_ELEMENT"} == {c.id for c in comps}
    for e in result.entities:  # ids, properties and relations the graph accepts
        parse_id(e.id)
        validate_properties("DesignElement", e.props)
        for rel, target in e.links:
            check_relation(rel, "DesignElement", parse_id(target)[0])


def test_multi_unit_symbol_is_one_element():
    text = (demos() / "ecc83/ecc83-pp.kicad_sch").read_text()
    assert text.count('(property "Reference" "U1"') == 3  # three units of one ECC83
    u1 = [e for e in parse(DEMOS / "ecc83/ecc83-pp.kicad_sch").entities if e.id.endswith("/U1")]
    assert len(u1) == 1 and u1[0].props["value"] == "ECC83"
    assert u1[0].props["footprint"] == "Valve:Valve_ECC-83-1"


def test_sheet_placed_twice_gives_each_placement_its_references():
    result = parse(demos() / "complex_hierarchy/ampli_ht.kicad_sch")
    comps = {e.props["reference"]: e for e in result.entities if e.props["kind"] == "component"}
    assert len(comps) == 58  # 29 symbols, placed twice
    r7, r17 = comps["R7"], comps["R17"]  # one symbol: references from the root's symbol_instances
    assert r7.id == "DesignElement:complex_hierarchy/R7"
    assert (r7.props["sheet_path"], r17.props["sheet_path"]) == ("/ampli_ht_vertical/", "/ampli_ht_horizontal/")
    assert r7.props["value"] == r17.props["value"] == "22K"
    assert r7.region != r17.region and r7.line == r17.line == 1027
    root = by_id(parse(DEMOS / "complex_hierarchy/complex_hierarchy.kicad_sch"))
    assert root["DesignElement:complex_hierarchy/R17"].props == {
        "kind": "component", "reference": "R17", "value": "22K",
        "footprint": "Resistor_THT:R_Axial_DIN0204_L3.6mm_D1.6mm_P7.62mm_Horizontal"}
    assert ("HAS_ELEMENT", "DesignElement:complex_hierarchy/sheet/ampli_ht") in \
        root["DesignElement:complex_hierarchy/sheet/complex_hierarchy"].links


def test_sub_sheet_belongs_to_the_project_of_its_root():
    result = parse(demos() / "flat_hierarchy/pic_programmer.kicad_sch")
    assert result.extra["project"] == "flat_hierarchy"
    assert all(e.id.startswith("DesignElement:flat_hierarchy/") for e in result.entities)
    # localized sheet fields ("Fichier de feuille") are still followed
    xilinx = parse(DEMOS / "kit-dev-coldfire-xilinx_5213/xilinx.kicad_sch")
    assert xilinx.extra["project"] == "kit-dev-coldfire-xilinx_5213"
    assert {e.props["sheet_path"] for e in xilinx.entities if e.props["kind"] == "component"} == {"/xilinx/"}


def test_board_footprints_nets_and_the_board():
    result = parse(demos() / "ecc83/ecc83-pp.kicad_pcb")
    ents = by_id(result)
    board = ents["DesignElement:ecc83-pp/pcb/ecc83-pp"]
    assert board.props == {"kind": "pcb", "layers": 2, "thickness": {"value": 1.6, "unit": "mm"}}
    nets = {e.props["net"]: e for e in result.entities if e.props["kind"] == "net"}
    assert len(nets) == 9 and nets["Net-(R1-Pad1)"].id == "DesignElement:ecc83-pp/net/Net-_R1-Pad1_"
    r1 = ents["DesignElement:ecc83-pp/R1"]
    assert r1.props == {"kind": "component", "reference": "R1", "value": "1.5K", "layer": "F.Cu",
                        "footprint": "Resistor_THT:R_Axial_DIN0207_L6.3mm_D2.5mm_P7.62mm_Horizontal"}
    assert {t for rel, t in r1.links if rel == "CONNECTED_TO"} == {
        nets["Net-(R1-Pad1)"].id, nets[r1_other_net(result)].id}
    for e in result.entities:
        validate_properties("DesignElement", e.props)
        for rel, target in e.links:
            check_relation(rel, "DesignElement", parse_id(target)[0])


def r1_other_net(result) -> str:
    text = (DEMOS / "ecc83/ecc83-pp.kicad_pcb").read_text()
    block = text[text.index('(fp_text reference "R1"'):]
    block = block[:block.index("(model")]
    names = {n for n in sexpr_nets(block)} - {"Net-(R1-Pad1)"}
    assert len(names) == 1
    return names.pop()


def sexpr_nets(block: str) -> set[str]:
    import re
    return set(re.findall(r'\(net \d+ "([^"]*)"\)', block))


def test_every_footprint_is_tied_to_its_symbol():
    demos()
    for project in ("complex_hierarchy", "kit-dev-coldfire-xilinx_5213", "video", "pic_programmer"):
        folder = DEMOS / project
        board = next(folder.glob("*.kicad_pcb"))
        on_board = {e.id: e for e in parse(board).entities if e.props["kind"] == "component"}
        on_sheets = {}
        for sch in folder.glob("*.kicad_sch"):
            on_sheets.update({e.id: e for e in parse(sch).entities if "lib_id" in e.props})
        assert set(on_board) == set(on_sheets), project
        assert all(on_board[i].props["value"] == on_sheets[i].props["value"] for i in on_board), project


def test_footprint_follows_its_symbol_by_path_when_the_board_reference_is_stale(tmp_path):
    folder = copy_project(DATA / "kicad9", tmp_path)
    board = folder / "test_pads_inside_pads.kicad_pcb"
    board.write_text(board.read_text().replace('(property "Reference" "P1"', '(property "Reference" "P9"'))
    ids = by_id(parse(board))
    assert "DesignElement:test_pads_inside_pads/P1" in ids and "DesignElement:test_pads_inside_pads/P9" not in ids
    (folder / "test_pads_inside_pads.kicad_sch").unlink()  # without the schematic the board's own text counts
    assert "DesignElement:test_pads_inside_pads/P9" in by_id(parse(board))


def test_kiutils_finds_the_same_components():
    from kiutils.schematic import Schematic  # an independent reader (a test extra), not used by mf

    for rel in ("ecc83/ecc83-pp.kicad_sch", "pic_programmer/pic_programmer.kicad_sch",
                "stickhub/StickHub.kicad_sch", "simulation/v_i_sources/v_i_sources.kicad_sch"):
        sch = Schematic.from_file(str(demos() / rel))
        refs = {next(p.value for p in s.properties if p.key == "Reference") for s in sch.schematicSymbols}
        theirs = {r for r in refs if not r.startswith("#")}
        ours = {e.props["reference"] for e in parse(DEMOS / rel).entities if "lib_id" in e.props}
        assert ours == theirs, rel


# ---- KiCad 7 and later files -------------------------------------------------------------------

def test_kicad9_schematic_and_board():
    sch = by_id(parse(DATA / "kicad9/test_pads_inside_pads.kicad_sch"))
    p1 = sch["DesignElement:test_pads_inside_pads/P1"]
    assert p1.props["footprint"] == "Connect:1pin_thermal" and p1.props["value"] == "CONN_1"
    assert p1.props["description"] == "" and p1.props["datasheet"] == ""
    board = parse(DATA / "kicad9/test_pads_inside_pads.kicad_pcb")
    ents = by_id(board)
    assert ents["DesignElement:test_pads_inside_pads/P1"].props["value"] == "CONN_1"  # (property "Value") of KiCad 8+
    assert ("CONNECTED_TO", "DesignElement:test_pads_inside_pads/net/_/NET2") in \
        ents["DesignElement:test_pads_inside_pads/P1"].links
    assert ents["DesignElement:test_pads_inside_pads/pcb/test_pads_inside_pads"].props["layers"] == 2
    assert board.extra["format_version"] == 20241229


def test_kicad8_99_instances_inside_symbols():
    folder = DATA / "kicad8.99_shared_sheets"
    refs = {}
    for sch in sorted(folder.glob("*.kicad_sch")):
        result = parse(sch)
        assert result.extra["project"] == "issue13212"
        refs[sch.stem] = {e.props["reference"]: e.props["sheet_path"]
                          for e in result.entities if e.props["kind"] == "component"}
    assert refs["issue13212"] == dict.fromkeys(["R1", "R2", "R3", "R4"], "/")
    assert refs["issue13212_subsheet_1"] == dict.fromkeys(["R5", "R6"], "/issue13212_subsheet_1/")
    assert refs["issue13212_subsheet_2"] == {"R7": "/issue13212_subsheet_2_1/", "R8": "/issue13212_subsheet_2_2/"}


def test_kicad10_board_names_nets_without_numbers():
    result = parse(DATA / "kicad10dev/netted_unnumbered.kicad_pcb")
    ents = by_id(result)
    for ref in ("SMD1", "SMD2"):
        links = {t for _, t in ents[f"DesignElement:netted_unnumbered/{ref}"].links}
        assert links == {"DesignElement:netted_unnumbered/net/AVDD", "DesignElement:netted_unnumbered/net/GND"}
    assert ents["DesignElement:netted_unnumbered/SMD2"].props["layer"] == "B.Cu"


# ---- round trip and edits -----------------------------------------------------------------------

READABLE = [p for p in demo_files("*.kicad_sch") + demo_files("*.kicad_pcb")
            if p.relative_to(DEMOS).as_posix() not in KICAD5_BOARDS]  # the KiCad 5 board is refused, below


@pytest.mark.parametrize("path", READABLE + sorted(DATA.rglob("*.kicad_*")), ids=lambda p: p.name)
def test_round_trip_leaves_every_byte(path):
    assert path.exists(), f"{path} is missing: apt-get install kicad-demos"
    adapter = SCH if path.suffix == ".kicad_sch" else PCB
    result = adapter.parse(path, path.name)
    assert result.entities
    assert adapter.project(path, path.name, entities_of(result)) == path.read_bytes()


def test_value_change_edits_only_that_token(tmp_path):
    folder = copy_project(demos() / "ecc83", tmp_path)
    sch = folder / "ecc83-pp.kicad_sch"
    old = sch.read_bytes()
    ents = entities_of(parse(sch))
    ents["DesignElement:ecc83-pp/R1"]["value"] = "2.2K"
    new = SCH.project(sch, sch.name, ents)
    # the symbol's Value property and the root's per-placement value, nothing else
    only_token_changed(old, new, "1.5K", "2.2K", times=2)
    assert len(old) == len(new)
    sch.write_bytes(new)
    assert by_id(parse(sch))["DesignElement:ecc83-pp/R1"].props["value"] == "2.2K"
    board = folder / "ecc83-pp.kicad_pcb"
    ents = entities_of(parse(board))
    ents["DesignElement:ecc83-pp/R1"]["value"] = "2.2K"
    only_token_changed(board.read_bytes(), PCB.project(board, board.name, ents), "1.5K", "2.2K")


def test_quotes_and_backslashes_are_escaped(tmp_path):
    folder = copy_project(DATA / "kicad9", tmp_path)
    sch = folder / "test_pads_inside_pads.kicad_sch"
    ents = entities_of(parse(sch))
    tricky = 'Conn "big" \\ 1\nline2'
    ents["DesignElement:test_pads_inside_pads/P1"]["value"] = tricky
    new = SCH.project(sch, sch.name, ents)
    assert b'"Conn \\"big\\" \\\\ 1\\nline2"' in new
    sch.write_bytes(new)
    assert by_id(parse(sch))["DesignElement:test_pads_inside_pads/P1"].props["value"] == tricky


def test_a_property_the_file_lacks_is_added_hidden_in_the_style_of_its_siblings(tmp_path):
    for folder, name, ref in ((DATA / "kicad9", "test_pads_inside_pads.kicad_sch", "test_pads_inside_pads/P1"),
                              (demos() / "ecc83", "ecc83-pp.kicad_sch", "ecc83-pp/R1")):
        sch = copy_project(folder, tmp_path / folder.name) / name
        old = sch.read_bytes()
        ents = entities_of(parse(sch))
        ents[f"DesignElement:{ref}"].update(mpn="CRCW0603-1K5", manufacturer="Vishay",
                                            fields={"Tolerance": "1%", "MPN": "not a second MPN field"})
        new = SCH.project(sch, sch.name, ents)
        lines = changed_lines(old, new)
        assert len(lines) == 1 and lines[0][0] == "", "one insertion, nothing else touched"
        added = lines[0][1]
        assert added.count("(property ") == 3 and added.count("hide") == 3
        if b"(id " in old:
            assert "(id 4)" in added and "(id 5)" in added and "(id 6)" in added
        sch.write_bytes(new)
        props = by_id(parse(sch))[f"DesignElement:{ref}"].props
        assert (props["mpn"], props["manufacturer"], props["fields"]) == ("CRCW0603-1K5", "Vishay", {"Tolerance": "1%"})
        assert SCH.project(sch, sch.name, entities_of(parse(sch))) == new


def test_mpn_fields_by_their_usual_names(tmp_path):
    folder = copy_project(DATA / "kicad9", tmp_path)
    sch = folder / "test_pads_inside_pads.kicad_sch"
    text = sch.read_text()
    for name, value in (("Manufacturer_Part_Number", "X-1"), ("MANUFACTURER", "Acme"), ("LCSC", "C25804")):
        text = text.replace('\t\t(property "Description" ""\n\t\t\t(at 91.44 44.45 0)',
                            f'\t\t(property "{name}" "{value}"\n\t\t\t(at 91.44 44.45 0)\n\t\t)\n'
                            '\t\t(property "Description" ""\n\t\t\t(at 91.44 44.45 0)', 1)
    sch.write_text(text)
    p1 = by_id(parse(sch))["DesignElement:test_pads_inside_pads/P1"].props
    assert (p1["mpn"], p1["manufacturer"], p1["fields"]) == ("X-1", "Acme", {"LCSC": "C25804"})


def test_kicad6_sheet_placed_twice_keeps_per_placement_values(tmp_path):
    folder = copy_project(demos() / "complex_hierarchy", tmp_path)
    sub, root = folder / "ampli_ht.kicad_sch", folder / "complex_hierarchy.kicad_sch"
    ents = entities_of(parse(sub))
    ents["DesignElement:complex_hierarchy/R7"]["value"] = "27K"  # R17 (same symbol) stays 22K
    assert SCH.project(sub, sub.name, ents) == sub.read_bytes(), "the shared Value property is left alone"
    root_ents = entities_of(parse(root))
    root_ents["DesignElement:complex_hierarchy/R7"]["value"] = "27K"
    new_root = SCH.project(root, root.name, root_ents)
    only_token_changed(root.read_bytes(), new_root, "22K", "27K")
    root.write_bytes(new_root)
    values = {e.props["reference"]: e.props["value"] for e in parse(sub).entities if e.props["kind"] == "component"}
    assert (values["R7"], values["R17"]) == ("27K", "22K")
    ents["DesignElement:complex_hierarchy/R17"]["value"] = "27K"  # both placements agree: the symbol changes too
    only_token_changed(sub.read_bytes(), SCH.project(sub, sub.name, ents), "22K", "27K")


def test_kicad7_and_later_refuse_two_values_for_one_shared_symbol(tmp_path):
    folder = copy_project(DATA / "kicad8.99_shared_sheets", tmp_path)
    sub = folder / "issue13212_subsheet_2.kicad_sch"
    ents = entities_of(parse(sub))
    ents["DesignElement:issue13212/R7"]["value"] = "10k"
    with pytest.raises(AdapterError) as err:
        SCH.project(sub, sub.name, ents)
    assert "R7" in str(err.value) and "R8" in str(err.value) and f"{sub.name}:" in str(err.value)
    ents["DesignElement:issue13212/R8"]["value"] = "10k"
    only_token_changed(sub.read_bytes(), SCH.project(sub, sub.name, ents), "R", "10k")


def test_board_value_change_kicad9(tmp_path):
    board = copy_project(DATA / "kicad9", tmp_path) / "test_pads_inside_pads.kicad_pcb"
    ents = entities_of(parse(board))
    ents["DesignElement:test_pads_inside_pads/P3"]["value"] = "TP"
    ents["DesignElement:test_pads_inside_pads/P3"]["footprint"] = "Other:fp"  # the board cannot take it: untouched
    only_token_changed(board.read_bytes(), PCB.project(board, board.name, ents), "CONN_1", "TP")


# ---- refusals ---------------------------------------------------------------------------------

def test_kicad5_board_is_refused():
    with pytest.raises(AdapterError) as err:
        parse(demos() / "microwave/microwave.kicad_pcb", "demos/microwave/microwave.kicad_pcb")
    msg = str(err.value)
    assert msg.startswith("demos/microwave/microwave.kicad_pcb:1: a KiCad 5")
    assert "20171130" in msg and "KiCad 6 or later" in msg


def test_old_and_legacy_schematics_are_refused(tmp_path):
    old = tmp_path / "old.kicad_sch"
    old.write_text((DATA / "kicad9/test_pads_inside_pads.kicad_sch").read_text().replace("20250114", "20200310"))
    with pytest.raises(AdapterError, match=r"old.kicad_sch:2: a KiCad 6 development-version schematic"):
        parse(old)
    legacy = tmp_path / "legacy.kicad_sch"
    legacy.write_text("EESchema Schematic File Version 4\nEELAYER 30 0\n")
    with pytest.raises(AdapterError, match=r"legacy.kicad_sch:1: a KiCad 5 \(legacy format\) schematic"):
        parse(legacy)
    assert not SCH.owns("hw/legacy.sch")
    wrong = tmp_path / "wrong.kicad_pcb"
    shutil.copy(DATA / "kicad9/test_pads_inside_pads.kicad_sch", wrong)
    with pytest.raises(AdapterError, match=r"not a KiCad board: the file starts with \(kicad_sch"):
        parse(wrong)


def test_malformed_files_are_refused_with_the_line(tmp_path):
    src = demos() / "ecc83/ecc83-pp.kicad_pcb"
    text = src.read_text()
    cut = tmp_path / "cut.kicad_pcb"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(AdapterError, match=r"cut.kicad_pcb:\d+: not a well-formed KiCad file: a '\(' that never closes"):
        parse(cut)
    lines = text.splitlines(keepends=True)
    assert lines[434].startswith("  (footprint ") and "(fp_text reference" in lines[441]
    extra = tmp_path / "extra.kicad_pcb"
    extra.write_text("".join(lines[:441] + [lines[441].replace("(", "((", 1)] + lines[442:]))
    with pytest.raises(AdapterError, match=r"extra.kicad_pcb:435: .*the item starting here does not close"):
        parse(extra)
    extra.write_text("".join(lines[:441] + [lines[441].replace(")", "))", 1)] + lines[442:]))
    with pytest.raises(AdapterError, match=r"extra.kicad_pcb:435: .*the item starting here closes one"):
        parse(extra)
    quote = tmp_path / "quote.kicad_sch"
    sch_lines = (DATA / "kicad9/test_pads_inside_pads.kicad_sch").read_text().splitlines(keepends=True)
    sch_lines[225] = sch_lines[225].replace('"P1"', '"P1', 1)
    quote.write_text("".join(sch_lines))
    with pytest.raises(AdapterError, match=r"quote.kicad_sch:226: not a well-formed KiCad file: a quoted string"):
        parse(quote)


def test_sexpr_reader_names_the_fault():
    for text, message, offset in (("(a (b)", "never closes", 0), ("(a))", "closes nothing", 3),
                                  ("(a) (b)", "after the end", 4), ('(a "b)', "quoted string", 3)):
        with pytest.raises(sexpr.SexprError, match=message) as err:
            sexpr.read(text)
        assert err.value.offset == offset
    root = sexpr.read('(k (a "x\\"y") (zone (pts (xy 1 2))) (a 2))', keep=frozenset({"a"}))
    assert root[1].text(1) == 'x"y' and root[2] == ["zone"] and root[3].text(1) == "2"
