"""Telemetry files from the bench and the field: CSV, InfluxDB line protocol, PX4 ULog.

Each reader yields runs — (device, metric, timestamps in µs, values), one column of a file at a
time, so that storing them runs no Python code per sample — and reports what it cannot take (a
non-numeric value, a timestamp in the future, a malformed line) to `reject(reason, payload)`:
counted and kept as a dead letter, never a crash and never a silent drop.
"""

from __future__ import annotations

import csv
import re
import time
from itertools import islice
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

Sample = tuple[str, str, int, float]
Run = tuple[str, str, list, list]
Reject = Callable[[str, str], None]
FUTURE_US = 24 * 3600 * 1_000_000  # a day ahead of this machine's clock is a bad clock, not data
PAST_US = -(2 ** 62)  # before this (146,000 years back) a time is no time: it would not fit the store
CHUNK_SAMPLES = 100_000  # about this many samples of a text file per group of runs handed on


class Columns:
    """Samples gathered per (device, metric) into two lists, handed on as runs."""

    def __init__(self):
        self.runs: dict[tuple[str, str], tuple[list, list]] = {}

    def add(self, device: str, metric: str, ts: int, value: float) -> None:
        run = self.runs.get((device, metric))
        if run is None:
            run = self.runs[(device, metric)] = ([], [])
        run[0].append(ts)
        run[1].append(value)

    def add_run(self, device: str, metric: str, ts, values) -> None:
        """Whole columns at once (arrays or lists)."""
        run = self.runs.get((device, metric))
        if run is None:
            self.runs[(device, metric)] = (ts, values)
        else:
            self.runs[(device, metric)] = ([*run[0], *ts], [*run[1], *values])

    def drain(self) -> list[Run]:
        out = [(d, m, t, v) for (d, m), (t, v) in self.runs.items()]
        self.runs = {}
        return out


def to_us(value: str, precision: str | None = None) -> int:
    """A timestamp as written (ISO 8601, or epoch s/ms/µs/ns, guessed by size) in µs."""
    text = value.strip()
    # whole numbers in integer arithmetic: ns stamps exceed a float's 53 bits
    if text.isdigit() or (text[:1] == "-" and text[1:].isdigit()):
        number = int(text)
        if precision is None:
            size = abs(number)
            precision = "ns" if size > 10 ** 17 else "us" if size > 10 ** 14 else "ms" if size > 10 ** 11 else "s"
        if precision in ("ns", "n"):
            return number // 1000
        return number * {"s": 1_000_000, "ms": 1_000, "us": 1, "u": 1}[precision]
    if re.match(r"^-?\d+(\.\d+)?$", text):
        number = float(text)
        if precision:
            return round(number * {"s": 1e6, "ms": 1e3, "us": 1, "u": 1, "ns": 1e-3, "n": 1e-3}[precision])
        scale = 1e-3 if abs(number) > 1e17 else 1 if abs(number) > 1e14 else 1e3 if abs(number) > 1e11 else 1e6
        return round(number * scale)
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return int(stamp.timestamp() * 1_000_000)


def _bad_time(ts: int) -> str | None:
    """Why a time cannot be a sample's, or None."""
    if ts > time.time() * 1_000_000 + FUTURE_US:
        return "timestamp in the future"
    if ts < PAST_US:
        return "timestamp out of range"
    return None


def read_csv(path: Path, device: str | None, reject: Reject) -> Iterator[Run]:
    """A header row with `ts` (or `time`/`timestamp`), optionally `device`, then one column per metric."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        ts_col = next((i for i, h in enumerate(header) if h.lower() in ("ts", "time", "timestamp")), None)
        if ts_col is None:
            raise ValueError(f"{path.name}: no ts/time/timestamp column in the header")
        dev_col = next((i for i, h in enumerate(header) if h.lower() in ("device", "device_id", "serial")), None)
        metrics = [(i, h) for i, h in enumerate(header) if i not in (ts_col, dev_col) and h]
        lineno = 2
        chunk = max(1_000, CHUNK_SAMPLES // max(1, len(metrics)))
        while rows := list(islice(reader, chunk)):
            runs = _csv_columns(rows, len(header), ts_col, dev_col, metrics, device)
            if runs is None:  # something in this chunk is off: row by row, saying what
                runs = _csv_rows(rows, lineno, path, ts_col, dev_col, metrics, device, reject)
            yield from runs
            lineno += len(rows)


def _csv_columns(rows: list, width: int, ts_col: int, dev_col: int | None, metrics: list,
                 device: str | None) -> list[Run] | None:
    """A clean chunk (full rows, one device, every cell a number) column by column at C speed."""
    try:
        if any(len(r) != width for r in rows):
            return None
        if dev_col is not None:
            devices = {r[dev_col].strip() for r in rows}
            if len(devices) != 1:
                return None
            device = devices.pop()
        if not device:
            return None
        stamps = [to_us(r[ts_col]) for r in rows]
        if max(stamps) > time.time() * 1_000_000 + FUTURE_US or min(stamps) < PAST_US:
            return None
        return [(device, name, stamps, [float(r[i]) for r in rows]) for i, name in metrics]
    except ValueError:
        return None


def _csv_rows(rows: list, first_line: int, path: Path, ts_col: int, dev_col: int | None, metrics: list,
              device: str | None, reject: Reject) -> list[Run]:
    columns = Columns()
    for lineno, row in enumerate(rows, start=first_line):
        if not row:
            continue
        where = f"{path.name}:{lineno}"
        try:
            ts = to_us(row[ts_col])
        except (ValueError, IndexError):
            reject(f"{where}: bad timestamp", ",".join(row))
            continue
        bad = _bad_time(ts)
        if bad:
            reject(f"{where}: {bad}", ",".join(row))
            continue
        dev = row[dev_col].strip() if dev_col is not None and dev_col < len(row) else device
        if not dev:
            reject(f"{where}: no device", ",".join(row))
            continue
        for i, name in metrics:
            cell = row[i].strip() if i < len(row) else ""
            if cell == "":
                continue
            try:
                columns.add(dev, name, ts, float(cell))
            except ValueError:
                reject(f"{where}: {name} is not a number: {cell!r}", ",".join(row))
    return columns.drain()


_LP = re.compile(r"^(?P<meas>(?:[^ ,\\]|\\.)+)(?P<tags>(?:,(?:[^ \\]|\\.)+)*) (?P<fields>(?:[^ \\\"]|\\.|\"(?:[^\"\\]|\\.)*\")+)(?: (?P<ts>-?\d+))?$")


_SCALE = {"s": 1_000_000, "ms": 1_000, "us": 1, "u": 1}
_BOOLS = {"t": 1.0, "T": 1.0, "true": 1.0, "True": 1.0, "TRUE": 1.0,
          "f": 0.0, "F": 0.0, "false": 0.0, "False": 0.0, "FALSE": 0.0}


def read_line_protocol(path: Path, device: str | None, reject: Reject, precision: str = "ns") -> Iterator[Run]:
    """`battery,device=FC-1 voltage=11.9,current=3.2 1700000000000000000` → battery.voltage, battery.current."""
    now = int(time.time() * 1_000_000)
    future = now + FUTURE_US
    columns = Columns()
    add = columns.add
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno % 20_000 == 0:
                yield from columns.drain()
            line = raw.strip()
            if not line or line[0] == "#":
                continue
            fast = _fast_line(line, device, precision, future)
            if fast is None:  # escapes, quoted strings, or something wrong: the full parser says what
                for sample in parse_line(line, device, reject, precision, f"{path.name}:{lineno}", now):
                    add(*sample)
            else:
                dev, meas, ts, fields = fast
                for key, value in fields:
                    add(dev, f"{meas}.{key}", ts, value)
    yield from columns.drain()


def _fast_line(line: str, device: str | None, precision: str, future: int):
    """The common plain line (no escapes, no strings) parsed with splits, or None for the full parser."""
    if "\\" in line or '"' in line:
        return None
    parts = line.split(" ")
    if len(parts) != 3:
        return None
    head, body, stamp = parts
    meas, *tags = head.split(",")
    dev = device
    for tag in tags:
        key, _, value = tag.partition("=")
        if key in ("device", "device_id"):
            dev = value
            break
    if not dev or not meas:
        return None
    try:
        ts = int(stamp) // 1000 if precision in ("ns", "n") else int(stamp) * _SCALE[precision]
        fields = []
        for field in body.split(","):
            key, _, value = field.partition("=")
            if not key:
                return None
            number = _BOOLS.get(value)
            fields.append((key, float(value.rstrip("iu")) if number is None else number))
    except (ValueError, KeyError):
        return None
    if ts > future or ts < PAST_US:
        return None
    return dev, meas, ts, fields


def parse_line(line: str, device: str | None, reject: Reject, precision: str, where: str, now: int) -> Iterator[Sample]:
    m = _LP.match(line)
    if not m:
        reject(f"{where}: not line protocol", line)
        return
    tags = dict(t.split("=", 1) for t in m.group("tags").split(",")[1:] if "=" in t)
    dev = tags.get("device") or tags.get("device_id") or device
    if not dev:
        reject(f"{where}: no device tag", line)
        return
    ts = to_us(m.group("ts"), precision) if m.group("ts") else now
    bad = _bad_time(ts)
    if bad:
        reject(f"{where}: {bad}", line)
        return
    for field in re.findall(r'(?:[^,"\\]|\\.|"(?:[^"\\]|\\.)*")+', m.group("fields")):
        key, _, value = field.partition("=")
        value = value.rstrip("iu")
        if value in ("t", "T", "true", "True", "TRUE"):
            value = "1"
        elif value in ("f", "F", "false", "False", "FALSE"):
            value = "0"
        try:
            yield dev, f"{m.group('meas')}.{key}", ts, float(value)
        except ValueError:
            reject(f"{where}: {key} is not a number: {value!r}", line)


def read_ulog(path: Path, device: str | None, reject: Reject) -> Iterator[Run]:
    """A PX4 flight log: every numeric field of every topic, as `topic.field` (a second instance of a
    topic is `topic_1.field`), one run per field with every sample pyulog reads, repeated times
    included (the store tells them apart by their order; NaN, PX4's "no reading", is left out
    there and counted). Boot time is mapped to UTC by the GPS clock when the log has it."""
    import numpy as np
    from pyulog import ULog

    if not device:
        raise ValueError(f"{path.name}: a ULog file needs --device")
    log = ULog(str(path))
    offset = _utc_offset(log, path)
    for data in log.data_list:
        stamps = np.asarray(data.data["timestamp"], dtype=np.int64) + offset
        prefix = data.name if data.multi_id == 0 else f"{data.name}_{data.multi_id}"
        for field, values in data.data.items():
            if field == "timestamp" or field.startswith("_padding") or values.dtype.kind not in "iufb":
                continue
            yield device, f"{prefix}.{field}", stamps, values.astype(np.float64)


def _utc_offset(log, path: Path) -> int:
    for data in log.data_list:
        if data.name in ("vehicle_gps_position", "sensor_gps") and "time_utc_usec" in data.data:
            utc, boot = data.data["time_utc_usec"], data.data["timestamp"]
            valid = utc > 0
            if valid.any():
                i = int(valid.argmax())
                return int(utc[i]) - int(boot[i])
    # no GPS time: take the file's modification time as the log's end
    return int(path.stat().st_mtime * 1e6) - log.last_timestamp


READERS = {".csv": read_csv, ".lp": read_line_protocol, ".line": read_line_protocol, ".influx": read_line_protocol,
           ".ulg": read_ulog}
