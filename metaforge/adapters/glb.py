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
