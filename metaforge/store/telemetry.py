"""The time-series store: `.metaforge/telemetry.db` (SQLite), never the event log.

A sample is (device, metric, ts in µs, seq, value), in a WITHOUT ROWID table keyed in that order: a
range query for one metric of one device is one B-tree range. `seq` tells apart samples of one
source that share a time (the third reading a PX4 estimator logged at one timestamp, the fifth
event of a burst): it is the sample's place among those of the same time in its message or file.
The same message or file delivered again gives the same keys, so a QoS 1 redelivery or a file
ingested twice is stored once. A value that is not a finite number (NaN, ±inf, JSON null) is no
reading: not stored, counted per device and metric (`no_reading`). Per-minute rollups (count,
sum, min, max, last) are kept beside the raw rows and folded in as batches arrive, so a day at
100 Hz (8.6 M points) answers per minute from 1,440 rows plus the raw rows of the range's two
partial minutes. Rejected input goes to a dead-letter table with its reason, never silently away.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

from metaforge.store import sqlite

MINUTE_US = 60_000_000
ROWS_PER_INSERT = 64
SCHEMA_VERSION = 2
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS devices (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)",
    "CREATE TABLE IF NOT EXISTS metrics (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, unit TEXT)",
    """CREATE TABLE IF NOT EXISTS samples (device INTEGER NOT NULL, metric INTEGER NOT NULL, ts INTEGER NOT NULL,
       seq INTEGER NOT NULL, value REAL NOT NULL, PRIMARY KEY (device, metric, ts, seq)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS rollup_1m (device INTEGER NOT NULL, metric INTEGER NOT NULL, minute INTEGER NOT NULL,
       n INTEGER NOT NULL, total REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL, last_ts INTEGER NOT NULL,
       last REAL NOT NULL, PRIMARY KEY (device, metric, minute)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL,
       source TEXT NOT NULL, reason TEXT NOT NULL, payload TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS no_reading (device INTEGER NOT NULL, metric INTEGER NOT NULL, n INTEGER NOT NULL,
       PRIMARY KEY (device, metric)) WITHOUT ROWID""",
]
_MERGE_MINUTE = """INSERT INTO rollup_1m VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
   ON CONFLICT (device, metric, minute) DO UPDATE SET
     n = n + excluded.n, total = total + excluded.total,
     lo = min(lo, excluded.lo), hi = max(hi, excluded.hi),
     last = CASE WHEN excluded.last_ts >= last_ts THEN excluded.last ELSE last END,
     last_ts = max(last_ts, excluded.last_ts)"""


def sequence(ts):
    """(order, seq) of a run's timestamps: `order` sorts them (None when they are sorted already),
    `seq` is, in that sorted order, each sample's place among those of the same time (0, 1, ...)."""
    import numpy as np

    ts = np.asarray(ts, dtype=np.int64)
    order = None
    if len(ts) > 1 and (ts[1:] < ts[:-1]).any():
        order = np.argsort(ts, kind="stable")  # stable: samples of one time keep the source's order
        ts = ts[order]
    if len(ts) < 2:
        return order, np.zeros(len(ts), dtype=np.int64)
    new = np.empty(len(ts), dtype=bool)
    new[0] = True
    np.not_equal(ts[1:], ts[:-1], out=new[1:])
    if new.all():
        return order, np.zeros(len(ts), dtype=np.int64)
    idx = np.arange(len(ts), dtype=np.int64)
    return order, idx - np.maximum.accumulate(np.where(new, idx, 0))


class TelemetryStore:
    def __init__(self, path: Path):
        self.path = path
        self.conn = sqlite.connect(str(path))
        self._set_up()
        self._devices = dict(self.conn.execute("SELECT name, id FROM devices"))
        self._metrics = dict(self.conn.execute("SELECT name, id FROM metrics"))
        self.no_reading = 0  # non-finite values this connection left out, for the caller to report

    def _set_up(self) -> None:
        # Two processes opening a new store at once (two `mf ingest mqtt` workers) race to switch it
        # to WAL; SQLite answers the loser "locked" at once, without its busy timeout: try again.
        deadline = time.monotonic() + 10
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")
                self.conn.execute("PRAGMA cache_size = -131072")
                if self.conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    self._migrate()
                return
            except sqlite.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        """A store of schema 1 (samples keyed without `seq`) rewritten to schema 2 once, in one
        transaction: every sample it held keeps its key with seq 0."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:  # another process may have
                columns = [r[1] for r in conn.execute("PRAGMA table_info(samples)")]
                if columns and "seq" not in columns:
                    conn.execute("ALTER TABLE samples RENAME TO samples_v1")
                for sql in _SCHEMA:
                    conn.execute(sql)
                if columns and "seq" not in columns:
                    conn.execute("INSERT INTO samples SELECT device, metric, ts, 0, value FROM samples_v1 "
                                 "WHERE value IS NOT NULL ORDER BY device, metric, ts")
                    conn.execute("DROP TABLE samples_v1")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

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
        """Store (device, metric, ts µs, value) rows in one transaction; returns how many were new.
        Rows of one device and metric at one time are told apart by their order here."""
        runs: dict[tuple[str, str], tuple[list, list]] = {}
        for d, m, ts, v in rows:
            run = runs.get((d, m))
            if run is None:
                run = runs[(d, m)] = ([], [])
            run[0].append(ts)
            run[1].append(v)
        return self.write_runs((d, m, t, v) for (d, m), (t, v) in runs.items())

    def write_runs(self, runs: Iterable[tuple]) -> int:
        """Store runs — (device, metric, timestamps, values[, seq]) — in one transaction; returns how
        many samples were new. A run is one source's samples of one series (one MQTT message, one
        column of a file): samples of one time inside it are distinct (their `seq` is their order
        there, unless the run brings its own), while the same key in two runs is one sample sent
        twice. Readers of files hand whole columns, so no Python code runs per sample."""
        series, dropped = self._series_of(runs)
        keyed = [(di, mi, *self._one_series(parts)) for (di, mi), parts in sorted(series.items())]
        if not keyed and not dropped:
            return 0
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            keyed = [r for r in (self._only_new(*r) for r in keyed) if len(r[2])]
            for di, mi, ts, seq, vals in keyed:
                self._insert(di, mi, ts, seq, vals)
            if keyed:
                self._merge_minutes(keyed)
            if dropped:
                conn.executemany("INSERT INTO no_reading VALUES (?, ?, ?) ON CONFLICT (device, metric) "
                                 "DO UPDATE SET n = n + excluded.n", [(d, m, n) for (d, m), n in dropped.items()])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.no_reading += sum(dropped.values())
        return sum(len(r[2]) for r in keyed)

    def _series_of(self, runs: Iterable[tuple]) -> tuple[dict, dict]:
        """Runs gathered per series as (ts, seq, values) parts in arrival order, non-finite values
        taken out and counted: ({(device id, metric id): [parts]}, {(device id, metric id): n})."""
        series: dict[tuple[int, int], list] = {}
        dropped: dict[tuple[int, int], int] = {}
        singles: dict[tuple[int, int], tuple[list, list]] = {}  # one-sample runs (an MQTT message each)
        for run in runs:
            d, m, ts, vals = run[:4]
            if len(ts) == 0:
                continue
            key = (self.device_id(d), self.metric_id(m))
            if len(ts) == 1 and (len(run) < 5 or run[4] is None):  # seq 0: no numpy for one sample
                value = float(vals[0])
                if value - value == 0:  # finite: NaN and ±inf give NaN
                    one = singles.setdefault(key, ([], []))
                    one[0].append(int(ts[0]))
                    one[1].append(value)
                else:
                    dropped[key] = dropped.get(key, 0) + 1
                continue
            part, gone = self._part(run)
            if gone:
                dropped[key] = dropped.get(key, 0) + gone
            if part is None:
                continue
            if key in singles:  # the one-sample runs before this one, in their place: of a key sent twice,
                self._add_singles(series, key, singles.pop(key))  # the first copy stays
            series.setdefault(key, []).append(part)
        for key, one in singles.items():
            self._add_singles(series, key, one)
        return series, dropped

    @staticmethod
    def _part(run: tuple):
        """A run as (ts, seq, values) sorted by time, its non-finite values out: (part or None, how many out)."""
        import numpy as np

        ts = np.asarray(run[2], dtype=np.int64)
        vals = np.asarray(run[3], dtype=np.float64)
        if len(run) > 4 and run[4] is not None:
            seq = np.asarray(run[4], dtype=np.int64)
        else:
            order, seq = sequence(ts)
            if order is not None:
                ts, vals = ts[order], vals[order]
        finite = np.isfinite(vals)
        if finite.all():
            return (ts, seq, vals), 0
        gone = int(len(vals) - finite.sum())
        ts, vals, seq = ts[finite], vals[finite], seq[finite]
        return ((ts, seq, vals) if len(ts) else None), gone

    def _insert(self, di: int, mi: int, ts, seq, vals) -> None:
        """One series' rows, ROWS_PER_INSERT to a statement: a multi-row INSERT binds the same values
        as executemany row by row but steps SQLite a fraction as often (about 1.5x the rows/s)."""
        import numpy as np

        plain = not seq.any()
        row = f"({int(di)}, {int(mi)}, ?, 0, ?)" if plain else f"({int(di)}, {int(mi)}, ?, ?, ?)"
        cols = [ts.tolist(), vals.tolist()] if plain else [ts.tolist(), seq.tolist(), vals.tolist()]
        width, n = len(cols), len(ts)
        whole = n // ROWS_PER_INSERT * ROWS_PER_INSERT
        if whole:
            flat = np.empty(whole * width, dtype=object)
            for i, col in enumerate(cols):
                flat[i::width] = col[:whole]
            self.conn.executemany(f"INSERT INTO samples VALUES {', '.join([row] * ROWS_PER_INSERT)}",
                                  flat.reshape(-1, width * ROWS_PER_INSERT).tolist())
        if whole < n:
            self.conn.executemany(f"INSERT INTO samples VALUES {row}", zip(*(col[whole:] for col in cols)))

    @staticmethod
    def _add_singles(series: dict, key: tuple, one: tuple) -> None:
        import numpy as np

        series.setdefault(key, []).append((np.array(one[0], dtype=np.int64), np.zeros(len(one[0]), dtype=np.int64),
                                           np.array(one[1], dtype=np.float64)))

    @staticmethod
    def _one_series(parts: list):
        """The runs of one series as one (ts, seq, values), in key order, each key once (the first)."""
        import numpy as np

        if len(parts) == 1:
            return parts[0]
        ts = np.concatenate([p[0] for p in parts])
        seq = np.concatenate([p[1] for p in parts])
        vals = np.concatenate([p[2] for p in parts])
        if (ts[1:] < ts[:-1]).any() or ((ts[1:] == ts[:-1]) & (seq[1:] <= seq[:-1])).any():
            order = np.lexsort((seq, ts))  # stable: of a key sent twice, the first copy comes first
            ts, seq, vals = ts[order], seq[order], vals[order]
            first = np.ones(len(ts), dtype=bool)
            first[1:] = (ts[1:] != ts[:-1]) | (seq[1:] != seq[:-1])
            if not first.all():
                ts, seq, vals = ts[first], seq[first], vals[first]
        return ts, seq, vals

    def _only_new(self, device: int, metric: int, ts, seq, vals):
        """A series without the samples the store holds already (same key): a redelivered message, a
        file ingested twice. New data comes after the old, so one B-tree seek usually tells there
        is nothing to take out."""
        import numpy as np

        lo, hi = int(ts[0]), int(ts[-1])
        nearest = self.conn.execute("SELECT ts FROM samples WHERE device = ? AND metric = ? AND ts >= ? "
                                    "ORDER BY ts LIMIT 1", (device, metric, lo)).fetchone()
        if nearest is None or nearest[0] > hi:
            return device, metric, ts, seq, vals
        held = np.array(self.conn.execute(
            "SELECT ts, seq FROM samples WHERE device = ? AND metric = ? AND ts >= ? AND ts <= ?",
            (device, metric, lo, hi)).fetchall(), dtype=np.int64).reshape(-1, 2)
        fresh = ~np.isin(ts, held[:, 0])  # most samples: their time is not held at all
        maybe = np.flatnonzero(~fresh)
        if len(maybe):
            keys = set(zip(held[:, 0].tolist(), held[:, 1].tolist()))
            fresh[maybe] = [k not in keys for k in zip(ts[maybe].tolist(), seq[maybe].tolist())]
        return device, metric, ts[fresh], seq[fresh], vals[fresh]

    def _merge_minutes(self, keyed: list) -> None:
        """Fold series of new samples (sorted by device, metric, ts, seq) into the per-minute rollups."""
        import numpy as np

        sizes = [len(r[2]) for r in keyed]
        if sum(sizes) <= 64:  # a few samples (an MQTT flush): plain Python beats a dozen numpy calls
            self.conn.executemany(_MERGE_MINUTE, self._small_minutes(keyed))
            return
        devices = np.repeat(np.array([r[0] for r in keyed], dtype=np.int64), sizes)
        metrics = np.repeat(np.array([r[1] for r in keyed], dtype=np.int64), sizes)
        ts = np.concatenate([r[2] for r in keyed])
        vals = np.concatenate([r[4] for r in keyed])
        minutes = ts // MINUTE_US
        change = (minutes[1:] != minutes[:-1]) | (metrics[1:] != metrics[:-1]) | (devices[1:] != devices[:-1])
        starts = np.concatenate(([0], np.flatnonzero(change) + 1))
        ends = np.append(starts[1:], len(ts)) - 1
        self.conn.executemany(
            _MERGE_MINUTE,
            zip(devices[starts].tolist(), metrics[starts].tolist(), minutes[starts].tolist(),
                np.diff(np.append(starts, len(ts))).tolist(), np.add.reduceat(vals, starts).tolist(),
                np.minimum.reduceat(vals, starts).tolist(), np.maximum.reduceat(vals, starts).tolist(),
                ts[ends].tolist(), vals[ends].tolist()))

    @staticmethod
    def _small_minutes(keyed: list) -> list:
        out: dict[tuple, list] = {}
        for di, mi, ts, _, vals in keyed:
            for t, v in zip(ts.tolist(), vals.tolist()):
                key = (di, mi, t // MINUTE_US)
                r = out.get(key)
                if r is None:
                    out[key] = [*key, 1, v, v, v, t, v]
                else:
                    r[3] += 1
                    r[4] += v
                    r[5], r[6], r[7], r[8] = min(r[5], v), max(r[6], v), t, v
        return list(out.values())

    def prune(self, device: str, before_us: int, chunk: int = 50_000) -> int:
        """Drop a device's samples (and their minutes) older than the minute `before_us` falls in;
        returns how many. Each metric is one key range (device, metric, ts < cut), deleted in
        transactions of at most `chunk` samples so that a writer waits for none of them long; a
        metric with nothing that old costs one seek."""
        d = self._devices.get(device)
        if d is None:
            return 0
        cut = before_us // MINUTE_US * MINUTE_US  # whole minutes, so the rollups stay true
        dropped = 0
        for m in self._metric_ids_of(d):
            oldest = self.conn.execute("SELECT ts FROM samples WHERE device = ? AND metric = ? ORDER BY ts LIMIT 1",
                                       (d, m)).fetchone()
            if oldest is None or oldest[0] >= cut:
                continue
            while True:
                step = self.conn.execute("SELECT ts FROM samples WHERE device = ? AND metric = ? AND ts < ? "
                                         "ORDER BY ts LIMIT 1 OFFSET ?", (d, m, cut, chunk)).fetchone()
                upto = cut if step is None else step[0]
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    dropped += self.conn.execute("DELETE FROM samples WHERE device = ? AND metric = ? AND ts < ?",
                                                 (d, m, upto)).rowcount
                    self.conn.execute("DELETE FROM rollup_1m WHERE device = ? AND metric = ? AND minute < ?",
                                      (d, m, upto // MINUTE_US))
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                if step is None:
                    break
        return dropped

    def dead_letter(self, source: str, reason: str, payload: str) -> None:
        self.conn.execute("INSERT INTO dead_letters (received_at, source, reason, payload) VALUES (?, ?, ?, ?)",
                          (int(time.time() * 1e6), source, reason, payload[:4000]))

    def dead_letters(self, limit: int = 100) -> list[dict]:
        rows = self.conn.execute("SELECT id, received_at, source, reason, payload FROM dead_letters "
                                 "ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(zip(("id", "received_at", "source", "reason", "payload"), r)) for r in rows]

    def no_readings(self) -> list[dict]:
        """How many non-finite values (no reading) were left out, per device and metric."""
        rows = self.conn.execute("SELECT d.name, m.name, r.n FROM no_reading r JOIN devices d ON d.id = r.device "
                                 "JOIN metrics m ON m.id = r.metric ORDER BY d.name, m.name")
        return [{"device": d, "metric": m, "values": n} for d, m, n in rows]

    def query(self, device: str, metric: str, since: int | None, until: int | None, every_us: int | None,
              agg: str) -> list[tuple[int, float]]:
        """(bucket start µs, value) rows; raw samples when `every_us` is None. Buckets of whole
        minutes are read from the rollups for every whole minute of the range, and from raw rows
        only for the partial minutes at its two ends."""
        d, m = self._devices.get(device), self._metrics.get(metric)
        if d is None or m is None:
            return []
        lo = since if since is not None else -(2 ** 62)
        hi = until if until is not None else 2 ** 62
        if every_us is None:
            return list(self.conn.execute("SELECT ts, value FROM samples WHERE device = ? AND metric = ? AND ts >= ? "
                                          "AND ts < ? ORDER BY ts, seq", (d, m, lo, hi)))
        if every_us % MINUTE_US:
            return self._from_raw(d, m, lo, hi, every_us, agg)
        first = -(-lo // MINUTE_US) * MINUTE_US  # the range's whole minutes: [first, last)
        last = hi // MINUTE_US * MINUTE_US
        if first >= last:
            return self._from_raw(d, m, lo, hi, every_us, agg)
        parts = [self._partial(d, m, lo, first, every_us), self._partial_minutes(d, m, first, last, every_us),
                 self._partial(d, m, last, hi, every_us)]
        buckets: dict[int, list] = {}
        for part in parts:
            for b, n, total, low, high, last_key, last_value in part:
                have = buckets.get(b)
                if have is None:
                    buckets[b] = [n, total, low, high, last_key, last_value]
                else:
                    have[0] += n
                    have[1] += total
                    have[2], have[3] = min(have[2], low), max(have[3], high)
                    if last_key >= have[4]:
                        have[4], have[5] = last_key, last_value
        pick = {"mean": lambda r: r[1] / r[0], "min": lambda r: r[2], "max": lambda r: r[3], "count": lambda r: r[0],
                "sum": lambda r: r[1], "last": lambda r: r[5]}[agg]
        return [(b, pick(r)) for b, r in sorted(buckets.items())]

    def _partial(self, d: int, m: int, lo: int, hi: int, every_us: int) -> list:
        """Raw rows of [lo, hi) as (bucket, n, sum, min, max, (last ts, seq), last value) per bucket."""
        if lo >= hi:
            return []
        rows = self.conn.execute("SELECT ts, seq, value FROM samples WHERE device = ? AND metric = ? AND ts >= ? "
                                 "AND ts < ? ORDER BY ts, seq", (d, m, lo, hi)).fetchall()
        out: dict[int, list] = {}
        for ts, seq, value in rows:
            b = ts // every_us * every_us
            r = out.get(b)
            if r is None:
                out[b] = [b, 1, value, value, value, (ts, seq), value]
            else:
                r[1] += 1
                r[2] += value
                r[3], r[4] = min(r[3], value), max(r[4], value)
                r[5], r[6] = (ts, seq), value
        return list(out.values())

    def _partial_minutes(self, d: int, m: int, first: int, last: int, every_us: int) -> list:
        step = every_us // MINUTE_US
        rows = self.conn.execute(
            "SELECT (minute / ?) * ? AS b, sum(n), sum(total), min(lo), max(hi), max(last_ts) FROM rollup_1m "
            "WHERE device = ? AND metric = ? AND minute >= ? AND minute < ? GROUP BY b ORDER BY b",
            (step, step, d, m, first // MINUTE_US, last // MINUTE_US)).fetchall()
        if not rows:
            return []
        lasts = dict(self.conn.execute(
            "SELECT last_ts, last FROM rollup_1m WHERE device = ? AND metric = ? AND minute >= ? AND minute < ? "
            "AND last_ts IN (SELECT value FROM json_each(?))",
            (d, m, first // MINUTE_US, last // MINUTE_US, "[" + ",".join(str(r[5]) for r in rows) + "]")))
        # a minute's last sample is the newest of its time: ranked above any raw row of that time
        return [(b * MINUTE_US, n, total, low, high, (last_ts, 2 ** 62), lasts[last_ts])
                for b, n, total, low, high, last_ts in rows]

    def _from_raw(self, d: int, m: int, lo: int, hi: int, every_us: int, agg: str) -> list:
        args = (every_us, every_us, d, m, lo, hi)
        if agg == "last":
            sql = ("SELECT g.b, (SELECT s.value FROM samples s WHERE s.device = ? AND s.metric = ? AND s.ts = g.t "
                   "ORDER BY s.seq DESC LIMIT 1) FROM (SELECT (ts / ?) * ? AS b, max(ts) AS t FROM samples "
                   "WHERE device = ? AND metric = ? AND ts >= ? AND ts < ? GROUP BY b) g ORDER BY g.b")
            return list(self.conn.execute(sql, (d, m, *args)))
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
        sql = "SELECT ts, value FROM samples WHERE device = ? AND metric = ? ORDER BY ts DESC, seq DESC LIMIT 1"
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
                                     "ORDER BY ts DESC, seq DESC LIMIT ?", (d, m, after.get(name, -(2 ** 62)), limit)).fetchall()
            if rows:
                out[name] = rows[::-1]
        return out
