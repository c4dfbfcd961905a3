"""The package boundaries, held by the code: layers import one way and no two modules need each other.

Every module under metaforge/ is parsed (not imported: a broken import must not hide an edge) and
every `import metaforge...` / `from metaforge... import ...` counts, at module level and inside
functions alike: a lazy import still ties the two modules together, it only moves the moment.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "metaforge"

# Lowest first. A module may import its own layer and the layers below it, never one above.
# Each entry is a module or a package prefix; the longest prefix that matches decides.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # What the twin is, knowing nothing of SQLite, files, git or MQTT: events and their
    # encoding, the error hierarchy, who may act, the pure graph fold, batch GC control.
    ("domain", ("metaforge", "metaforge.events", "metaforge.errors", "metaforge.batch",
                "metaforge.actors", "metaforge.graph", "metaforge.limits")),
    # Persistence: the event log, the graph index, the telemetry and knowledge stores.
    ("store", ("metaforge.store",)),
    # Files <-> entities: KiCad, BOM, STEP, GLB; the adapter contract and registry.
    ("adapters", ("metaforge.adapters",)),
    # The library: L1 thread (commands, queries, drift, device registry), L3 sync, L4 sim,
    # knowledge; repo.py opens the stores of one repository, templates.py finds starting points.
    ("services", ("metaforge.thread", "metaforge.sync", "metaforge.sim", "metaforge.knowledge",
                  "metaforge.repo", "metaforge.templates")),
    # The two faces: the command line and the HTTP/WebSocket server (and `python -m metaforge`).
    ("interface", ("metaforge.cli", "metaforge.serve", "metaforge.__main__")),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) for every metaforge import in the file, at any depth. `from pkg
    import sub` names the submodule when `sub` is one; importing a submodule is not counted as
    importing its package's __init__ (Python runs it, but it only gathers its own submodules)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "metaforge"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "metaforge":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.append((sub if sub in modules else mod, node.lineno))
    return out


def _graph() -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    modules = _modules()
    edges: dict[str, dict[str, int]] = {m: {} for m in modules}
    for name, path in modules.items():
        for target, line in _imports(name, path, modules):
            if target != name:
                edges[name].setdefault(target, line)
    return modules, edges


def layer_of(module: str) -> int | None:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".") and p != "metaforge") and len(p) > best:
                best, rank = len(p), i
    return rank


def _cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _one_cycle(comp: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """A path from the component's first module back to itself, inside the component."""
    inside, start = set(comp), comp[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges[v]):
            if w == start:
                return paths[v] + [start]
            if w in inside and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return comp


def _where(a: str, b: str, modules, edges) -> str:
    return f"{modules[a].relative_to(PACKAGE.parent)}:{edges[a][b]}"


def test_every_module_has_a_layer():
    modules, _ = _graph()
    assert [m for m in modules if layer_of(m) is None] == [], "add these modules to LAYERS"


def test_no_import_cycles():
    modules, edges = _graph()
    shown = []
    for comp in _cycles(edges):
        c = _one_cycle(comp, edges)
        shown.append(f"{len(comp)} modules tied together ({', '.join(comp)}), e.g. " + " -> ".join(c)
                     + "\n    " + ", ".join(_where(a, b, modules, edges) for a, b in zip(c, c[1:])))
    assert not shown, "import cycles:\n  " + "\n  ".join(shown)


def test_layers_import_downward_only():
    modules, edges = _graph()
    wrong = []
    for a, targets in edges.items():
        for b in targets:
            la, lb = layer_of(a), layer_of(b)
            if la is not None and lb is not None and lb > la:
                wrong.append(f"{_where(a, b, modules, edges)}: {a} ({LAYERS[la][0]}) imports {b} ({LAYERS[lb][0]})")
    assert not wrong, "imports from a lower layer to a higher one:\n  " + "\n  ".join(sorted(wrong))


def test_the_checker_sees_lazy_imports_and_cycles():
    """The checks above would pass vacuously if the parser missed function-level imports."""
    edges = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _one_cycle(["a", "b", "c"], edges) == ["a", "b", "c", "a"]
    _, real = _graph()
    assert "metaforge.store.log" in real["metaforge.store.index"]
    lazy = [m for m, path in _modules().items()
            if any(isinstance(n, ast.FunctionDef) and any(isinstance(i, ast.ImportFrom) and (i.module or "").startswith("metaforge")
                                                              for i in ast.walk(n))
                   for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))]
    assert lazy and all(real[m] for m in lazy)
    assert layer_of("metaforge") == 0 and layer_of("metaforge.cli.app") == len(LAYERS) - 1


def test_no_sql_outside_store():
    """Callers outside metaforge/store/ read and write through named methods: no SQL, no connection."""
    pattern = re.compile(r"\.(execute|executemany|executescript)\(|\.conn\b")
    found = []
    for path in sorted((ROOT / "metaforge").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("metaforge/store/"):
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            if pattern.search(line):
                found.append(f"{rel}:{lineno}: {line.strip()}")
    assert found == []
