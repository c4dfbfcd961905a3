"""STEP (.step/.stp) → DesignElements: the assembly tree, plus a GLB and its ModelManifest.

Each place in the tree is one DesignElement, `DesignElement:<file stem>/<path>`; a part used
four times is four elements (`M3_screw`, `M3_screw#2`...). The GLB for viewers and its
manifest (mesh name → entity id, the component tree) go to `.metaforge/artifacts/`, a derived
cache git ignores. The graph does not own geometry: projection gives the file back unchanged.

A footprint's 3D model is not an element of the product: a STEP file that a KiCad board's
footprint uses (`(model "${KIPRJMOD}/3dmodels/X.step")`, or a copy of a library model of that
name), or that sits in a 3D-model library folder (`*.3dshapes`, `3dmodels`, `packages3d`...),
is one `Artifact:3d/<path>` of kind "3d-model", DESCRIBED_BY-linked from the components that
use it. Any other STEP file (an enclosure, an assembly) is the product's own tree.

OpenCascade (OCP, a dependency of mf) is imported in a child process (`step_child`) only when a
STEP file is read; the header is checked before.
"""

from __future__ import annotations

import functools

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from metaforge.adapters.base import (Adapter, AdapterError, Parsed, ParseResult, id_segment, model_artifact_id,
                                     safe_name)

ARTIFACTS = Path(".metaforge") / "artifacts"
INSTALL_HINT = "cadquery-ocp-novtk, a dependency of mf, is missing: reinstall mf"


MODEL_FOLDERS = {"3dmodels", "3d_models", "3d-models", "3dshapes", "3d_shapes", "packages3d", "models3d", "3d"}
_BOARD_SEARCH_UP = 4  # folders above a model where the board using it may be


class StepAdapter(Adapter):
    name = "step"
    version = "2"  # 2: footprints' 3D models are artifacts, not product elements
    patterns = ("*.step", "*.stp")

    def parse(self, path: Path, rel: str, root: Path | None = None) -> ParseResult:
        """`root` is the repository holding `.metaforge/`; by default the nearest one above the
        file. Outside any repository the tree is read but no GLB is written. The header is
        checked here; OpenCascade reads the rest in a child process (`step_child`)."""
        from metaforge.adapters import step_child

        check_header(path, rel)
        users = model_users(path, rel, root)
        result = step_child.parse(path, rel, root, parse_here, functools.partial(_ocp_modules, rel))
        if users is not None:
            result = _as_model(result, rel, users)
        return result

    def project(self, path: Path, rel: str, entities: dict[str, dict[str, Any]]) -> bytes:
        return path.read_bytes()


def check_header(path: Path, rel: str) -> None:
    """Refuse what is not a STEP text file before OpenCascade is imported (seconds) to say so."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as exc:
        raise AdapterError(rel, f"cannot read: {exc.strerror or exc}") from None
    if not head.strip():
        raise AdapterError(rel, "empty file, not a STEP file")
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"ISO-10303-21"):
        raise AdapterError(rel, "not a STEP file: it does not start with ISO-10303-21;",
                           hint="STEP AP203/AP214/AP242 text files start so; a compressed .stpZ must be unpacked")


def model_users(path: Path, rel: str, root: Path | None) -> list[str] | None:
    """The components whose footprints use this file as their 3D model ([] for a file in a model
    library folder that no board here uses), or None: the file is a part of the product."""
    from metaforge.adapters.kicad.board import component_models

    top = Path(root).resolve() if root else find_root(path)
    me, name = str(path.resolve()), path.name.lower()
    users: list[str] = []
    folder = path.resolve().parent
    for _ in range(_BOARD_SEARCH_UP):
        for board in sorted(folder.glob("*.kicad_pcb")):
            try:
                models = component_models(board)
            except OSError:
                continue
            users += models.get(me) or models.get(name) or models.get("stem:" + path.stem.lower()) or []
        if top is None or folder == top or folder.parent == folder:
            break
        folder = folder.parent
    in_library = any(part.lower() in MODEL_FOLDERS or part.lower().endswith(".3dshapes")
                     for part in Path(rel).parts[:-1])
    return sorted(set(users)) if users or in_library else None


model_id = model_artifact_id


def _as_model(result: ParseResult, rel: str, users: list[str]) -> ParseResult:
    """A footprint's 3D model: one Artifact (the GLB stays, for the board's 3D view)."""
    top = result.entities[0].props if result.entities else {}
    props = {"path": rel, "format": "step", "adapter": StepAdapter.name, "kind": "3d-model"}
    if top.get("description"):
        props["description"] = top["description"]
    extra = dict(result.extra, component_model=True, links_in=[(u, "DESCRIBED_BY", model_id(rel)) for u in users])
    return ParseResult(rel, [Parsed(model_id(rel), props, "file", 1)], extra)


def parse_here(path: Path, rel: str, root: Path | None = None) -> ParseResult:
    """The parse itself, in this process (the child's side of `StepAdapter.parse`)."""
    step_read, step_glb = _ocp_modules(rel)
    model = step_read.read(path, rel)
    stem = id_segment(Path(rel).stem)
    tree = _entity_tree(model.roots, stem)
    entities = [parsed for parsed, _node in _flatten(tree)]
    warnings = [f"{rel}: OCCT: {line}" for line in step_read.reader_complaints(model.log)[:5]]
    manifest = None
    root = root or find_root(path)
    if root is None:
        warnings.append(f"{rel}: not inside an mf repository, no GLB written")
    else:
        try:  # the GLB is a viewer's cache: without it the tree still counts
            manifest = _artifacts(model, tree, path, rel, Path(root), step_glb)
        except (AdapterError, OSError) as exc:
            warnings.append(f"{rel}: no GLB written: {exc}")
    extra: dict[str, Any] = {"manifest": manifest}
    if warnings:
        extra["warnings"] = warnings
    return ParseResult(rel, entities, extra)


def _ocp_modules(rel: str):
    try:
        from metaforge.adapters import step_glb, step_read
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "OCP":
            raise
        raise AdapterError(rel, "reading STEP files needs OpenCascade (the OCP package), which is not installed",
                           hint=INSTALL_HINT) from None
    return step_read, step_glb


def find_root(path: Path) -> Path | None:
    for candidate in Path(path).resolve().parents:
        if (candidate / ".metaforge").is_dir():
            return candidate
    return None


# ---- entities -------------------------------------------------------------------------------------

class _Entry:
    """An entity and the tree node it came from (None for the file's own root of several shapes)."""

    def __init__(self, parsed: Parsed, node, children: list["_Entry"]):
        self.parsed, self.node, self.children = parsed, node, children


def _entity_tree(roots: list, stem: str) -> _Entry:
    if len(roots) == 1:
        return _entry(roots[0], f"DesignElement:{stem}")
    children = [_entry(node, f"DesignElement:{stem}/{node.segment}") for node in roots]
    top = Parsed(id=f"DesignElement:{stem}", props={"kind": "assembly", "description": stem}, region="node:" + stem,
                 links=[("HAS_ELEMENT", c.parsed.id) for c in children])
    return _Entry(top, None, children)


def _entry(node, eid: str) -> _Entry:
    children = [_entry(child, f"{eid}/{child.segment}") for child in node.children]
    parsed = Parsed(id=eid, props=_props(node), region="node:" + eid.split(":", 1)[1],
                    links=[("HAS_ELEMENT", c.parsed.id) for c in children])
    return _Entry(parsed, node, children)


def _props(node) -> dict[str, Any]:
    props: dict[str, Any] = {"kind": node.kind, "description": node.name}
    if node.size:
        for key, value in zip(("width", "depth", "height"), node.size):  # x, y, z: Z is up in CAD
            props[key] = {"value": value, "unit": "mm"}
    if node.material:
        props["material"] = node.material
    fields = {}
    if node.product and node.product != node.name:
        fields["product"] = node.product
    if node.color:
        fields["color"] = node.color
    if fields:
        props["fields"] = fields
    return props


def _flatten(entry: _Entry):
    yield entry.parsed, entry.node
    for child in entry.children:
        yield from _flatten(child)


# ---- GLB and manifest -------------------------------------------------------------------------------

def artifact_paths(root: Path, rel: str) -> tuple[Path, Path]:
    base = rel.replace("/", "__")
    folder = root / ARTIFACTS
    return folder / f"{base}.glb", folder / f"{base}.manifest.json"


def _artifacts(model, tree: _Entry, path: Path, rel: str, root: Path, step_glb) -> dict:
    glb_path, manifest_path = artifact_paths(root, rel)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    cached = _cached_manifest(manifest_path, glb_path, sha, tree)
    if cached:
        return cached
    glb_path.parent.mkdir(parents=True, exist_ok=True)
    ignore = glb_path.parent / ".gitignore"
    if not ignore.exists():  # repositories made before artifacts/ was in .metaforge/.gitignore
        ignore.write_text("# derived from the STEP files by mf: never committed\n*\n")
    tmp = glb_path.with_name(glb_path.name + ".tmp")
    try:
        step_glb.write_glb(model, tmp, rel)
        mesh_map = _name_glb_nodes(tmp, tree, rel)
        os.replace(tmp, glb_path)
    finally:
        tmp.unlink(missing_ok=True)
    manifest = {
        "artifact_id": f"Artifact:{safe_name(rel)}",
        "source": rel,
        "source_sha256": sha,
        "adapter": StepAdapter.name,
        "adapter_version": StepAdapter.version,
        "glb_url": glb_path.relative_to(root).as_posix(),
        "mesh_to_node_map": mesh_map,
        "component_tree": _part_node(tree, {v: k for k, v in mesh_map.items()}),
        "last_updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp_manifest = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp_manifest, manifest_path)
    return manifest


def _cached_manifest(manifest_path: Path, glb_path: Path, sha: str, tree: _Entry) -> dict | None:
    """The manifest of an unchanged file, when its GLB is still there: no second export."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if (manifest.get("source_sha256") != sha or manifest.get("adapter_version") != StepAdapter.version
            or not glb_path.is_file()):
        return None
    ids = {parsed.id for parsed, _ in _flatten(tree)}
    return manifest if set(manifest.get("mesh_to_node_map", {}).values()) <= ids else None


def _name_glb_nodes(glb_path: Path, tree: _Entry, rel: str) -> dict[str, str]:
    """Rename each glTF node to its entity's path (unique in the file) and return name → id.

    The writer named nodes after the segments; a node's path of names from the scene root is
    the path of its entity. A mesh used by one node only takes that node's name too."""
    from metaforge.adapters.glb import node_paths, read_json, replace_json

    by_path: dict[tuple[str, ...], str] = {}
    _walk_paths(tree, (), by_path)
    data = glb_path.read_bytes()
    gltf = read_json(data)
    names: dict[str, str] = {}
    mesh_users: dict[int, list[int]] = {}
    for index, path in node_paths(gltf).items():
        eid = by_path.get(path)
        if eid is None:
            raise AdapterError(rel, f"the GLB writer made a node the assembly tree does not have: {'/'.join(path)}")
        name = eid.split(":", 1)[1]
        gltf["nodes"][index]["name"] = name
        names[name] = eid
        if "mesh" in gltf["nodes"][index]:
            mesh_users.setdefault(gltf["nodes"][index]["mesh"], []).append(index)
    for mesh, users in mesh_users.items():
        if len(users) == 1:
            gltf["meshes"][mesh]["name"] = gltf["nodes"][users[0]]["name"]
    glb_path.write_bytes(replace_json(data, gltf))
    return names


def _walk_paths(entry: _Entry, prefix: tuple[str, ...], out: dict) -> None:
    path = prefix + (entry.node.segment,) if entry.node is not None else prefix
    if entry.node is not None:
        out[path] = entry.parsed.id
    for child in entry.children:
        _walk_paths(child, path, out)


def _part_node(entry: _Entry, mesh_of: dict[str, str]) -> dict:
    """The manifest's PartNode: id, name, mesh_name (its GLB node), children, node_type."""
    return {
        "id": entry.parsed.id,
        "name": entry.parsed.props.get("description", ""),
        "mesh_name": mesh_of.get(entry.parsed.id),
        "children": [_part_node(c, mesh_of) for c in entry.children],
        "node_type": entry.parsed.props["kind"],
    }
