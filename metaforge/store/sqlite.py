"""The one SQLite binding of `mf`: one that can load extensions (sqlite-vec needs it).

The stock `sqlite3` module on these machines has no `enable_load_extension`; pysqlite3-binary
has, and sqlite-utils picks it up by itself. Every store opens its database here.
"""

from __future__ import annotations

try:
    from pysqlite3 import dbapi2 as sqlite3
except ImportError:  # platforms without a pysqlite3 wheel; extensions may be unavailable there
    import sqlite3  # type: ignore[no-redef]

Error = sqlite3.Error
DatabaseError = sqlite3.DatabaseError
OperationalError = sqlite3.OperationalError


def connect(path: str, *, readonly: bool = False) -> "sqlite3.Connection":
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn
