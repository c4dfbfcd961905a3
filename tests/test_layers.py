"""The package keeps its layers: SQL and SQLite connections live in metaforge/store/ only.

Callers outside store/ read the twin through named methods of the graph index, the telemetry
store and the knowledge store (entities, relationships, properties, aggregates, events), never
through a connection or SQL text of their own.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "metaforge"

# The files already held to it. Other files are being converted on other branches at the same
# time: once every branch of issue 15 is merged, the lead widens this to the whole package
# (every .py under metaforge/ outside metaforge/store/) and deletes the list.
SQL_FREE = [
    "thread/queries.py", "thread/verify.py", "thread/template_save.py", "thread/diff.py",
    "thread/constraints/engine.py", "knowledge/chunks.py", "knowledge/index.py", "cli/admin.py", "cli/drift.py",
]

_SQL_CALLS = {"execute", "executemany", "executescript"}
_CONNECTION_WORDS = ("conn", "cur", "db", "sqlite")
_SQLITE_MODULES = ("sqlite3", "pysqlite3", "metaforge.store.sqlite")


def _is_text(node: ast.AST) -> bool:
    """SQL written here: a string, an f-string, or text joined to one."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.BinOp) and (_is_text(node.left) or _is_text(node.right))


def _sql_call(node: ast.Call) -> bool:
    """`x.execute(...)` on a connection or cursor: with SQL text, or on a receiver named like one
    (`run.execute(reducer)` in sim/ is a simulation, not SQL)."""
    func = node.func
    if not (isinstance(func, ast.Attribute) and func.attr in _SQL_CALLS):
        return False
    receiver = ast.unparse(func.value).lower()
    return bool(node.args and _is_text(node.args[0])) or any(w in receiver for w in _CONNECTION_WORDS)


def offences(path: Path, root: Path = PACKAGE) -> list[str]:
    """Where a module writes SQL or touches a SQLite connection: `file:line what`, in line order."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("conn", "_conn"):
            found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.Call) and _sql_call(node):
            found.append((node.lineno, f".{node.func.attr}("))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.lineno, f"import {n}") for n in names if n in _SQLITE_MODULES]
    rel = path.relative_to(root).as_posix()
    return [f"{rel}:{line} {what}" for line, what in sorted(found)]


def outside_store() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "store" not in p.relative_to(PACKAGE).parts[:1])


def test_no_sql_outside_store():
    """No file in SQL_FREE writes SQL or touches a connection; every offence is listed at once."""
    found = [o for rel in SQL_FREE for o in offences(PACKAGE / rel)]
    assert not found, "SQL outside metaforge/store/ (use a named method of the index):\n" + "\n".join(found)


def test_the_check_sees_sql_and_connections(tmp_path):
    """The check itself: it finds each way of reaching SQLite, and leaves other `execute`s alone."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from metaforge.store import sqlite\n"
        "rows = repo.index.conn.execute('SELECT 1')\n"
        "cur.executemany(sql, rows)\n"
        "db.executescript(script)\n"
        "x.execute(f'DELETE FROM {table}')\n"
        "traces = run.execute(reducer)\n"
        "execute(repo, changes)\n")
    assert offences(sample, tmp_path) == ["sample.py:1 import metaforge.store.sqlite", "sample.py:2 .conn",
                                "sample.py:2 .execute(", "sample.py:3 .executemany(", "sample.py:4 .executescript(",
                                "sample.py:5 .execute("]


def test_sql_free_names_real_files():
    """A file renamed or moved must not drop out of the check unnoticed."""
    assert all((PACKAGE / rel).is_file() for rel in SQL_FREE)
    assert set(SQL_FREE) <= {p.relative_to(PACKAGE).as_posix() for p in outside_store()}
