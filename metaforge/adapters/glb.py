"""The JSON chunk of a binary glTF (GLB) file, read and replaced without touching its geometry."""

from __future__ import annotations

import json
import struct

_MAGIC, _JSON = b"glTF", b"JSON"


class NotGlb(ValueError):
    pass


def read_json(data: bytes) -> dict:
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != _MAGIC or version != 2 or length != len(data):
        raise NotGlb("not a glTF 2.0 binary file")
    size, kind = struct.unpack_from("<I4s", data, 12)
    if kind != _JSON:
        raise NotGlb("the first chunk of a GLB file must be JSON")
    return json.loads(data[20:20 + size])


def replace_json(data: bytes, gltf: dict) -> bytes:
    """The same GLB with another JSON chunk (padded with spaces to 4 bytes, as the spec asks)."""
    read_json(data)
    old_size = struct.unpack_from("<I", data, 12)[0]
    rest = data[20 + old_size:]
    chunk = json.dumps(gltf, separators=(",", ":"), ensure_ascii=False).encode()
    chunk += b" " * (-len(chunk) % 4)
    body = struct.pack("<I4s", len(chunk), _JSON) + chunk + rest
    return struct.pack("<4sII", _MAGIC, 2, 12 + len(body)) + body


def node_paths(gltf: dict) -> dict[int, tuple[str, ...]]:
    """Each node's path of names from its scene root: {node index: ("robot", "wheel", "hub")}."""
    nodes = gltf.get("nodes", [])
    scene = gltf.get("scenes", [{}])[gltf.get("scene", 0)]
    paths: dict[int, tuple[str, ...]] = {}
    stack = [(i, ()) for i in reversed(scene.get("nodes", []))]
    while stack:
        i, parent = stack.pop()
        path = parent + (nodes[i].get("name", ""),)
        paths[i] = path
        stack.extend((c, path) for c in reversed(nodes[i].get("children", [])))
    return paths


def node_boxes(gltf: dict) -> dict[str, tuple[list[float], list[float]]]:
    """Each named node's axis-aligned bounding box in scene coordinates, its subtree included:
    {name: ([min x, y, z], [max x, y, z])}, from the POSITION accessors' min/max (no geometry read)."""
    nodes = gltf.get("nodes", [])
    scene = gltf.get("scenes", [{}])[gltf.get("scene", 0)]
    boxes: dict[int, tuple[list[float], list[float]]] = {}

    def visit(i: int, parent: list[list[float]]) -> tuple[list[float], list[float]] | None:
        node = nodes[i]
        world = _multiply(parent, _local_matrix(node))
        box = _mesh_box(gltf, node.get("mesh"), world)
        for child in node.get("children", []):
            box = _union(box, visit(child, world))
        if box is not None:
            boxes[i] = box
        return box

    for root in scene.get("nodes", []):
        visit(root, _IDENTITY)
    return {nodes[i]["name"]: box for i, box in boxes.items() if nodes[i].get("name")}


_IDENTITY = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


def _local_matrix(node: dict) -> list[list[float]]:
    if "matrix" in node:  # column-major, as glTF stores it
        m = node["matrix"]
        return [[m[c * 4 + r] for c in range(4)] for r in range(4)]
    tx, ty, tz = node.get("translation", (0.0, 0.0, 0.0))
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    sx, sy, sz = node.get("scale", (1.0, 1.0, 1.0))
    rot = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
           [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
           [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    return [[rot[r][0] * sx, rot[r][1] * sy, rot[r][2] * sz, (tx, ty, tz)[r]] for r in range(3)] + [[0.0, 0.0, 0.0, 1.0]]


def _multiply(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    return [[sum(a[r][k] * b[k][c] for k in range(4)) for c in range(4)] for r in range(4)]


def _mesh_box(gltf: dict, mesh: int | None, world: list[list[float]]):
    if mesh is None:
        return None
    box = None
    for prim in gltf["meshes"][mesh].get("primitives", []):
        acc = gltf["accessors"][prim["attributes"]["POSITION"]] if "POSITION" in prim.get("attributes", {}) else None
        if not acc or "min" not in acc or "max" not in acc:
            continue
        lo, hi = acc["min"], acc["max"]
        for corner in ((x, y, z) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])):
            p = [sum(world[r][k] * corner[k] for k in range(3)) + world[r][3] for r in range(3)]
            box = _union(box, (p, p))
    return box


def _union(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return [min(x, y) for x, y in zip(a[0], b[0])], [max(x, y) for x, y in zip(a[1], b[1])]
