"""The 3D models the adapters left in `.metaforge/artifacts/`: which one a project shows, and where
each part sits in it (for labels a viewer pins on a part).

A manifest is `<source path with / as __>.manifest.json` beside its GLB (see adapters/step.py).
A project is a TwinModel: its model is the STEP file of an element it holds (HAS_ELEMENT, at any
depth) whose `artifact_path` is that file, or whose id is the root the STEP adapter made. A
manifest can also be asked for by its own key (`mech__enclosure.step`), its `artifact_id` or its
source path.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from metaforge.errors import NotFound

ARTIFACTS = Path(".metaforge") / "artifacts"
_SUFFIX = ".manifest.json"
GLB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.#@+\-]*\.glb$")


def artifacts_dir(root: Path) -> Path:
    return root / ARTIFACTS


def inside_artifacts(root: Path, name: str) -> str | None:
    """`.metaforge/artifacts/NAME` if it is a regular file that, links followed, is still in that
    folder of this repository (the folder itself no link out either); else None."""
    folder = artifacts_dir(root)
    top = os.path.realpath(root)
    real_folder = os.path.realpath(folder)
    path = os.path.realpath(folder / name)
    if os.path.commonpath([top, real_folder]) != top or os.path.dirname(path) != real_folder:
        return None
    return path if os.path.isfile(path) else None


def glb_of(root: Path, manifest: dict) -> str | None:
    """The GLB file a manifest names, if it is one of this repository's artifacts (see inside_artifacts)."""
    folder, _, name = (manifest.get("glb_url") or "").rpartition("/")
    if folder != ARTIFACTS.as_posix() or not GLB_NAME.match(name):
        return None
    return inside_artifacts(root, name)


def list_manifests(root: Path) -> dict[str, dict]:
    """key → manifest, for every readable manifest whose GLB is there."""
    folder = artifacts_dir(root)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(_SUFFIX))
    except FileNotFoundError:
        return {}
    out = {}
    for name in names:
        path = inside_artifacts(root, name)
        if path is None:  # a symlink out of the repository (or not a file): no manifest
            continue
        try:
            manifest = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and isinstance(manifest.get("glb_url"), str):
            out[name[: -len(_SUFFIX)]] = manifest
    return out


def projects(repo) -> list[dict]:
    """Every TwinModel with the keys of its models, then every manifest no TwinModel claims."""
    manifests = list_manifests(repo.root)
    out, claimed = [], set()
    for model_id in repo.index.ids_of_type("TwinModel"):
        keys = _keys_of_model(repo, model_id, manifests)
        claimed.update(keys)
        out.append({"project_id": model_id.split(":", 1)[1], "twin_model": model_id, "models": keys})
    for key in manifests:
        if key not in claimed:
            out.append({"project_id": key, "twin_model": None, "models": [key]})
    return out


def manifest_for(repo, project_id: str) -> tuple[str, dict]:
    """(key, manifest) of a project: a TwinModel (name or id), a manifest key, artifact id or source."""
    manifests = list_manifests(repo.root)
    for key, manifest in manifests.items():
        if project_id in (key, manifest.get("artifact_id"), manifest.get("source")):
            return key, manifest
    model_id = project_id if project_id.startswith("TwinModel:") else f"TwinModel:{project_id}"
    if not repo.index.exists(model_id):
        raise NotFound(f"unknown project {project_id}",
                       "a project is a TwinModel, or a model in .metaforge/artifacts/ (GET /api/v1/projects)")
    keys = _keys_of_model(repo, model_id, manifests)
    if not keys:
        raise NotFound(f"{model_id} has no 3D model yet",
                       "parse its STEP file (mf ingest PATH) and give the element holding it artifact_path=PATH")
    return keys[0], manifests[keys[0]]


def _keys_of_model(repo, model_id: str, manifests: dict[str, dict]) -> list[str]:
    by_source = {m.get("source"): k for k, m in manifests.items()}
    by_root = {(m.get("component_tree") or {}).get("id"): k for k, m in manifests.items()}
    found, seen, stack = [], {model_id}, [model_id]
    while stack:
        here = stack.pop()
        for dst, path in repo.index.targets_with_prop(here, "HAS_ELEMENT", "artifact_path"):
            key = by_source.get(path) or by_root.get(dst)
            if key and key not in found:
                found.append(key)
            elif dst not in seen:  # the elements under a model's root are the model's own parts
                seen.add(dst)
                stack.append(dst)
    return sorted(found)


_boxes: dict[tuple[str, int, int], dict] = {}


def part_boxes(glb: Path | str) -> dict[str, dict]:
    """mesh name → {"center", "min", "max"} in the GLB's scene coordinates (cached per file version)."""
    from metaforge.adapters.glb import NotGlb, node_boxes, read_json

    glb = Path(glb)
    st = glb.stat()
    key = (str(glb), st.st_mtime_ns, st.st_size)
    if key not in _boxes:
        try:
            boxes = node_boxes(read_json(glb.read_bytes()))
        except (NotGlb, ValueError, KeyError, IndexError, TypeError):
            boxes = {}
        if len(_boxes) > 8:
            _boxes.clear()
        _boxes[key] = {name: {"center": [round((a + b) / 2, 6) for a, b in zip(lo, hi)],
                              "min": [round(v, 6) for v in lo], "max": [round(v, 6) for v in hi]}
                       for name, (lo, hi) in boxes.items()}
    return _boxes[key]
