"""The time-series store: `.metaforge/telemetry.db` (SQLite), never the event log.

Samples are (device, metric, ts in µs, value) rows in a WITHOUT ROWID table keyed in that order:
a range query for one metric of one device is one B-tree range, and a sample delivered twice
(a QoS 1 redelivery, a file ingested again) is the same key and is dropped. Per-minute rollups
(count, sum, min, max, last) are kept beside the raw rows and recomputed for the minutes a batch
touched, so a day at 100 Hz (8.6 M points) answers per minute from 1,440 rows. Rejected input
goes to a dead-letter table with its reason, never silently away.
"""

from __future__ import annotations

import time
from itertools import chain, repeat
from pathlib import Path
from typing import Iterable

from metaforge.store import sqlite

MINUTE_US = 60_000_000
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS devices (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)",
    "CREATE TABLE IF NOT EXISTS metrics (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, unit TEXT)",
    """CREATE TABLE IF NOT EXISTS samples (device INTEGER NOT NULL, metric INTEGER NOT NULL, ts INTEGER NOT NULL,
       value REAL NOT NULL, PRIMARY KEY (device, metric, ts)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS rollup_1m (device INTEGER NOT NULL, metric INTEGER NOT NULL, minute INTEGER NOT NULL,
       n INTEGER NOT NULL, total REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL, last_ts INTEGER NOT NULL,
       last REAL NOT NULL, PRIMARY KEY (device, metric, minute)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL,
       source TEXT NOT NULL, reason TEXT NOT NULL, payload TEXT NOT NULL)""",
]


class TelemetryStore:
    def __init__(self, path: Path):
        self.path = path
        self.conn = sqlite.connect(str(path))
        self._set_up()
        self._devices = dict(self.conn.execute("SELECT name, id FROM devices"))
        self._metrics = dict(self.conn.execute("SELECT name, id FROM metrics"))

    def _set_up(self) -> None:
        # Two processes opening a new store at once (two `mf ingest mqtt` workers) race to switch it
        # to WAL; SQLite answers the loser "locked" at once, without its busy timeout: try again.
        deadline = time.monotonic() + 10
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")
                self.conn.execute("PRAGMA cache_size = -131072")
                for sql in _SCHEMA:
                    self.conn.execute(sql)
                return
            except sqlite.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.conn.close()

    def _id(self, table: str, cache: dict, name: str) -> int:
        found = cache.get(name)
        if found is None:
            self.conn.execute(f"INSERT OR IGNORE INTO {table} (name) VALUES (?)", (name,))
            found = cache[name] = self.conn.execute(f"SELECT id FROM {table} WHERE name = ?", (name,)).fetchone()[0]
        return found

    def device_id(self, name: str) -> int:
        return self._id("devices", self._devices, name)

    def metric_id(self, name: str) -> int:
        return self._id("metrics", self._metrics, name)

    def write(self, rows: Iterable[tuple[str, str, int, float]]) -> int:
        """Store (device, metric, ts µs, value) rows in one transaction; returns how many were new."""
        runs: dict[tuple[str, str], tuple[list, list]] = {}
        for d, m, ts, v in rows:
            run = runs.get((d, m))
            if run is None:
                run = runs[(d, m)] = ([], [])
            run[0].append(ts)
            run[1].append(v)
        return self.write_runs((d, m, t, v) for (d, m), (t, v) in runs.items())

    def write_runs(self, runs: Iterable[tuple[str, str, list, list]]) -> int:
        """Store runs of one (device, metric) each — timestamps and values as two sequences — in one
        transaction; returns how many samples were new. Readers of files hand whole columns, so no
        Python code runs per sample: SQLite binds straight from the lists."""
        import numpy as np

        series: dict[tuple[int, int], tuple[list, list]] = {}
        for d, m, ts, vals in runs:
            if len(ts) == 0:
                continue
            cols = series.setdefault((self.device_id(d), self.metric_id(m)), ([], []))
            cols[0].append(np.asarray(ts, dtype=np.int64))
            cols[1].append(np.asarray(vals, dtype=np.float64))
        keyed = []
        for (di, mi), (ts_parts, val_parts) in series.items():  # one run per series, in key order
            ts = ts_parts[0] if len(ts_parts) == 1 else np.concatenate(ts_parts)
            vals = val_parts[0] if len(val_parts) == 1 else np.concatenate(val_parts)
            if len(ts) > 1 and (ts[1:] < ts[:-1]).any():  # the B-tree is appended to
                order = np.argsort(ts, kind="stable")
                ts, vals = ts[order], vals[order]
            keyed.append((di, mi, ts, vals))
        if not keyed:
            return 0
        keyed.sort(key=lambda r: (r[0], r[1]))
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            keyed = [r for r in (self._only_new(*r) for r in keyed) if len(r[2])]
            conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?)", chain.from_iterable(
                zip(repeat(di), repeat(mi), ts.tolist(), vals.tolist()) for di, mi, ts, vals in keyed))
            if keyed:
                self._merge_minutes(keyed)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return sum(len(r[2]) for r in keyed)

    def _only_new(self, device: int, metric: int, ts, vals):
        """A run without the samples the store holds already (same device, metric and time) or that it
        repeats itself: a redelivered message, a file ingested twice. New data comes after the old,
        so one B-tree seek usually tells there is nothing to take out."""
        import numpy as np

        if len(ts) > 1:
            first = np.concatenate(([True], ts[1:] != ts[:-1]))  # sorted: a repeat sits next to its first
            if not first.all():
                ts, vals = ts[first], vals[first]
        lo, hi = int(ts[0]), int(ts[-1])
        nearest = self.conn.execute("SELECT ts FROM samples WHERE device = ? AND metric = ? AND ts >= ? "
                                    "ORDER BY ts LIMIT 1", (device, metric, lo)).fetchone()
        if nearest is None or nearest[0] > hi:
            return device, metric, ts, vals
        held = np.fromiter((t for (t,) in self.conn.execute(
            "SELECT ts FROM samples WHERE device = ? AND metric = ? AND ts >= ? AND ts <= ?", (device, metric, lo, hi))),
            dtype=np.int64)
        fresh = ~np.isin(ts, held, assume_unique=True)
        return device, metric, ts[fresh], vals[fresh]

    def _merge_minutes(self, keyed: list) -> None:
        """Fold runs of new samples (sorted by device, metric, ts) into the per-minute rollups."""
        import numpy as np

        sizes = [len(r[2]) for r in keyed]
        devices = np.repeat(np.array([r[0] for r in keyed], dtype=np.int64), sizes)
        metrics = np.repeat(np.array([r[1] for r in keyed], dtype=np.int64), sizes)
        ts = np.concatenate([r[2] for r in keyed])
        vals = np.concatenate([r[3] for r in keyed])
        minutes = ts // MINUTE_US
        change = (minutes[1:] != minutes[:-1]) | (metrics[1:] != metrics[:-1]) | (devices[1:] != devices[:-1])
        starts = np.concatenate(([0], np.flatnonzero(change) + 1))
        ends = np.append(starts[1:], len(ts)) - 1
        self.conn.executemany(
            """INSERT INTO rollup_1m VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (device, metric, minute) DO UPDATE SET
                 n = n + excluded.n, total = total + excluded.total,
                 lo = min(lo, excluded.lo), hi = max(hi, excluded.hi),
                 last = CASE WHEN excluded.last_ts > last_ts THEN excluded.last ELSE last END,
                 last_ts = max(last_ts, excluded.last_ts)""",
            zip(devices[starts].tolist(), metrics[starts].tolist(), minutes[starts].tolist(),
                np.diff(np.append(starts, len(ts))).tolist(), np.add.reduceat(vals, starts).tolist(),
                np.minimum.reduceat(vals, starts).tolist(), np.maximum.reduceat(vals, starts).tolist(),
                ts[ends].tolist(), vals[ends].tolist()))

    def prune(self, device: str, before_us: int) -> int:
        """Drop a device's samples (and their minutes) older than `before_us`; returns how many."""
        d = self._devices.get(device)
        if d is None:
            return 0
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            n = self.conn.execute("DELETE FROM samples WHERE device = ? AND ts < ?", (d, before_us)).rowcount
            self.conn.execute("DELETE FROM rollup_1m WHERE device = ? AND minute < ?", (d, before_us // MINUTE_US))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return n

    def dead_letter(self, source: str, reason: str, payload: str) -> None:
        self.conn.execute("INSERT INTO dead_letters (received_at, source, reason, payload) VALUES (?, ?, ?, ?)",
                          (int(time.time() * 1e6), source, reason, payload[:4000]))

    def dead_letters(self, limit: int = 100) -> list[dict]:
        rows = self.conn.execute("SELECT id, received_at, source, reason, payload FROM dead_letters "
                                 "ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(zip(("id", "received_at", "source", "reason", "payload"), r)) for r in rows]

    def query(self, device: str, metric: str, since: int | None, until: int | None, every_us: int | None,
              agg: str) -> list[tuple[int, float]]:
        """(bucket start µs, value) rows; raw samples when `every_us` is None."""
        d, m = self._devices.get(device), self._metrics.get(metric)
        if d is None or m is None:
            return []
        lo, hi = since if since is not None else -(2 ** 62), until if until is not None else 2 ** 62
        if every_us is None:
            return list(self.conn.execute("SELECT ts, value FROM samples WHERE device = ? AND metric = ? AND ts >= ? "
                                          "AND ts < ? ORDER BY ts", (d, m, lo, hi)))
        if every_us % MINUTE_US == 0 and lo % MINUTE_US == 0 and (hi % MINUTE_US == 0 or until is None):
            step = every_us // MINUTE_US  # whole minutes: from the rollups
            args = (step, step, d, m, lo // MINUTE_US, hi // MINUTE_US if until is not None else 2 ** 40)
            if agg == "last":  # the value of the newest sample of each bucket
                sql = ("SELECT g.b, r.last FROM (SELECT (minute / ?) * ? AS b, max(last_ts) AS t FROM rollup_1m "
                       "WHERE device = ? AND metric = ? AND minute >= ? AND minute < ? GROUP BY b) g "
                       "JOIN rollup_1m r ON r.device = ? AND r.metric = ? AND r.last_ts = g.t ORDER BY g.b")
                rows = self.conn.execute(sql, (*args, d, m))
            else:
                expr = {"mean": "sum(total) / sum(n)", "min": "min(lo)", "max": "max(hi)", "count": "sum(n)",
                        "sum": "sum(total)"}[agg]
                rows = self.conn.execute(f"SELECT (minute / ?) * ? AS b, {expr} FROM rollup_1m WHERE device = ? "
                                         f"AND metric = ? AND minute >= ? AND minute < ? GROUP BY b ORDER BY b", args)
            return [(b * MINUTE_US, v) for b, v in rows]
        args = (every_us, every_us, d, m, lo, hi)
        if agg == "last":
            sql = ("SELECT g.b, s.value FROM (SELECT (ts / ?) * ? AS b, max(ts) AS t FROM samples WHERE device = ? "
                   "AND metric = ? AND ts >= ? AND ts < ? GROUP BY b) g "
                   "JOIN samples s ON s.device = ? AND s.metric = ? AND s.ts = g.t ORDER BY g.b")
            return list(self.conn.execute(sql, (*args, d, m)))
        expr = {"mean": "avg(value)", "min": "min(value)", "max": "max(value)", "count": "count(*)",
                "sum": "sum(value)"}[agg]
        return list(self.conn.execute(f"SELECT (ts / ?) * ? AS b, {expr} FROM samples WHERE device = ? AND metric = ? "
                                      f"AND ts >= ? AND ts < ? GROUP BY b ORDER BY b", args))

    def latest_of(self, devices: list[str], metric: str) -> dict[str, tuple[int, float]]:
        """Each device's newest sample of a metric: device → (ts µs, value); one index seek each."""
        m = self._metrics.get(metric)
        if m is None:
            return {}
        out = {}
        sql = "SELECT ts, value FROM samples WHERE device = ? AND metric = ? ORDER BY ts DESC LIMIT 1"
        for name in devices:
            d = self._devices.get(name)
            if d is None:
                continue
            row = self.conn.execute(sql, (d, m)).fetchone()
            if row is not None:
                out[name] = (row[0], row[1])
        return out

    def metrics_of(self, device: str) -> list[tuple[str, int, int, int]]:
        d = self._devices.get(device)
        if d is None:
            return []
        return list(self.conn.execute(
            "SELECT m.name, sum(r.n), min(r.minute), max(r.last_ts) FROM rollup_1m r JOIN metrics m ON m.id = r.metric "
            "WHERE r.device = ? GROUP BY m.name ORDER BY m.name", (d,)))

    # ---- following the store as samples arrive (a live view) ------------------------------------

    def data_version(self) -> int:
        """Changes whenever another connection (another process's ingest) commits: a free poll."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def refresh_names(self) -> None:
        """Pick up devices and metrics another process added since this store was opened."""
        self._devices = dict(self.conn.execute("SELECT name, id FROM devices"))
        self._metrics = dict(self.conn.execute("SELECT name, id FROM metrics"))

    def _metric_ids_of(self, d: int) -> list[int]:
        """The metrics a device has samples of: one B-tree seek per metric, whatever the row count."""
        out, after = [], -1
        while True:
            row = self.conn.execute("SELECT metric FROM samples WHERE device = ? AND metric > ? ORDER BY metric "
                                    "LIMIT 1", (d, after)).fetchone()
            if row is None:
                return out
            out.append(row[0])
            after = row[0]

    def latest(self, device: str) -> dict[str, tuple[int, float]]:
        """metric → (ts µs, value) of the newest sample of each metric of a device."""
        return {name: rows[-1] for name, rows in self.newer(device, {}, limit=1).items()}

    def newer(self, device: str, after: dict[str, int], limit: int = 10_000) -> dict[str, list[tuple[int, float]]]:
        """metric → [(ts µs, value)] of a device's samples newer than `after[metric]` (all of a metric
        not in `after`, up to `limit` of the newest), oldest first."""
        d = self._devices.get(device)
        if d is None:
            return {}
        names = {v: k for k, v in self._metrics.items()}
        out = {}
        for m in self._metric_ids_of(d):
            name = names.get(m)
            if name is None:
                continue
            rows = self.conn.execute("SELECT ts, value FROM samples WHERE device = ? AND metric = ? AND ts > ? "
                                     "ORDER BY ts DESC LIMIT ?", (d, m, after.get(name, -(2 ** 62)), limit)).fetchall()
            if rows:
                out[name] = rows[::-1]
        return out
