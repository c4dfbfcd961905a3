"""The graph index: `.metaforge/index.db`, a projection of the event log into SQLite.

It holds nodes (type, properties, version, created/updated at/by), typed edges, one row per
event (for `mf log`, pointing back into the log), and where in the log it stands. Rows and
position are written in one transaction, so a replay is harmless and any command can catch
up or rebuild it. It is never merged or committed: delete it and the next command rebuilds it.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import orjson

from metaforge.batch import no_gc
from metaforge.store import graph_query, sqlite
from metaforge.store.graph_query import Screen
from metaforge.errors import STORAGE_HINTS, LogCorrupt, StorageError
from metaforge.store.log import EventLog, Position, Record
from metaforge.graph import Edge, EdgeInfo, EmptyBase, GraphState, Node

MFDIR_NAME = ".metaforge"
SCHEMA_VERSION = "6"
_RACY_NS = 50_000_000  # a write within 50 ms of a fingerprint may share its mtime (coarse clock ticks)
_TABLES = {
    "meta": "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "nodes": """CREATE TABLE IF NOT EXISTS nodes (
  id TEXT PRIMARY KEY, type TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, created_by TEXT NOT NULL, updated_by TEXT NOT NULL,
  created_seq INTEGER NOT NULL, updated_seq INTEGER NOT NULL, deleted INTEGER NOT NULL,
  props BLOB NOT NULL  -- JSONB: SQLite reads a property without parsing the whole object (3x faster)
) WITHOUT ROWID""",
    "edges": """CREATE TABLE IF NOT EXISTS edges (
  src TEXT NOT NULL, rel TEXT NOT NULL, dst TEXT NOT NULL,
  created_at TEXT NOT NULL, created_by TEXT NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY (src, rel, dst)
) WITHOUT ROWID""",
    "proposals": """CREATE TABLE IF NOT EXISTS proposals (
  id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT NOT NULL, proposed_by TEXT NOT NULL,
  proposed_at TEXT NOT NULL, decided_by TEXT, decided_at TEXT, decision TEXT, msg TEXT, payload TEXT NOT NULL
) WITHOUT ROWID""",
    # sums and counts the constraint engine computed, each true at seq: a command moves them by
    # what it touched instead of scanning thousands of rows again
    "aggregates": """CREATE TABLE IF NOT EXISTS aggregates (
  key TEXT PRIMARY KEY, seq INTEGER NOT NULL, count INTEGER NOT NULL, total REAL NOT NULL, unit TEXT
) WITHOUT ROWID""",
    # the files the graph was read from or written to (artifact.mapped events): the last state of
    # each, and where in it each entity lives
    "artifacts": """CREATE TABLE IF NOT EXISTS artifacts (
  path TEXT PRIMARY KEY, adapter TEXT NOT NULL, adapter_version TEXT NOT NULL, sha256 TEXT NOT NULL,
  seq INTEGER NOT NULL, how TEXT NOT NULL
) WITHOUT ROWID""",
    "artifact_map": """CREATE TABLE IF NOT EXISTS artifact_map (
  path TEXT NOT NULL, entity TEXT NOT NULL, region TEXT NOT NULL, line INTEGER,
  PRIMARY KEY (path, entity, region)
) WITHOUT ROWID""",
    # which commit holds the files of which semantic version (state.linked events)
    "state_links": """CREATE TABLE IF NOT EXISTS state_links (
  seq INTEGER PRIMARY KEY, semantic_version INTEGER NOT NULL, git_commit TEXT NOT NULL,
  projected_at TEXT NOT NULL, projected_by TEXT NOT NULL, artifacts TEXT NOT NULL
)""",
    # the open drift of each file (drift.detected, until its drift.resolved): what `mf drift watch`
    # and the reconciler last recorded, so they append only what changed
    "drifts": """CREATE TABLE IF NOT EXISTS drifts (
  path TEXT PRIMARY KEY, seq INTEGER NOT NULL, fingerprint TEXT NOT NULL, payload TEXT NOT NULL
) WITHOUT ROWID""",
    "events": """CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY, type TEXT NOT NULL, entity TEXT NOT NULL, version INTEGER NOT NULL,
  ts TEXT NOT NULL, actor TEXT NOT NULL, segment INTEGER NOT NULL, offset INTEGER NOT NULL
)""",
}
# Secondary indexes are made after a rebuild's bulk insert: building them once is 2x faster
# than keeping them up to date row by row.
_INDEXES = [
    "CREATE INDEX IF NOT EXISTS nodes_by_type ON nodes (type, deleted, id)",
    "CREATE INDEX IF NOT EXISTS edges_by_dst ON edges (dst, rel, src)",
    "CREATE INDEX IF NOT EXISTS events_by_entity ON events (entity, seq)",
    "CREATE INDEX IF NOT EXISTS artifact_map_by_entity ON artifact_map (entity, path)",
    "CREATE INDEX IF NOT EXISTS state_links_by_commit ON state_links (git_commit)",
]
_CHUNK = 50_000
_NODE_COLUMNS = ("id, type, version, created_at, updated_at, created_by, updated_by, created_seq, updated_seq, "
                 "json(props), deleted")

Progress = Callable[[int, int], None]  # (events done, events in all)
_ARTIFACT_COLUMNS = "path, adapter, adapter_version, sha256, seq, how"
_PROPOSAL_COLUMNS = "id, seq, status, proposed_by, proposed_at, decided_by, decided_at, decision, msg"


class ArtifactRow(NamedTuple):
    """A file's last mapping: what was read from or written to it, by which adapter, at which seq."""

    path: str
    adapter: str
    adapter_version: str
    sha256: str
    seq: int
    how: str  # ingest | project | commit | removed


class SyncLayers(NamedTuple):
    """What a device's sync policy is made of, as stored: its own settings and sources, and its fleet
    group's (decoded JSON; None where unset, `group` None when it is MEMBER_OF no live group)."""

    device: str  # DeviceInstance id
    policy: dict | None
    sources: list | None
    group: str | None  # FleetGroup id
    group_policy: dict | None
    group_sources: list | None


# one pass over the fleet: `effective()` answers for thousands of devices at each ingest start
_SYNC_LAYERS_SQL = """
SELECT d.id, json(d.props -> '$.state.sync_policy'), json(d.props -> '$.telemetry_sources'), g.id,
       json(g.props -> '$.sync_policy'), json(g.props -> '$.telemetry_sources')
FROM nodes d
LEFT JOIN edges e ON e.src = d.id AND e.rel = 'MEMBER_OF'
LEFT JOIN nodes g ON g.id = e.dst AND g.deleted = 0
WHERE d.type = 'DeviceInstance' AND d.deleted = 0
"""


class GraphIndex:
    """The index of one repository. It is disposable: a file SQLite cannot read (a damaged page, not
    a database, another schema) is moved aside to `index.db.damaged` and built again from the log;
    what was done is kept in `notices` for the command to say once."""

    def __init__(self, path: Path):
        self.path = path
        self._conn = None
        self.notices: list[str] = []

    @property
    def conn(self):
        if self._conn is None:
            with os_errors(self.path):
                self._conn = self._open()
        return self._conn

    def _open(self):
        existed = self.path.exists()
        short = existed and _truncated(self.path)
        if short:
            self._quarantine(short)
            existed = False
        try:
            conn = sqlite.connect(str(self.path))
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -131072")  # up to 128 MB, used only by big batches
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() \
                if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() else None
        except sqlite.DatabaseError as exc:
            if not is_damage(exc) or not existed:
                raise
            self._quarantine(str(exc))
            return self._open()
        if row is None:
            if existed and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                conn.close()
                self._quarantine("not an mf index")
                return self._open()
            for sql in [*_TABLES.values(), *_INDEXES]:
                conn.execute(sql)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            return conn
        if row[0] != SCHEMA_VERSION:
            conn.close()
            self._quarantine(f"schema {row[0]}; this mf reads {SCHEMA_VERSION}", "is from another version of mf")
            return self._open()
        return conn

    def _quarantine(self, why: str, what: str = "could not be read") -> None:
        """Move the file (and its WAL) aside to index.db.damaged, replacing an older one, and say so."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(f"{self.path}{suffix}", f"{self.path}.damaged{suffix}")
            except FileNotFoundError:
                try:
                    os.unlink(f"{self.path}.damaged{suffix}")
                except FileNotFoundError:
                    pass
        self.notices.append(f"{MFDIR_NAME}/{self.path.name} {what} ({why}): moved aside to "
                            f"{self.path.name}.damaged, rebuilding it from the log")

    def damage(self) -> str | None:
        """What is wrong with the file, by SQLite's quick_check and the tables it must hold (None: sound)."""
        if not self.path.exists():
            return None
        self.close()
        short = _truncated(self.path)
        if short:
            return short
        try:
            conn = sqlite.connect(str(self.path))
            try:
                found = conn.execute("PRAGMA quick_check").fetchall()
                names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            finally:
                conn.close()
        except sqlite.DatabaseError as exc:
            return str(exc) if is_damage(exc) else None
        if found != [("ok",)]:
            return "; ".join(str(r[0]) for r in found[:2])
        missing = sorted(set(_TABLES) - names)
        return f"no table {missing[0]}" if missing else None

    def recover(self, log: EventLog) -> str | None:
        """If the file is damaged, move it aside and rebuild from the log; the notice, or None if sound."""
        if self.damage() is None:
            return None
        with log.lock():
            why = self.damage()  # again: another process may have rebuilt it while this one waited
            if why is None:
                return None
            self._quarantine(why)
            self.rebuild(log)
        return self.notices.pop()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- position ------------------------------------------------------------------------

    def position(self) -> Position:
        rows = dict(self.conn.execute("SELECT key, value FROM meta WHERE key LIKE 'pos.%'"))
        if not rows:
            return Position()
        return Position(int(rows["pos.seq"]), rows["pos.hash"], int(rows["pos.segment"]),
                        int(rows["pos.size"]), int(rows["pos.mtime_ns"]))

    def fingerprint(self) -> tuple[list | None, int]:
        """The log's fingerprint as it was when this index last agreed with it, and when it was taken."""
        rows = dict(self.conn.execute("SELECT key, value FROM meta WHERE key IN ('pos.fp', 'pos.at')"))
        return (orjson.loads(rows["pos.fp"]) if "pos.fp" in rows else None), int(rows.get("pos.at", 0))

    def is_current(self, log: EventLog) -> bool:
        """Is the log, by stat() alone, the one this index was built from? Like git's index, a
        fingerprint taken within a clock tick of a write ("racy") is not trusted alone: the hash
        of the last line must match too."""
        fp, at = self.fingerprint()
        if fp is None or log.fingerprint() != fp:
            return False
        if fp and at - fp[-1][2] < _RACY_NS:
            pos = self.position()
            return log.tail_hash(pos.segment, pos.size) == pos.hash if pos.size else True
        return True

    def sync(self, log: EventLog, *, locked: bool, progress: Progress | None = None) -> bool:
        """Bring the index up to the end of the log. Returns True if anything was applied.

        When the log differs from the one the index was built from, its chain is verified from the
        last position the index trusts (the end it had, if the log only grew; else the start of
        the first segment that changed) before anything is folded: a log that does not verify
        raises LogCorrupt, and the index keeps its old fingerprint, so every command notices."""
        if self.is_current(log):
            return False
        if not locked:
            with log.lock():
                return self.sync(log, locked=True, progress=progress)
        if self.is_current(log):
            return False  # another process caught up while we waited for the lock
        pos = self.position()
        if not pos.seq:
            return self.rebuild(log, progress=progress)  # a new index: the bulk path
        start = self._trusted_start(log, pos)
        if start != pos:
            if log.tail_hash(pos.segment, pos.size) != pos.hash and not self._cut(log, pos):
                # the event the index ends at is not where it was and git's HEAD holds the log as
                # it is (a checkout, a reset): fold it anew; the rebuild checks every line it reads
                return self._rebuild_other(log, progress)
            end, same_history = _check_chain(log, start, pos)
            if not same_history:
                if end[0] < pos.seq and self._cut(log, pos):
                    raise LogCorrupt(f"{log.display(pos.segment)}: the log ends at seq {end[0]} but held events up "
                                     f"to seq {pos.seq} (cut short or removed, not checked out by git)",
                                     "run `mf verify` for what git still holds; restore with "
                                     "`git checkout -- .metaforge/events`")
                return self._rebuild_other(log, progress)  # another history (a merge being made)
            if end == (pos.seq, pos.hash):
                with os_errors(self.path):
                    self._write_meta(pos, log)  # touched, not changed
                return False
        self._replay(log, pos, progress, clear=False)
        return True

    def _rebuild_other(self, log: EventLog, progress: Progress | None) -> bool:
        """Fold a log of another history. If even its first event differs, the index was built from
        another repository's log (copied in): it is moved aside, and that is said."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'log.first'").fetchone()
        first = log.first_hash()
        if row and row[0] and first and row[0] != first:
            self._quarantine("its first event is not this log's", "was built from another repository's log")
        return self.rebuild(log, progress=progress)

    def _cut(self, log: EventLog, pos: Position) -> bool:
        """The log ends before the index did: was it cut (by hand, by damage), or checked out or reset
        by git (then the segment is what git's HEAD holds and the index simply follows it)?"""
        try:
            now = log.path(pos.segment).read_bytes()
        except FileNotFoundError:  # removed: by a checkout of a commit without it, or by hand
            return log.committed(pos.segment) is not None or not log.has_commits()
        return log.committed(pos.segment) != now

    def _trusted_start(self, log: EventLog, pos: Position) -> Position:
        """Where to verify from: `pos` if the log only grew past it (same files, the line that ended
        at pos still there), else the start of the first segment whose fingerprint changed."""
        old, _ = self.fingerprint()
        new = log.fingerprint()
        old = old or []
        changed = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
        grew_only = (changed == len(old) - 1 < len(new) and old[-1][0] == pos.segment and new[changed][4] == old[-1][4]
                     and new[changed][1] > pos.size and log.tail_hash(pos.segment, pos.size) == pos.hash) \
            or (changed == len(old) and len(new) > len(old))
        if grew_only:
            return pos
        return log.segment_start(new[changed][0] if changed < len(new) else changed + 1)

    def rebuild(self, log: EventLog, progress: Progress | None = None) -> bool:
        """Fold the whole log again. A file SQLite finds damaged is moved aside first: dropping its
        tables would leave bad pages behind (or fail on them)."""
        why = self.damage()
        if why:
            self._quarantine(why)
        try:
            self._replay(log, Position(), progress, clear=True)
        except sqlite.DatabaseError as exc:  # a damaged file cannot even drop its tables: start a new one
            if not is_damage(exc):
                raise
            self._quarantine(str(exc))
            self._replay(log, Position(), progress, clear=True)
        return True

    def _replay(self, log: EventLog, start: Position, progress: Progress | None, clear: bool) -> None:
        with no_gc(), os_errors(self.path):
            self._replay_batch(log, start, progress, clear)

    def _replay_batch(self, log: EventLog, start: Position, progress: Progress | None, clear: bool) -> None:
        total = _estimate_events(log, start)
        state = GraphState(base=EmptyBase() if clear else self)
        reader = log.read(start)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if clear:  # dropping is much faster than deleting every row
                for table in ("nodes", "edges", "events", "proposals", "aggregates", "artifacts", "artifact_map",
                              "state_links", "drifts"):
                    conn.execute(f"DROP TABLE {table}")
                    conn.execute(_TABLES[table])
            batch: list[Record] = []
            done = 0
            for rec in reader:
                batch.append(rec)
                if len(batch) >= _CHUNK:
                    self._fold(state, batch)
                    done += len(batch)
                    batch = []
                    if progress:
                        progress(done, total)
            self._fold(state, batch)
            if progress:
                progress(done + len(batch), max(total, done + len(batch)))
            end = reader.position
            self._write_state(state)
            if clear:
                for sql in _INDEXES:
                    conn.execute(sql)
            self._write_meta(end, log)
            if clear:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('log.first', ?)", (log.first_hash() or "",))
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _fold(self, state: GraphState, batch: list[Record]) -> None:
        if not batch:
            return
        state.prefetch(r.event["entity"] for r in batch)
        for r in batch:
            state.apply(r.event)
        self._insert_events(batch)

    # ---- writing a command's result --------------------------------------------------------

    def commit(self, state: GraphState, records: list[Record], end: Position, log: EventLog | None = None) -> None:
        """Write the state a command folded, its events and the new log end: one transaction."""
        with os_errors(self.path):
            self._commit(state, records, end, log)

    def _commit(self, state: GraphState, records: list[Record], end: Position, log: EventLog | None) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._insert_events(records)
            self._write_state(state)
            self._write_meta(end, log)
            fresh = getattr(state, "aggregates", None)
            if fresh:
                conn.executemany("INSERT OR REPLACE INTO aggregates VALUES (?, ?, ?, ?, ?)",
                                 [(k, end.seq, c, t, u) for k, (c, t, u) in fresh.items()])
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _insert_events(self, records: list[Record]) -> None:
        for r in records:
            kind = r.event["type"]
            if kind.startswith("proposal."):
                self._project_proposal(r.event)
            elif kind == "artifact.mapped":
                self._project_artifact(r.event)
            elif kind.startswith("drift."):
                self._project_drift(r.event)
            elif kind == "state.linked":
                p = r.event["payload"]
                self.conn.execute("INSERT OR REPLACE INTO state_links VALUES (?, ?, ?, ?, ?, ?)",
                                  (r.event["seq"], p["semantic_version"], p["git_commit"], p["projected_at"],
                                   p["projected_by"], orjson.dumps(p["artifacts"]).decode()))
        self.conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(e["seq"], e["type"], e["entity"], e["version"], e["ts"], e["actor"], r.segment, r.offset)
             for r in records for e in (r.event,)])

    def _write_state(self, state: GraphState) -> None:
        dumps, sort = orjson.dumps, orjson.OPT_SORT_KEYS
        rows = []
        for nid in sorted(state.dirty):  # in key order: B-tree appends instead of page splits
            n = state.nodes[nid]
            rows.append((n.id, n.type, n.id.split(":", 1)[1], n.version, n.created_at, n.updated_at,
                         n.created_by, n.updated_by, n.created_seq, n.updated_seq, int(n.deleted),
                         dumps(n.props, option=sort).decode()))
        self.conn.executemany("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, jsonb(?))", rows)
        added, removed = [], []
        for edge in state.dirty_edges:
            info = state.edges[edge]
            if info is None:
                removed.append(edge)
            else:
                added.append((*edge, info.created_at, info.created_by, info.seq))
        self.conn.executemany("DELETE FROM edges WHERE src = ? AND rel = ? AND dst = ?", removed)
        self.conn.executemany("INSERT OR REPLACE INTO edges VALUES (?, ?, ?, ?, ?, ?)", added)
        state.dirty.clear()
        state.dirty_edges.clear()

    def cached_aggregate(self, key: str):
        return self.conn.execute("SELECT seq, count, total, unit FROM aggregates WHERE key = ?", (key,)).fetchone()

    def _project_proposal(self, e: dict) -> None:
        if e["type"] == "proposal.created":
            self.conn.execute("INSERT OR REPLACE INTO proposals VALUES (?, ?, 'pending', ?, ?, NULL, NULL, NULL, ?, ?)",
                              (e["entity"], e["seq"], e["actor"], e["ts"], e.get("msg"),
                               orjson.dumps(e["payload"]).decode()))
        elif e["type"] in ("proposal.approved", "proposal.rejected"):
            self.conn.execute("UPDATE proposals SET status = ?, decided_by = ?, decided_at = ?, decision = ? WHERE id = ?",
                              (e["type"].split(".")[1], e["actor"], e["ts"], e.get("msg"), e["entity"]))

    def _project_artifact(self, e: dict) -> None:
        p = e["payload"]
        self.conn.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?)",
                          (p["path"], p["adapter"], p["adapter_version"], p["sha256"], e["seq"], p["how"]))
        self.conn.execute("DELETE FROM artifact_map WHERE path = ?", (p["path"],))
        self.conn.executemany("INSERT OR REPLACE INTO artifact_map VALUES (?, ?, ?, ?)",
                              [(p["path"], m["entity_id"], m["region"], m.get("line")) for m in p["mappings"]])

    def _project_drift(self, e: dict) -> None:
        p = e["payload"]
        if e["type"] == "drift.detected":
            self.conn.execute("INSERT OR REPLACE INTO drifts VALUES (?, ?, ?, ?)",
                              (p["path"], e["seq"], p["fingerprint"], orjson.dumps(p).decode()))
        elif e["type"] == "drift.resolved":
            self.conn.execute("DELETE FROM drifts WHERE path = ?", (p["path"],))

    def _write_meta(self, pos: Position, log: EventLog | None) -> None:
        """The log end this index holds and the log's fingerprint now (called under the lock, with
        the log just read or written: nothing else writes it meanwhile)."""
        fp = log.fingerprint() if log is not None else []  # no log (a test's index): never current
        at = time.time_ns()
        mtime = fp[-1][2] if fp else 0
        self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
            ("pos.seq", str(pos.seq)), ("pos.hash", pos.hash), ("pos.segment", str(pos.segment)),
            ("pos.size", str(pos.size)), ("pos.mtime_ns", str(mtime)),
            ("pos.fp", orjson.dumps(fp).decode()), ("pos.at", str(at))])
        if log is not None and pos.seq:  # which log this is: its first event (see _rebuild_other)
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'log.first'").fetchone()
            if not (row and row[0]):
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('log.first', ?)", (log.first_hash() or "",))

    # ---- reads: files, drifts, StateLinks, proposals (the artifact state) -------------------

    def artifact(self, path: str) -> "ArtifactRow | None":
        """The last mapping of a file (also one recorded as removed)."""
        row = self.conn.execute(f"SELECT {_ARTIFACT_COLUMNS} FROM artifacts WHERE path = ?", (path,)).fetchone()
        return ArtifactRow(*row) if row else None

    def artifacts(self) -> list["ArtifactRow"]:
        """Every file the graph maps now, by path."""
        return [ArtifactRow(*r) for r in self.conn.execute(
            f"SELECT {_ARTIFACT_COLUMNS} FROM artifacts WHERE how != 'removed' ORDER BY path")]

    def entities_in(self, path: str) -> list[str]:
        """The entities a file maps, by id."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT entity FROM artifact_map WHERE path = ? ORDER BY entity",
                                                (path,))]

    def entities_only_in(self, path: str) -> list[str]:
        """The entities a file maps that no other file does."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT entity FROM artifact_map WHERE path = ? AND entity NOT IN "
            "(SELECT entity FROM artifact_map WHERE path != ?) ORDER BY entity", (path, path))]

    def mapped_elsewhere(self, entity: str, paths: list[str]) -> bool:
        """Whether a file outside `paths` maps the entity."""
        return self.conn.execute("SELECT 1 FROM artifact_map WHERE entity = ? AND path NOT IN "
                                 "(SELECT value FROM json_each(?)) LIMIT 1",
                                 (entity, orjson.dumps(paths).decode())).fetchone() is not None

    def mappings_of(self, entity: str) -> list[tuple[str, str, int | None]]:
        """(path, region, line) of each place in the files where an entity lives."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT path, region, line FROM artifact_map WHERE entity = ? ORDER BY path, line", (entity,))]

    def changed_since(self, ids: list[str], seq: int) -> int:
        """How many of these nodes changed after `seq`."""
        if not ids:
            return 0
        return self.conn.execute("SELECT count(*) FROM nodes WHERE id IN (SELECT value FROM json_each(?)) "
                                 "AND updated_seq > ?", (orjson.dumps(ids).decode(), seq)).fetchone()[0]

    def last_change_by_file(self) -> dict[str, int]:
        """For each mapped file, the last seq at which one of its entities changed."""
        return dict(self.conn.execute(
            "SELECT m.path, max(n.updated_seq) FROM artifact_map m JOIN nodes n ON n.id = m.entity GROUP BY m.path"))

    def props_of(self, ids: list[str]) -> dict[str, dict | None]:
        """id → properties (None for a removed node) of the nodes that exist among `ids`."""
        out: dict[str, dict | None] = {}
        loads = orjson.loads
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = self.conn.execute(f"SELECT id, json(props), deleted FROM nodes WHERE id IN "
                                     f"({','.join('?' * len(chunk))})", chunk)
            for node_id, props, deleted in rows:
                out[node_id] = None if deleted else loads(props)
        return out

    def edges_among(self, sources: Iterable[str]) -> set[Edge]:
        """Every edge leaving one of `sources`."""
        srcs = sorted(set(sources))
        if not srcs:
            return set()
        return {tuple(r) for r in self.conn.execute(
            "SELECT src, rel, dst FROM edges WHERE src IN (SELECT value FROM json_each(?))", (orjson.dumps(srcs).decode(),))}

    def open_drifts(self) -> dict[str, dict]:
        """path → {seq, fingerprint, payload} of each drift.detected not yet resolved."""
        loads = orjson.loads
        return {p: {"seq": s, "fingerprint": f, "payload": loads(d)} for p, s, f, d in
                self.conn.execute("SELECT path, seq, fingerprint, payload FROM drifts ORDER BY path")}

    def drift_path(self, seq: int) -> str | None:
        """The file of the open drift whose drift.detected is at `seq`."""
        row = self.conn.execute("SELECT path FROM drifts WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def state_links(self, limit: int = 20) -> list[dict]:
        """The newest StateLinks first: which commit holds the files of which semantic version."""
        rows = self.conn.execute("SELECT seq, semantic_version, git_commit, projected_at, projected_by, artifacts "
                                 "FROM state_links ORDER BY seq DESC LIMIT ?", (limit,))
        return [{"seq": s, "semantic_version": v, "git_commit": c, "projected_at": at, "projected_by": by,
                 "artifacts": orjson.loads(a)} for s, v, c, at, by, a in rows]

    def state_link_at(self, version: int) -> int | None:
        """The seq of the newest StateLink at or before a semantic version."""
        row = self.conn.execute("SELECT seq FROM state_links WHERE semantic_version <= ? "
                                "ORDER BY semantic_version DESC, seq DESC LIMIT 1", (version,)).fetchone()
        return row[0] if row else None

    def proposals(self, include_decided: bool = False) -> list[dict]:
        """Proposals in seq order (only the pending ones unless `include_decided`), their payload merged in."""
        sql = f"SELECT {_PROPOSAL_COLUMNS}, payload FROM proposals"
        if not include_decided:
            sql += " WHERE status = 'pending'"
        keys = _PROPOSAL_COLUMNS.split(", ")
        out = []
        for row in self.conn.execute(sql + " ORDER BY seq"):
            item = dict(zip(keys, row[:-1]))
            item.update(orjson.loads(row[-1]))
            out.append(item)
        return out

    def files_awaiting_approval(self) -> dict[str, tuple[str, str]]:
        """path → (sha256, proposal id) of the files whose content a pending proposal holds."""
        return {rel: (sha, p["id"]) for p in self.proposals() for rel, sha in (p.get("files") or {}).items()}

    def proposal_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM proposals")}

    def event_refs(self, *, seq: int | None = None, entity: str | None = None,
                   upto: int | None = None) -> list[tuple[int, int]]:
        """(segment, offset) in the log of the event at `seq`, or of an entity's events up to
        `upto`, in seq order: read them with `EventLog.lines_at`."""
        if seq is not None:
            return [tuple(r) for r in self.conn.execute("SELECT segment, offset FROM events WHERE seq = ?", (seq,))]
        return [tuple(r) for r in self.conn.execute(
            "SELECT segment, offset FROM events WHERE entity = ? AND seq <= ? ORDER BY seq",
            (entity, upto if upto is not None else 1 << 62))]

    def all_nodes(self, include_deleted: bool = False) -> Iterator[Node]:
        """Every node (live ones only unless `include_deleted`), in id order."""
        loads = orjson.loads
        sql = f"SELECT {_NODE_COLUMNS} FROM nodes" + ("" if include_deleted else " WHERE deleted = 0") + " ORDER BY id"
        for r in self.conn.execute(sql):
            yield Node(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], loads(r[9]), bool(r[10]))

    def live_props_json(self) -> dict[str, tuple[str, str]]:
        """id → (type, properties as canonical JSON text) of every live node: compared as text."""
        return {i: (t, p) for i, t, p in self.conn.execute("SELECT id, type, json(props) FROM nodes WHERE deleted = 0")}

    def all_edges(self) -> list[Edge]:
        return [tuple(r) for r in self.conn.execute("SELECT src, rel, dst FROM edges ORDER BY src, rel, dst")]

    def live_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM nodes WHERE deleted = 0").fetchone()[0]

    def event_rows(self) -> tuple[int, int]:
        """(how many events the index lists, the last seq among them)."""
        return tuple(self.conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone())

    # what the constraint engine's aggregates read: equality filters pushed into SQL

    @staticmethod
    def _matching(type_name: str, equal: tuple, exclude: Iterable[str] = ()) -> tuple[str, list]:
        where, args = "type = ? AND deleted = 0", [type_name]
        for prop, value in equal:
            where += " AND props ->> ? = ?"
            args += [f'$."{prop}"', value]
        exclude = list(exclude)
        if exclude:
            where += " AND id NOT IN (SELECT value FROM json_each(?))"
            args.append(orjson.dumps(exclude).decode())
        return where, args

    def nodes_matching(self, type_name: str, equal: tuple = ()) -> list[tuple[str, dict]]:
        """(id, properties) of the live nodes of a type whose properties equal `equal` ((key, value)
        pairs, compared as SQLite compares JSON scalars: a pre-filter, the caller decides exactly)."""
        where, args = self._matching(type_name, equal)
        loads = orjson.loads
        return [(i, loads(p)) for i, p in self.conn.execute(f"SELECT id, json(props) FROM nodes WHERE {where}", args)]

    def count_matching(self, type_name: str, equal: tuple = (), exclude: Iterable[str] = ()) -> int:
        where, args = self._matching(type_name, equal, exclude)
        return self.conn.execute(f"SELECT count(*) FROM nodes WHERE {where}", args).fetchone()[0]

    def totals_by_unit(self, type_name: str, prop: str, quantity: bool, equal: tuple = (),
                       exclude: Iterable[str] = ()) -> list[tuple[str, int, float, float, float]]:
        """(unit, count, total, min, max) of one property over the matching live nodes, per unit
        ('' for a plain number): SQLite sums without Python touching each row."""
        where, args = self._matching(type_name, equal, exclude)
        path = f'$."{prop}"'
        value_sql = f"props ->> '{path}.value'" if quantity else f"props ->> '{path}'"
        unit_sql = f"props ->> '{path}.unit'" if quantity else "''"
        sql = (f"SELECT {unit_sql}, count({value_sql}), total({value_sql}), min({value_sql}), max({value_sql}) "
               f"FROM nodes WHERE {where} AND {value_sql} IS NOT NULL GROUP BY 1")
        return [tuple(r) for r in self.conn.execute(sql, args)]

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file, so a plain copy of it is whole."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---- the Base protocol: what the fold reads -------------------------------------------

    def load_nodes(self, ids: Iterable[str]) -> dict[str, Node]:
        ids = list(ids)
        out: dict[str, Node] = {}
        loads = orjson.loads
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            sql = f"SELECT {_NODE_COLUMNS} FROM nodes WHERE id IN ({','.join('?' * len(chunk))})"
            for r in self.conn.execute(sql, chunk):
                out[r[0]] = Node(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], loads(r[9]), bool(r[10]))
        return out

    def load_edges(self, triples: Iterable[Edge]) -> dict[Edge, EdgeInfo]:
        out = {}
        for src, rel, dst in triples:
            row = self.conn.execute("SELECT created_at, created_by, seq FROM edges WHERE src = ? AND rel = ? AND dst = ?",
                                    (src, rel, dst)).fetchone()
            if row:
                out[(src, rel, dst)] = EdgeInfo(*row)
        return out

    def edges_touching(self, node_id: str) -> list[Edge]:
        rows = self.conn.execute("SELECT src, rel, dst FROM edges WHERE src = ? UNION "
                                 "SELECT src, rel, dst FROM edges WHERE dst = ?", (node_id, node_id))
        return [tuple(r) for r in rows]

    # ---- reads: the typed API every caller outside store/ uses (never SQL) ---------------------

    def node(self, node_id: str) -> Node | None:
        """The live node (None if it never existed or was removed)."""
        found = self.load_nodes([node_id]).get(node_id)
        return None if found is None or found.deleted else found

    def exists(self, node_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM nodes WHERE id = ? AND deleted = 0", (node_id,)).fetchone() is not None

    def props(self, node_id: str) -> dict | None:
        """A live node's properties, or None."""
        row = self.conn.execute("SELECT json(props) FROM nodes WHERE id = ? AND deleted = 0", (node_id,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def prop(self, node_id: str, key: str):
        """One property of a live node (None if unset or no such node), read without the rest."""
        row = self.conn.execute("SELECT json(props -> ?) FROM nodes WHERE id = ? AND deleted = 0",
                                (f"$.{key}", node_id)).fetchone()
        return orjson.loads(row[0]) if row and row[0] is not None else None

    def ids_of_type(self, type_name: str) -> list[str]:
        """Live ids of one entity type, in id order."""
        return [r[0] for r in self.conn.execute("SELECT id FROM nodes WHERE type = ? AND deleted = 0 ORDER BY id",
                                                (type_name,))]

    def edges_from(self, src: str, rel: str | None = None) -> list[tuple[str, str]]:
        """(rel, dst) of the edges leaving `src` (of one relation if given), in order."""
        if rel is None:
            return [tuple(r) for r in self.conn.execute("SELECT rel, dst FROM edges WHERE src = ? ORDER BY rel, dst",
                                                        (src,))]
        return [(rel, r[0]) for r in self.conn.execute("SELECT dst FROM edges WHERE src = ? AND rel = ? ORDER BY dst",
                                                       (src, rel))]

    def edges_to(self, dst: str, rel: str | None = None) -> list[tuple[str, str]]:
        """(rel, src) of the edges arriving at `dst` (of one relation if given), in order."""
        if rel is None:
            return [tuple(r) for r in self.conn.execute("SELECT rel, src FROM edges WHERE dst = ? ORDER BY rel, src",
                                                        (dst,))]
        return [(rel, r[0]) for r in self.conn.execute("SELECT src FROM edges WHERE dst = ? AND rel = ? ORDER BY src",
                                                       (dst, rel))]

    def has_edge(self, src: str, rel: str, dst: str) -> bool:
        return self.conn.execute("SELECT 1 FROM edges WHERE src = ? AND rel = ? AND dst = ?",
                                 (src, rel, dst)).fetchone() is not None

    # ---- reads: devices, models, fleet -------------------------------------------------------------

    def nodes_of_type(self, type_name: str) -> list[Node]:
        """The live nodes of one entity type, whole, in id order: one query for a listing."""
        loads = orjson.loads
        rows = self.conn.execute(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE type = ? AND deleted = 0 ORDER BY id",
                                 (type_name,))
        return [Node(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], loads(r[9]), bool(r[10])) for r in rows]

    def prop_of_each(self, type_name: str, key: str) -> dict[str, Any]:
        """id → one property (None if unset) of every live node of a type, in id order: one query
        instead of one per node, for a fleet of thousands."""
        rows = self.conn.execute("SELECT id, json(props -> ?) FROM nodes WHERE type = ? AND deleted = 0 ORDER BY id",
                                 (f"$.{key}", type_name))
        return {nid: _decoded(raw) for nid, raw in rows}

    def targets_with_prop(self, src: str, rel: str, key: str) -> list[tuple[str, Any]]:
        """(dst, the dst's `key` or None) of each edge `src -rel->` a live node, in dst order: a walk
        down a tree reads each level in one query."""
        rows = self.conn.execute("SELECT e.dst, json(n.props -> ?) FROM edges e JOIN nodes n ON n.id = e.dst "
                                 "AND n.deleted = 0 WHERE e.src = ? AND e.rel = ? ORDER BY e.dst",
                                 (f"$.{key}", src, rel))
        return [(dst, _decoded(raw)) for dst, raw in rows]

    def device_status(self, device_id: str) -> str | None:
        """A registered device's `status` ("active", "decommissioned"; "" if unset), or None if the
        registry does not hold it (never registered, or removed). One primary-key seek: ingest asks
        it of every device it hears from."""
        row = self.conn.execute("SELECT props ->> '$.status' FROM nodes WHERE id = ? AND deleted = 0",
                                (device_id,)).fetchone()
        return None if row is None else row[0] or ""

    def devices_in_service(self, twin_model_id: str) -> list[str]:
        """The live DeviceInstance ids INSTANCE_OF a TwinModel that are not decommissioned, in id order
        (a fleet what-if runs every one of them): one query."""
        return [r[0] for r in self.conn.execute(
            "SELECT e.src FROM edges e JOIN nodes n ON n.id = e.src AND n.deleted = 0 WHERE e.dst = ? "
            "AND e.rel = 'INSTANCE_OF' AND coalesce(n.props ->> '$.status', '') != 'decommissioned' ORDER BY e.src",
            (twin_model_id,))]

    def device_sync_layers(self) -> list[SyncLayers]:
        """Every live device's own sync settings beside its fleet group's, in one query over the fleet
        (a device in two groups has a row for each)."""
        return [SyncLayers(d, _decoded(own), _decoded(own_sources), g, _decoded(group_policy), _decoded(group_sources))
                for d, own, own_sources, g, group_policy, group_sources in self.conn.execute(_SYNC_LAYERS_SQL)]

    # ---- reads: queries, history, verification ------------------------------------------------

    def stored_node(self, node_id: str) -> Node | None:
        """The node as the index holds it, removed or not (to say when it was removed)."""
        return self.load_nodes([node_id]).get(node_id)

    def find_nodes(self, screens: Sequence[Screen] = (), type_name: str | None = None,
                   keep: Callable[[Node], bool] | None = None, limit: int | None = None) -> list[Node]:
        """Live nodes (of one type) in id order that the screens let through and `keep` accepts,
        stopping once `limit` are kept (None or 0: all). `keep` is the caller's exact verdict:
        the screens only spare it the rows they can rule out (see graph_query)."""
        args: list = []
        sql = f"SELECT {_NODE_COLUMNS} FROM nodes WHERE deleted = 0"
        if type_name:
            # Without statistics SQLite always takes the type index; when screens read most of
            # the table anyway, one lookup per row of a big type costs 3x a plain scan in id order
            scan = screens and self._holds_most(type_name)
            sql, args = sql + (" AND +type = ?" if scan else " AND type = ?"), [type_name]
        if screens:
            sql += f" AND ({graph_query.where_sql(screens, args)})"
        out: list[Node] = []
        for r in self.conn.execute(sql + " ORDER BY id", args):
            node = _node(r)
            if keep is None or keep(node):
                out.append(node)
                if limit and len(out) >= limit:
                    break
        return out

    def _holds_most(self, type_name: str) -> bool:
        """Is a quarter or more of the index of this type? (two counts on indexes: milliseconds)"""
        of_type = self.conn.execute("SELECT count(*) FROM nodes WHERE type = ?", (type_name,)).fetchone()[0]
        return of_type * 4 >= self.conn.execute("SELECT count(*) FROM nodes").fetchone()[0]

    def property_units(self, key: str) -> list[str]:
        """Every unit a quantity under property `key` is written in, in any node (removed ones
        too: a plain scan is 2x faster than one that skips them, and a unit too many is harmless)."""
        path = '$."' + key + '"'
        rows = self.conn.execute(f"SELECT DISTINCT props ->> '{path}.unit' FROM nodes")
        return sorted(u for (u,) in rows if isinstance(u, str))

    def types_of(self, ids: Iterable[str]) -> dict[str, str]:
        """The type of each of these ids that is a live node (the others are left out)."""
        ids = list(dict.fromkeys(ids))
        out: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out.update(self.conn.execute(f"SELECT id, type FROM nodes WHERE deleted = 0 AND id IN "
                                         f"({','.join('?' * len(chunk))})", chunk))
        return out

    def count_by_type(self) -> dict[str, int]:
        """Live entities by type, in type order."""
        return dict(self.conn.execute("SELECT type, count(*) FROM nodes WHERE deleted = 0 GROUP BY type ORDER BY type"))

    def count_by_relation(self) -> dict[str, int]:
        """Relationships by relation, in relation order."""
        return dict(self.conn.execute("SELECT rel, count(*) FROM edges GROUP BY rel ORDER BY rel"))

    def changed_after(self, seq: int) -> int:
        """How many entities (removed ones too) an event after `seq` changed."""
        return self.conn.execute("SELECT count(*) FROM nodes WHERE updated_seq > ?", (seq,)).fetchone()[0]

    def last_state_link(self) -> dict | None:
        """The newest StateLink: which commit holds the files of which semantic version."""
        row = self.conn.execute("SELECT semantic_version, git_commit, projected_at FROM state_links "
                                "ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else dict(zip(("semantic_version", "git_commit", "projected_at"), row))

    def last_event(self) -> dict | None:
        """seq, type, entity, version, ts and actor of the newest event."""
        row = self.conn.execute("SELECT seq, type, entity, version, ts, actor FROM events "
                                "ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else dict(zip(("seq", "type", "entity", "version", "ts", "actor"), row))

    def event_positions(self, entity: str | None = None, event_type: str | None = None,
                        since_seq: int | None = None, oldest_first: bool = False,
                        limit: int | None = None) -> list[tuple[int, int]]:
        """(segment, offset) of the events that match, newest first (or oldest first): of one
        entity, of one type (`node.*` or `node.`: a family), after a seq, at most `limit`."""
        sql, args = "SELECT segment, offset FROM events WHERE 1 = 1", []
        if entity:
            sql += " AND entity = ?"
            args.append(entity)
        if event_type:
            if event_type.endswith("*") or event_type.endswith("."):
                sql += " AND type LIKE ?"
                args.append(event_type.rstrip("*").rstrip(".") + ".%")
            else:
                sql += " AND type = ?"
                args.append(event_type)
        if since_seq is not None:
            sql += " AND seq > ?"
            args.append(since_seq)
        sql += " ORDER BY seq " + ("ASC" if oldest_first else "DESC")
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [tuple(r) for r in self.conn.execute(sql, args)]

    # ---- reads for the constraint engine: a type's rows, counts and sums ---------------------------



def _decoded(raw: str | None):
    """A JSON text SQLite answered, decoded (SQL NULL, an unset property, stays None)."""
    return None if raw is None else orjson.loads(raw)


def _node(r) -> Node:
    """A Node from a row of _NODE_COLUMNS."""
    return Node(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], orjson.loads(r[9]), bool(r[10]))


_SQLITE_OS = {13: ("ENOSPC", "No space left on device"), 8: ("EROFS", "cannot write (read-only file or file system)"),
              10: ("EIO", "Input/output error"), 3: ("EACCES", "Permission denied"),
              14: ("EACCES", "cannot open (permissions, or a read-only directory)")}


@contextmanager
def os_errors(path: Path):
    """SQLite's word for an operating-system refusal (full, read-only, I/O, permission) as a
    StorageError naming the file, with SQLite's error chained."""
    try:
        yield
    except sqlite.OperationalError as exc:
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        known = _SQLITE_OS.get(code)
        if known is None:
            raise
        name, cause = _cause(code, path.parent) or known
        hint = "free some space; the log is intact and the index catches up with it at the next command" \
            if name == "ENOSPC" else STORAGE_HINTS.get(name)
        raise StorageError(f"{MFDIR_NAME}/{path.name}: {cause} (SQLite: {exc})", hint,
                           {"path": f"{MFDIR_NAME}/{path.name}", "errno": name}) from exc


def _truncated(path: Path) -> str | None:
    """Is the file shorter than its own header says? SQLite reads the missing pages as zeros and may
    answer from them without an error, so a cut index is caught here, from 100 bytes and a stat()."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    if len(head) < 100 or not head.startswith(b"SQLite format 3\0"):
        return None  # not a database at all: SQLite says so itself
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    if head[24:28] != head[92:96] or not pages:
        return None  # the header's page count is not kept current: nothing to compare
    return f"{size:,} bytes where its header counts {pages * page:,}" if size < pages * page else None


def _cause(code: int, folder: Path) -> tuple[str, str] | None:
    """SQLite does not pass on errno: tell a read-only file system, a directory this user may not
    write, and a full disk (an I/O error growing -shm or the WAL) from what the folder shows."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "EROFS", "Read-only file system"
    except OSError:
        return None
    if code in (8, 14) and not os.access(folder, os.W_OK):
        return "EACCES", "Permission denied"
    if code == 10 and _nearly_full(folder):
        return _SQLITE_OS[13]
    return None


def _nearly_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (256 << 10)


def is_damage(exc: BaseException) -> bool:
    """Is this SQLite error a damaged or foreign file (not a lock, a full disk or a permission)?"""
    if not isinstance(exc, sqlite.DatabaseError):
        return False
    msg = str(exc)
    return getattr(exc, "sqlite_errorcode", None) in (11, 26) or "malformed" in msg or "not a database" in msg \
        or msg.startswith(("no such table", "no such column", "unsupported file format"))


def _rollback(conn) -> None:
    """Roll back if SQLite has not already (it ends the transaction itself on a full disk or an I/O
    error): the error that stopped the transaction is the one to report, not the rollback's."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite.Error:
            pass


def _check_chain(log: EventLog, start: Position, pos: Position) -> tuple[tuple[int, str], bool]:
    """Verify the chain from `start` to the end of the log (LogCorrupt if it does not hold).
    Returns the (seq, hash) it ends at and whether the event at `pos` is still the one the index
    folded (the same history: only what follows it is new)."""
    reader = log.read(start)
    same = start.seq == pos.seq and start.hash == pos.hash
    for rec in reader:
        if rec.event["seq"] == pos.seq:
            same = rec.event["hash"] == pos.hash
    return (reader.position.seq, reader.position.hash), same


def _estimate_events(log: EventLog, start: Position) -> int:
    """About how many events lie past `start` (for a progress bar), without reading them."""
    total = sum(os.path.getsize(log.path(n)) for n in log.segments())
    return max(0, total // 380 - start.seq)  # ~380 bytes an event
