"""Ingesting telemetry files into the time-series store, in batches, with dead letters."""

from __future__ import annotations

import time
from pathlib import Path

from metaforge.errors import BadInput
from metaforge.sync.files import READERS

BATCH = 200_000


def store(repo):
    from metaforge.store.telemetry import TelemetryStore

    return TelemetryStore(repo.mfdir / "telemetry.db")


def ingest_files(repo, paths: list[Path], device: str | None = None, precision: str = "ns",
                 progress=None) -> dict:
    from metaforge.sync.devices import require

    known: dict[str, bool] = {}
    if device:
        device = require(repo, device)
        known[device] = True
    for path in paths:
        if not path.is_file():
            raise BadInput(f"{path}: no such file")
        if path.suffix.lower() not in READERS:
            raise BadInput(f"{path}: unknown telemetry format", "csv, lp/line/influx (line protocol) or ulg")
    ts_store = store(repo)
    out = {"files": len(paths), "samples": 0, "new": 0, "rejected": 0, "metrics": set(), "devices": set()}
    started = time.perf_counter()
    try:
        def reject(reason: str, payload: str) -> None:
            out["rejected"] += 1
            ts_store.dead_letter(f"file:{current}", reason, payload)

        for current in paths:
            reader = READERS[current.suffix.lower()]
            kwargs = {"precision": precision} if reader.__name__ == "read_line_protocol" else {}
            try:
                batch = []
                for item in reader(current, device, reject, **kwargs):
                    chunk = item if isinstance(item, list) else [item]  # readers may hand a field at once
                    if not chunk:
                        continue
                    devices = {chunk[0][0]} if isinstance(item, list) else {item[0]}
                    for dev in devices:
                        if dev not in known:
                            try:
                                require(repo, dev)
                                known[dev] = True
                            except Exception as exc:
                                known[dev] = False
                                reject(f"{current.name}: {exc}", dev)
                    if not all(known[d] for d in devices):
                        continue
                    batch.extend(chunk)
                    if len(batch) >= BATCH:
                        out["new"] += _flush(ts_store, batch, out)
                        if progress:
                            progress(out["samples"], 0)
                        batch = []
                out["new"] += _flush(ts_store, batch, out)
            except (ValueError, KeyError, OSError) as exc:
                raise BadInput(f"{current}: {exc}") from None
    finally:
        ts_store.close()
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["duplicates"] = out["samples"] - out["new"]
    out["metrics"], out["devices"] = len(out["metrics"]), sorted(out["devices"])
    return out


def _flush(ts_store, batch: list, out: dict) -> int:
    if not batch:
        return 0
    out["samples"] += len(batch)
    out["metrics"].update(s[1] for s in batch)
    out["devices"].update(s[0] for s in batch)
    return ts_store.write(batch)


def parse_span(text: str | None) -> int | None:
    """`10m`, `1h`, `2d`, `30s` in µs."""
    if text is None:
        return None
    import re

    m = re.match(r"^(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)$", text.strip())
    if not m:
        raise BadInput(f"'{text}' is not a duration", "e.g. 30s, 1m, 2h, 7d")
    return int(float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7, "h": 3.6e9, "d": 8.64e10}[m.group(2)])


def parse_time(text: str | None, now_us: int) -> int | None:
    """An ISO time, an epoch number, or an age like `2h` (that long ago)."""
    if text is None:
        return None
    from metaforge.sync.files import to_us

    try:
        return now_us - parse_span(text)
    except BadInput:
        pass
    try:
        return to_us(text)
    except ValueError:
        raise BadInput(f"'{text}' is not a time", "ISO 8601, epoch seconds, or an age like 2h") from None


def apply_retention(repo, now_us: int | None = None) -> dict[str, int]:
    """Each device's samples older than its policy's `retention_days`, dropped; per device, how many."""
    import time as _time

    now_us = int(_time.time() * 1e6) if now_us is None else now_us
    rows = repo.index.conn.execute("SELECT id, props ->> '$.state.sync_policy.retention_days' FROM nodes "
                                   "WHERE type = 'DeviceInstance' AND deleted = 0").fetchall()
    ts_store = store(repo)
    try:
        out = {}
        for node_id, days in rows:
            name = node_id.split(":", 1)[1]
            keep = float(days) if days is not None else 90.0
            out[name] = ts_store.prune(name, now_us - int(keep * 86_400_000_000))
        return out
    finally:
        ts_store.close()
