"""Ingesting telemetry files into the time-series store, in batches, with dead letters."""

from __future__ import annotations

import time
from pathlib import Path

from metaforge.errors import BadInput
from metaforge.sync.files import READERS

BATCH = 200_000


def store(repo):
    return repo.telemetry()


PARALLEL_BYTES = 4 << 20  # from this much input on, files are read in a second process


def ingest_files(repo, paths: list[Path], device: str | None = None, precision: str = "ns",
                 progress=None, live_twin: bool = True) -> dict:
    """Read telemetry files into the store. Large inputs are parsed in a second process while
    this one writes, so both cores work: parsing and storing cost about the same per sample.
    Every stored sample also goes through the live twin's limits, at its own time. A file that
    cannot be read at all is named in `unreadable` (and dead-lettered); the others go on."""
    from metaforge.thread.devices import require

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
    live = _live_twin(repo) if live_twin else None
    out = {"files": len(paths), "samples": 0, "new": 0, "rejected": 0, "no_reading": 0, "metrics": set(),
           "devices": set(), "unreadable": [], "state_changes": live.changes if live else []}
    started = time.perf_counter()
    parallel = sum(p.stat().st_size for p in paths) >= PARALLEL_BYTES
    messages = _read_elsewhere(paths, device, precision) if parallel else _read(paths, device, precision)
    try:
        for kind, path, *body in messages:
            if kind == "reject":
                out["rejected"] += 1
                ts_store.dead_letter(f"file:{path}", *body)
            elif kind == "error":
                out["unreadable"].append(f"{path}: {body[0]}")
                ts_store.dead_letter(f"file:{path}", f"{Path(path).name}: unreadable: {body[0]}", "")
            else:
                runs = [run for run in body[0] if _known(repo, run, known, ts_store, path, out)]
                out["new"] += _flush(ts_store, runs, out)
                if live is not None and runs:
                    live.observe(runs)
                if progress:
                    progress(out["samples"], 0)
    finally:
        messages.close()
        out["no_reading"] = ts_store.no_reading
        out["samples"] -= ts_store.no_reading
        ts_store.close()
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["duplicates"] = out["samples"] - out["new"]
    out["metrics"], out["devices"] = len(out["metrics"]), sorted(out["devices"])
    return out


def _live_twin(repo):
    from metaforge.sync.live import LiveTwin

    return LiveTwin(repo, actor="agent:mf-ingest")


def _known(repo, run, known: dict, ts_store, path, out: dict) -> bool:
    from metaforge.thread.devices import require

    dev = run[0]
    if dev not in known:
        try:
            require(repo, dev)
            known[dev] = True
        except Exception as exc:
            known[dev] = False
            out["rejected"] += 1
            ts_store.dead_letter(f"file:{path}", f"{Path(path).name}: {exc}", dev)
    return known[dev]


class Sequencer:
    """`seq` for the runs of one file: a sample's place among the file's samples of the same series
    and time. A file arrives in chunks, so a time repeated across two chunks continues its count;
    exact for files in time order (what loggers write): a file that goes back in time across
    chunks counts the repeats of a chunk from 0 again, and such a repeat is taken as sent twice."""

    def __init__(self):
        self.last: dict[tuple[str, str], tuple[int, int]] = {}  # series → (newest time, samples at it)

    def __call__(self, run):
        import numpy as np

        from metaforge.store.telemetry import sequence

        d, m, ts, vals = run[:4]
        ts = np.asarray(ts, dtype=np.int64)
        vals = np.asarray(vals, dtype=np.float64)
        if not len(ts):
            return run
        order, seq = sequence(ts)
        if order is not None:
            ts, vals = ts[order], vals[order]
        newest, count = self.last.get((d, m), (None, 0))
        if newest is not None and ts[0] == newest:
            seq = seq.copy()
            seq[ts == newest] += count
        at_end = int((ts == ts[-1]).sum())
        self.last[(d, m)] = (int(ts[-1]), at_end + (count if newest == ts[-1] else 0))
        return d, m, ts, vals, seq


def _read(paths: list[Path], device: str | None, precision: str):
    """("runs", path, [runs]) in batches of about BATCH samples, ("reject", path, reason, payload)
    as they come, and ("error", path, message) for a file that cannot be read at all."""
    for path in paths:
        reader = READERS[path.suffix.lower()]
        kwargs = {"precision": precision} if reader.__name__ == "read_line_protocol" else {}
        rejects: list = []
        batch, size = [], 0
        numbered = Sequencer()
        try:
            for run in reader(path, device, lambda why, payload: rejects.append((why, payload)), **kwargs):
                batch.append(numbered(run))
                size += len(run[2])
                if size >= BATCH:
                    yield ("runs", str(path), batch)
                    batch, size = [], 0
                for why, payload in rejects:
                    yield ("reject", str(path), why, payload)
                rejects.clear()
            for why, payload in rejects:
                yield ("reject", str(path), why, payload)
            yield ("runs", str(path), batch)
        except Exception as exc:  # noqa: BLE001 — a file no reader can take (not ULog, not UTF-8, ...) is named
            for why, payload in rejects:
                yield ("reject", str(path), why, payload)
            yield ("runs", str(path), batch)
            yield ("error", str(path), f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc))


def _read_elsewhere(paths: list[Path], device: str | None, precision: str):
    """`_read` in a child process, its messages passed back through a bounded queue."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    queue = ctx.Queue(maxsize=4)
    child = ctx.Process(target=_feed, args=(queue, paths, device, precision), daemon=True)
    child.start()
    try:
        while True:
            message = queue.get()
            if message is None:
                return
            yield message
    finally:
        child.kill()
        child.join()


def _feed(queue, paths, device, precision) -> None:
    try:
        for message in _read(paths, device, precision):
            queue.put(message)  # runs hold numpy arrays: they cross the pipe as flat bytes
    except BaseException as exc:  # noqa: BLE001 — whatever stops the reader is told, not lost
        queue.put(("error", "", f"reading failed: {exc}"))
    queue.put(None)


def _flush(ts_store, runs: list, out: dict) -> int:
    if not runs:
        return 0
    out["samples"] += sum(len(r[2]) for r in runs)
    out["metrics"].update(r[1] for r in runs)
    out["devices"].update(r[0] for r in runs)
    return ts_store.write_runs(runs)


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


def retention_cutoffs(repo, now_us: int | None = None) -> dict[str, int]:
    """Each device's retention cut-off (µs): samples older than its policy's `retention_days` go."""
    from metaforge.sync.policy import effective

    now_us = int(time.time() * 1e6) if now_us is None else now_us
    return {name: now_us - int(float(e["policy"]["retention_days"]) * 86_400_000_000)
            for name, e in effective(repo).items()}


def prune(repo, cutoffs: dict[str, int]) -> dict[str, int]:
    """Samples before each device's cut-off, dropped (by key range, in short transactions)."""
    ts_store = store(repo)
    try:
        return {name: ts_store.prune(name, cut) for name, cut in cutoffs.items()}
    finally:
        ts_store.close()


def apply_retention(repo, now_us: int | None = None) -> dict[str, int]:
    """Each device's samples older than its policy's `retention_days`, dropped; per device, how many."""
    return prune(repo, retention_cutoffs(repo, now_us))
