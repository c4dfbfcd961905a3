"""The knowledge store: `.metaforge/knowledge.db` — chunks, their embeddings in sqlite-vec and
their words in FTS5. Derived: delete it and `mf knowledge reconcile` (or `mf ask`) rebuilds it."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from metaforge.store import sqlite

SCHEMA_VERSION = "2"  # 2: a decision's entities (chunks.entities, the touches table)


class KnowledgeStore:
    def __init__(self, path: Path, dim: int = 384):
        import sqlite_vec

        self.path = path
        self.conn = sqlite.connect(str(path))
        self.conn.enable_load_extension(True)
        sqlite_vec.load(self.conn)
        self.conn.enable_load_extension(False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if str(version) != SCHEMA_VERSION:
            for table in ("chunks", "vec", "fts", "meta", "touches"):
                self.conn.execute(f"DROP TABLE IF EXISTS {table}")
            self.conn.execute("CREATE TABLE chunks (rowid INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, kind TEXT NOT NULL,"
                              " title TEXT NOT NULL, text TEXT NOT NULL, source TEXT NOT NULL, digest TEXT NOT NULL,"
                              " entities TEXT NOT NULL DEFAULT '', bulk INTEGER NOT NULL DEFAULT 0)")
            # which decisions changed an entity (bulk ones left out): search follows it from a hit
            self.conn.execute("CREATE TABLE touches (entity TEXT NOT NULL, rowid INTEGER NOT NULL)")
            self.conn.execute("CREATE INDEX touches_by_entity ON touches (entity)")
            self.conn.execute("CREATE INDEX chunks_by_kind ON chunks (kind)")
            self.conn.execute(f"CREATE VIRTUAL TABLE vec USING vec0(embedding float[{dim}])")
            self.conn.execute("CREATE VIRTUAL TABLE fts USING fts5(title, text, tokenize = 'porter unicode61')")
            self.conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self):
        """Changes made inside are stored together or not at all."""
        self.conn.execute("BEGIN")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def digests(self, prefix: str | None = None) -> dict[str, str]:
        sql, args = "SELECT key, digest FROM chunks", []
        if prefix:
            sql, args = sql + " WHERE key LIKE ?", [prefix + "%"]
        return dict(self.conn.execute(sql, args))

    def digests_of(self, keys: list[str]) -> dict[str, str]:
        """{key: digest} of the chunks with these keys (the ones that exist)."""
        out: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            out.update(self.conn.execute(f"SELECT key, digest FROM chunks WHERE key IN ({','.join('?' * len(part))})",
                                         part))
        return out

    def upsert(self, chunks: list, vectors: np.ndarray) -> None:
        conn = self.conn
        for chunk, vector in zip(chunks, vectors):
            row = conn.execute("SELECT rowid FROM chunks WHERE key = ?", (chunk.key,)).fetchone()
            if row:
                self._delete_rowid(row[0])
            entities = getattr(chunk, "entities", ())
            bulk = bool(getattr(chunk, "bulk", False))
            cur = conn.execute("INSERT INTO chunks (key, kind, title, text, source, digest, entities, bulk)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (chunk.key, chunk.kind, chunk.title, chunk.text,
                                                                    chunk.source, chunk.digest, " ".join(entities), bulk))
            rowid = cur.lastrowid
            if not bulk:
                conn.executemany("INSERT INTO touches VALUES (?, ?)", [(e, rowid) for e in entities])
            conn.execute("INSERT INTO vec (rowid, embedding) VALUES (?, ?)", (rowid, vector.astype(np.float32).tobytes()))
            conn.execute("INSERT INTO fts (rowid, title, text) VALUES (?, ?, ?)", (rowid, chunk.title, chunk.text))

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            row = self.conn.execute("SELECT rowid FROM chunks WHERE key = ?", (key,)).fetchone()
            if row:
                self._delete_rowid(row[0])

    def _delete_rowid(self, rowid: int) -> None:
        self.conn.execute("DELETE FROM chunks WHERE rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM vec WHERE rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM fts WHERE rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM touches WHERE rowid = ?", (rowid,))

    def bump(self) -> None:
        """Count a change, so a vector matrix held in memory knows it is out of date."""
        self.set_meta("version", str(int(self.meta("version", "0")) + 1))

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All embeddings as one matrix (and their rowids): a brute-force scan in NumPy is 6 ms over
        100,000 chunks where sqlite-vec's own KNN takes 42 ms."""
        rows = self.conn.execute("SELECT rowid, embedding FROM vec").fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 384), dtype=np.float32)
        rowids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return rowids, matrix

    def write(self, chunks: list, vectors) -> None:
        """Store chunks with their vectors, one transaction (and the version bumped)."""
        with self.transaction():
            self.upsert(chunks, vectors)
            self.bump()

    def remove(self, keys: list[str]) -> None:
        """Drop chunks by key, one transaction (and the version bumped)."""
        with self.transaction():
            self.delete(keys)
            self.bump()

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def keyword_hits(self, match: str, limit: int) -> list[int]:
        """Rowids of the chunks whose words match an FTS5 query, best (BM25) first."""
        rows = self.conn.execute("SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY bm25(fts) LIMIT ?", (match, limit))
        return [r[0] for r in rows]

    def chunk(self, rowid: int) -> tuple | None:
        """(key, kind, title, text, source, entities, bulk) of one chunk."""
        row = self.conn.execute("SELECT key, kind, title, text, source, entities, bulk FROM chunks WHERE rowid = ?",
                                (rowid,)).fetchone()
        return None if row is None else (*row[:5], tuple(row[5].split()), bool(row[6]))

    def decisions_touching(self, entities: list[str]) -> list[tuple[str, int]]:
        """(entity, rowid) of every decision (bulk ones left out) that changed one of these entities."""
        if not entities:
            return []
        return list(self.conn.execute(
            f"SELECT entity, rowid FROM touches WHERE entity IN ({','.join('?' * len(entities))})", entities))
