"""A KiCad board in 3D: the GLB a viewer shows for a `.kicad_pcb`, and its ModelManifest, in the
same form as a STEP file's (see adapters/step.py): one glTF node and mesh per placed component,
named by its DesignElement's path, so the dashboard's tree and viewer treat a board as they treat
an assembly.

What is drawn (all in mm, Z up, the board's outline centred on the origin):
- the board: its Edge.Cuts outline (lines, arcs, rectangles, circles, polygons; inner closed
  outlines are cut-outs) extruded to the board's thickness (`(general (thickness))`, else the
  stackup's sum, else 1.6 mm);
- each footprint at its place and rotation, on its side (a bottom footprint's model under the
  board, turned π about Y then π about Z as KiCad's 3D viewer does), with its 3D model when the file is found: a
  path relative to the board, `${KIPRJMOD}`, `${KICADn_3DMODEL_DIR}` (n = 6..9, from the
  environment or the usual install folders), any other `${VAR}` from the environment; a `.wrl`
  is looked for as `.step`/`.stp` too. The model's offset, scale and rotation apply as in KiCad.
- otherwise a box: the bounding box of its courtyard, else of its fabrication outline, else of
  its pads, with a height of its own (SMD 1 mm, through-hole 3 mm, a mounting hole 0.1 mm).

This module is the plan (pure Python, from the s-expression reader); `pcb_glb` builds the shapes
and writes the GLB with OpenCascade in the STEP reader's child process (`step_child`), so a model
file that crashes OCCT or takes for ever costs its board's GLB (said in a warning), never mf.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from metaforge.adapters.base import AdapterError, safe_name

VERSION = "1"
_ITEMS = frozenset({"version", "general", "setup", "footprint", "gr_line", "gr_arc", "gr_rect", "gr_circle",
                    "gr_poly", "gr_curve"})
_MODEL_VARS = tuple(f"KICAD{n}_3DMODEL_DIR" for n in (9, 8, 7, 6)) + ("KISYS3DMOD",)
_MODEL_DIRS = ("/usr/share/kicad/3dmodels", "/usr/share/kicad/modules/packages3d", "/usr/local/share/kicad/3dmodels",
               "/Applications/KiCad/KiCad.app/Contents/SharedSupport/3dmodels",
               "C:/Program Files/KiCad/share/kicad/3dmodels")
_HEIGHT = {"smd": 1.0, "through_hole": 3.0}
DEFAULT_HEIGHT = 1.0


@dataclass
class Model:
    path: str                                    # the STEP file found
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rotate: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class Part:
    entity: str                                  # DesignElement id
    reference: str
    x: float                                     # mm, Y up, board-centred
    y: float
    angle: float                                 # degrees, counter-clockwise seen from the top
    bottom: bool
    models: list[Model] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None   # local x0, y0, x1, y1 (Y up), drawn when no model
    height: float = DEFAULT_HEIGHT
    round: bool = False                          # a mounting hole: a disc in its box, not the box
    missing: list[str] = field(default_factory=list)     # model paths as written that were not found


@dataclass
class Plan:
    board: str                                   # the board's DesignElement id
    thickness: float
    outline: list[tuple]                         # ("line", p, q) | ("arc", p, mid, q) | ("circle", c, r)
    parts: list[Part]
    center: tuple[float, float]


# ---- the plan -------------------------------------------------------------------------------------

def plan(path: Path, rel: str) -> Plan:
    from metaforge.adapters import sexpr
    from metaforge.adapters.kicad.board import read_board_shared

    read = read_board_shared(path, rel)
    ids = {el.region: el.id for el in read.elements}
    board_id = next(el.id for el in read.elements if el.props.get("kind") == "pcb")
    root = sexpr.read(read.doc.text, _ITEMS)
    outline = [seg for item in root if type(item) is sexpr.Node and item.name.startswith("gr_")
               and _layer(item) == "Edge.Cuts" for seg in _segments(item)]
    thickness = _thickness(root)
    if outline:
        xs, ys = zip(*(p for seg in outline for p in _extent(seg)))
        center = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)
    else:
        center = (0.0, 0.0)
    parts = []
    taken: set[str] = set()
    for fp in root.all("footprint"):
        uid = fp.value("uuid") or fp.value("tstamp") or ""
        eid = ids.get(f"footprint:{uid}") if uid else None
        if eid is None:
            ref = _reference(fp)
            eid = ids.get(f"footprint:{ref}")
        if eid is None or eid in taken:
            continue  # art without a reference, or a second footprint of one reference
        taken.add(eid)
        parts.append(_part(fp, eid, path.parent, center))
    if not outline:  # a board without an outline: the footprints' extent stands for it
        xs = [p.x for p in parts] or [0.0]
        ys = [p.y for p in parts] or [0.0]
        x0, x1, y0, y1 = min(xs) - 2, max(xs) + 2, min(ys) - 2, max(ys) + 2
        outline = [("line", (x0, y0), (x1, y0)), ("line", (x1, y0), (x1, y1)),
                   ("line", (x1, y1), (x0, y1)), ("line", (x0, y1), (x0, y0))]
    else:
        outline = [_moved(seg, center) for seg in outline]
    return Plan(board_id, thickness, outline, parts, center)


def _layer(node) -> str:
    return node.value("layer", "") or ""


def _xy(node, name: str) -> tuple[float, float] | None:
    child = node.get(name)
    if child is None or len(child) < 3:
        return None
    return float(child[1]), -float(child[2])  # KiCad's Y points down


def _segments(item) -> list[tuple]:
    kind = item.name
    try:
        if kind == "gr_line":
            return [("line", _xy(item, "start"), _xy(item, "end"))]
        if kind == "gr_arc":
            start, end = _xy(item, "start"), _xy(item, "end")
            mid = _xy(item, "mid")
            if mid is None:  # KiCad 6 before 20211014: (start centre) (end start) (angle)
                return _legacy_arc(item)
            return [("arc", start, mid, end)]
        if kind == "gr_rect":
            (x0, y0), (x1, y1) = _xy(item, "start"), _xy(item, "end")
            return _polyline([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], closed=True)
        if kind == "gr_circle":
            c, e = _xy(item, "center"), _xy(item, "end")
            return [("circle", c, math.dist(c, e))]
        if kind == "gr_poly":
            pts = item.get("pts")
            return _polyline([(float(p[1]), -float(p[2])) for p in pts.all("xy")], closed=True) if pts else []
        if kind == "gr_curve":
            pts = item.get("pts")
            xy = [(float(p[1]), -float(p[2])) for p in pts.all("xy")] if pts else []
            return [("line", xy[0], xy[-1])] if len(xy) >= 2 else []
    except (TypeError, ValueError, IndexError):
        return []
    return []


def _legacy_arc(item) -> list[tuple]:
    c, s = _xy(item, "start"), _xy(item, "end")
    angle = float(item.value("angle", "0") or 0)
    r = math.dist(c, s)
    a0 = math.atan2(s[1] - c[1], s[0] - c[0])
    a1 = a0 - math.radians(angle)  # KiCad's angles turn clockwise on a Y-down screen
    mid = (c[0] + r * math.cos((a0 + a1) / 2), c[1] + r * math.sin((a0 + a1) / 2))
    return [("arc", s, mid, (c[0] + r * math.cos(a1), c[1] + r * math.sin(a1)))]


def _polyline(points, closed: bool) -> list[tuple]:
    pts = list(points) + ([points[0]] if closed and points else [])
    return [("line", p, q) for p, q in zip(pts, pts[1:]) if p != q]


def _extent(seg) -> list[tuple[float, float]]:
    if seg[0] == "circle":
        (cx, cy), r = seg[1], seg[2]
        return [(cx - r, cy - r), (cx + r, cy + r)]
    return list(seg[1:])


def _moved(seg, center) -> tuple:
    cx, cy = center
    if seg[0] == "circle":
        return ("circle", (seg[1][0] - cx, seg[1][1] - cy), seg[2])
    return (seg[0], *((p[0] - cx, p[1] - cy) for p in seg[1:]))


def _thickness(root) -> float:
    general = root.get("general")
    try:
        if general is not None and general.value("thickness"):
            return float(general.value("thickness"))
        setup = root.get("setup")
        stackup = setup.get("stackup") if setup is not None else None
        if stackup is not None:
            total = sum(float(layer.value("thickness")) for layer in stackup.all("layer") if layer.value("thickness"))
            if total > 0:
                return total
    except (TypeError, ValueError):
        pass
    return 1.6


def _reference(fp) -> str:
    from metaforge.adapters.kicad.board import _text_of

    return _text_of(fp, "reference")[0]


def _part(fp, eid: str, folder: Path, center) -> Part:
    at = fp.get("at")
    x, y = float(at[1]), -float(at[2])
    angle = float(at[3]) if len(at) > 3 else 0.0
    layer = fp.value("layer", "F.Cu") or "F.Cu"
    part = Part(eid, _reference(fp), x - center[0], y - center[1], angle, layer.startswith("B."))
    for model in fp.all("model"):
        written = model.text(1, "")
        if not written or (model.get("hide") is not None) or "hide" in model[2:]:
            continue
        found = resolve_model(written, folder)
        if found is None:
            part.missing.append(written)
            continue
        part.models.append(Model(str(found), _triple(model, "offset") or _triple(model, "at", 25.4) or (0, 0, 0),
                                 _triple(model, "scale") or (1, 1, 1), _triple(model, "rotate") or (0, 0, 0)))
    part.box = _footprint_box(fp)  # drawn when no model is (or, after a crash, can be) read
    if part.box is not None:
        attr = fp.get("attr")
        kind = attr.text(1, "") if attr is not None else ""
        part.height = _HEIGHT.get(kind, DEFAULT_HEIGHT)
        if "mountinghole" in (fp.text(1, "") or "").lower().replace("_", ""):
            part.height, part.round = 0.1, True
        elif part.box:
            w, d = part.box[2] - part.box[0], part.box[3] - part.box[1]
            part.height = round(min(part.height, max(0.3, 0.6 * min(w, d))), 3)
    return part


def _triple(model, name: str, factor: float = 1.0) -> tuple[float, float, float] | None:
    node = model.get(name)
    xyz = node.get("xyz") if node is not None else None
    if xyz is None or len(xyz) < 4:
        return None
    try:
        return tuple(float(v) * factor for v in xyz[1:4])
    except ValueError:
        return None


def _footprint_box(fp) -> tuple[float, float, float, float] | None:
    """The local bounding box (Y up) of the courtyard, else the fabrication outline, else the pads."""
    for suffix in ("CrtYd", "Fab"):
        pts = []
        for item in fp:
            if getattr(item, "name", "") in ("fp_line", "fp_rect", "fp_poly", "fp_circle", "fp_arc") \
                    and (_layer(item) or "").endswith(suffix):
                pts += _item_points(item)
        if pts:
            return _bbox(pts)
    pts = []
    for pad in fp.all("pad"):
        at, size = pad.get("at"), pad.get("size")
        if at is None or size is None:
            continue
        px, py = float(at[1]), -float(at[2])
        w, h = float(size[1]) / 2, float(size[2]) / 2
        r = max(w, h)
        pts += [(px - r, py - r), (px + r, py + r)]
    return _bbox(pts) if pts else None


def _item_points(item) -> list[tuple[float, float]]:
    try:
        if item.name == "fp_circle":
            c, e = _xy(item, "center"), _xy(item, "end")
            r = math.dist(c, e)
            return [(c[0] - r, c[1] - r), (c[0] + r, c[1] + r)]
        if item.name == "fp_poly":
            pts = item.get("pts")
            return [(float(p[1]), -float(p[2])) for p in pts.all("xy")] if pts else []
        return [p for p in (_xy(item, "start"), _xy(item, "mid"), _xy(item, "end")) if p is not None]
    except (TypeError, ValueError, IndexError):
        return []


def _bbox(pts) -> tuple[float, float, float, float] | None:
    xs, ys = zip(*pts)
    if max(xs) - min(xs) <= 0 or max(ys) - min(ys) <= 0:
        return None
    return (min(xs), min(ys), max(xs), max(ys))


def model_dirs() -> dict[str, list[str]]:
    """Where each KiCad 3D-model variable points: the environment's value, else the usual folders."""
    installed = [d for d in _MODEL_DIRS if os.path.isdir(d)]
    return {var: ([os.environ[var]] if os.environ.get(var) else installed) for var in _MODEL_VARS}


def resolve_model(written: str, folder: Path) -> Path | None:
    """The STEP file a footprint's `(model ...)` path names, or None."""
    text = written.replace("\\", "/")
    candidates: list[str] = []
    dirs = model_dirs()
    for var in ("KIPRJMOD", *dirs):
        for form in ("${%s}" % var, "$(%s)" % var):
            if form in text:
                bases = [str(folder)] if var == "KIPRJMOD" else dirs[var]
                candidates += [text.replace(form, base) for base in bases]
    if not candidates:
        expanded = os.path.expandvars(text)
        if "$" in expanded:
            return None
        candidates = [expanded]
    for cand in candidates:
        p = Path(cand)
        if not p.is_absolute():
            p = folder / p
        for option in (p, *(p.with_suffix(s) for s in (".step", ".stp", ".STEP", ".STP"))):
            if option.suffix.lower() in (".step", ".stp") and option.is_file():
                return option.resolve()
    return None


# ---- the GLB and its manifest -----------------------------------------------------------------------

def build(path: Path, rel: str, root: Path) -> dict:
    """Write (or reuse) the board's GLB and manifest under `.metaforge/artifacts/`; return the
    manifest. Raises AdapterError when OpenCascade fails; the caller says it as a warning."""
    from metaforge.adapters import step_child
    from metaforge.adapters.step import artifact_paths

    glb_path, manifest_path = artifact_paths(root, rel)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        cached = json.loads(manifest_path.read_text())
        if cached.get("source_sha256") == sha and cached.get("pcb_3d_version") == VERSION and glb_path.is_file() \
                and cached.get("models_seen") == _models_seen(path, rel):
            return cached
    except (OSError, ValueError):
        pass
    try:
        return step_child.parse(path, rel, root, build_here, _warm)
    except AdapterError as exc:
        if "OpenCascade" not in exc.reason or not _models_seen(path, rel):
            raise
        # a model file crashed OpenCascade or overran the limit: the board without its models
        manifest = step_child.parse(path, rel, root, build_here_boxes, _warm)
        manifest.setdefault("warnings", []).insert(0, f"3D models left out, every part a box: {exc.reason}")
        _write_manifest(manifest_path, manifest)
        return manifest


def _models_seen(path: Path, rel: str) -> list[str]:
    return sorted({m.path for p in plan(path, rel).parts for m in p.models})


def _warm():
    from metaforge.adapters import pcb_glb  # noqa: F401 — imports OCP once, in the child


def build_here_boxes(path: Path, rel: str, root: Path | None) -> dict:
    """`build_here` with a box for every part: after a model file took the child down."""
    return build_here(path, rel, root, models=False)


def build_here(path: Path, rel: str, root: Path | None, models: bool = True) -> dict:
    """The child's side: plan, build, write the GLB, name its nodes, write the manifest."""
    from metaforge.adapters import pcb_glb
    from metaforge.adapters.kicad import BoardAdapter
    from metaforge.adapters.step import artifact_paths

    the_plan = plan(path, rel)
    if not models:
        for part in the_plan.parts:
            part.models = []
    glb_path, manifest_path = artifact_paths(root, rel)
    glb_path.parent.mkdir(parents=True, exist_ok=True)
    ignore = glb_path.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# derived from the design files by mf: never committed\n*\n")
    tmp = glb_path.with_name(glb_path.name + ".tmp")
    try:
        warnings = pcb_glb.write_glb(the_plan, tmp, rel)
        names = _name_nodes(tmp, the_plan, rel)
        os.replace(tmp, glb_path)
    finally:
        tmp.unlink(missing_ok=True)
    mesh_of = {v: k for k, v in names.items() if not k.endswith("/outline")}
    board_name = the_plan.board.split(":", 1)[1]
    manifest = {
        "artifact_id": f"Artifact:{safe_name(rel)}",
        "source": rel,
        "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "adapter": BoardAdapter.name,
        "adapter_version": BoardAdapter.version,
        "pcb_3d_version": VERSION,
        "glb_url": glb_path.relative_to(root).as_posix(),
        "mesh_to_node_map": names,
        "component_tree": {
            "id": the_plan.board, "name": Path(rel).stem, "mesh_name": board_name + "/outline",
            "node_type": "pcb",
            "children": [{"id": p.entity, "name": p.reference, "mesh_name": mesh_of.get(p.entity), "children": [],
                          "node_type": "component"} for p in the_plan.parts],
        },
        "models_seen": sorted({m.path for p in the_plan.parts for m in p.models}),
        "boxes": sorted(p.reference for p in the_plan.parts if not p.models),
        "last_updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if warnings:
        manifest["warnings"] = warnings
    _write_manifest(manifest_path, manifest)
    return manifest


def _write_manifest(manifest_path: Path, manifest: dict) -> None:
    tmp_manifest = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp_manifest, manifest_path)


def _name_nodes(glb_path: Path, the_plan: Plan, rel: str) -> dict[str, str]:
    """The writer named each node after its label (`pcb_glb` gave them entity paths); check it,
    give each mesh its node's name, and return mesh name → entity id."""
    from metaforge.adapters.glb import read_json, replace_json

    wanted = {p.entity.split(":", 1)[1]: p.entity for p in the_plan.parts}
    board_name = the_plan.board.split(":", 1)[1]
    wanted[board_name] = the_plan.board
    wanted[board_name + "/outline"] = the_plan.board
    data = glb_path.read_bytes()
    gltf = read_json(data)
    names: dict[str, str] = {}
    for node in gltf.get("nodes", []):
        name = node.get("name", "")
        if name not in wanted:
            raise AdapterError(rel, f"the GLB writer made a node the board does not have: {name!r}")
        names[name] = wanted[name]
        if "mesh" in node:
            gltf["meshes"][node["mesh"]]["name"] = name
    glb_path.write_bytes(replace_json(data, gltf))
    return names


def attach(result, path: Path, rel: str, root: Path) -> None:
    """Give a parsed board its 3D view: `result.extra["manifest"]`, or a warning saying why not."""
    try:
        result.extra["manifest"] = build(path, rel, Path(root))
    except (AdapterError, OSError) as exc:
        result.extra.setdefault("warnings", []).append(f"{rel}: no 3D view of the board: {exc}")
