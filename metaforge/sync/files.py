"""Telemetry files from the bench and the field: CSV, InfluxDB line protocol, PX4 ULog.

Each reader yields samples (device, metric, ts in µs, value) and reports what it cannot take
(a non-numeric value, a timestamp in the future, a malformed line) to `reject(reason, payload)`:
counted and kept as a dead letter, never a crash and never a silent drop.
"""

from __future__ import annotations

import csv
import re
import time
from itertools import repeat
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

Sample = tuple[str, str, int, float]
Reject = Callable[[str, str], None]
FUTURE_US = 24 * 3600 * 1_000_000  # a day ahead of this machine's clock is a bad clock, not data


def to_us(value: str, precision: str | None = None) -> int:
    """A timestamp as written (ISO 8601, or epoch s/ms/µs/ns, guessed by size) in µs."""
    text = value.strip()
    if re.match(r"^-?\d+(\.\d+)?$", text):
        number = float(text)
        if precision:
            return int(number * {"s": 1e6, "ms": 1e3, "us": 1, "u": 1, "ns": 1e-3, "n": 1e-3}[precision])
        scale = 1e-3 if abs(number) > 1e17 else 1 if abs(number) > 1e14 else 1e3 if abs(number) > 1e11 else 1e6
        return int(number * scale)
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return int(stamp.timestamp() * 1_000_000)


def _future(ts: int) -> bool:
    return ts > time.time() * 1_000_000 + FUTURE_US


def read_csv(path: Path, device: str | None, reject: Reject) -> Iterator[Sample]:
    """A header row with `ts` (or `time`/`timestamp`), optionally `device`, then one column per metric."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        ts_col = next((i for i, h in enumerate(header) if h.lower() in ("ts", "time", "timestamp")), None)
        if ts_col is None:
            raise ValueError(f"{path.name}: no ts/time/timestamp column in the header")
        dev_col = next((i for i, h in enumerate(header) if h.lower() in ("device", "device_id", "serial")), None)
        metrics = [(i, h) for i, h in enumerate(header) if i not in (ts_col, dev_col) and h]
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            where = f"{path.name}:{lineno}"
            try:
                ts = to_us(row[ts_col])
            except (ValueError, IndexError):
                reject(f"{where}: bad timestamp", ",".join(row))
                continue
            if _future(ts):
                reject(f"{where}: timestamp in the future", ",".join(row))
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
                    yield dev, name, ts, float(cell)
                except ValueError:
                    reject(f"{where}: {name} is not a number: {cell!r}", ",".join(row))


_LP = re.compile(r"^(?P<meas>(?:[^ ,\\]|\\.)+)(?P<tags>(?:,(?:[^ \\]|\\.)+)*) (?P<fields>(?:[^ \\\"]|\\.|\"(?:[^\"\\]|\\.)*\")+)(?: (?P<ts>-?\d+))?$")


def read_line_protocol(path: Path, device: str | None, reject: Reject, precision: str = "ns") -> Iterator[Sample]:
    """`battery,device=FC-1 voltage=11.9,current=3.2 1700000000000000000` → battery.voltage, battery.current."""
    now = int(time.time() * 1_000_000)
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            yield from parse_line(line, device, reject, precision, f"{path.name}:{lineno}", now)


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
    if _future(ts):
        reject(f"{where}: timestamp in the future", line)
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


def read_ulog(path: Path, device: str | None, reject: Reject) -> Iterator[list[Sample]]:
    """A PX4 flight log: every numeric field of every topic, as `topic.field` (a second instance of a
    topic is `topic_1.field`). Boot time is mapped to UTC by the GPS clock when the log has it."""
    import numpy as np
    from pyulog import ULog

    if not device:
        raise ValueError(f"{path.name}: a ULog file needs --device")
    log = ULog(str(path))
    offset = _utc_offset(log, path)
    for data in log.data_list:
        stamps = np.asarray(data.data["timestamp"], dtype=np.int64) + offset
        prefix = data.name if data.multi_id == 0 else f"{data.name}_{data.multi_id}"
        ts_list = stamps.tolist()
        for field, values in data.data.items():
            if field == "timestamp" or field.startswith("_padding") or values.dtype.kind not in "iufb":
                continue
            # a whole field at once, built at C speed: the samples of a flight log number in millions
            yield list(zip(repeat(device), repeat(f"{prefix}.{field}"), ts_list, values.astype(np.float64).tolist()))


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
