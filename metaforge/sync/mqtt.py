"""`mf ingest mqtt`: telemetry from an MQTT 5 broker into the store, without losing a sample.

- A persistent session (clean_start off, a session expiry): while mf is down, the broker keeps
  its QoS 1 messages; paho reconnects with backoff when the broker goes away. The client id is
  the worker's own: host, repository, group and a worker slot (the lowest free one, held by a
  lock for the life of the process), so two workers of one repository never take each other's
  connection, and a worker that restarts takes its slot, and so its session, again.
- Acknowledged only once stored (paho's manual ack): a message is in the store before the
  broker forgets it. A redelivered message gives the same keys and is stored once.
- Every message is acknowledged once handled, whatever it holds: what cannot be stored (empty,
  malformed, unknown device, a value the store refuses) is a dead letter with its reason, so a
  bad message is never redelivered forever and never stops the worker. Non-finite values (NaN,
  ±inf, null) are no reading: left out and counted.
- `--group NAME` subscribes as `$share/NAME/TOPIC`: several workers split one fleet.
- The broker's own losses: mf follows Mosquitto's `$SYS/broker/publish/messages/dropped` and
  warns and records (a dead letter from `broker:HOST:PORT`) each time it grows.
- Retention runs in a thread of its own, in short transactions, not in the loop that stores.
- Payloads: JSON `{"ts": ..., "metrics": {"name": value, ...}}` (or `{"samples": [...]}`, or a
  list of those; `device` in the payload when the topic does not name it, as in
  `devices/<id>/telemetry`), or InfluxDB line protocol. Anything else is a dead letter.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import orjson

from metaforge.errors import BadInput
from metaforge.store.sqlite import OperationalError
from metaforge.sync.files import FUTURE_US, PAST_US, Columns, parse_line, to_us

_DEVICE_IN_TOPIC = re.compile(r"^devices/([^/]+)/")
ARRIVALS = 100_000
DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"  # Mosquitto: messages it dropped (queue limits)


@dataclass
class Stats:
    messages: int = 0
    samples: int = 0
    new: int = 0
    rejected: int = 0
    acked: int = 0
    reconnects: int = 0
    no_reading: int = 0
    broker_dropped: int = 0
    state_changes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"messages": self.messages, "samples": self.samples, "new": self.new,
                "duplicates": self.samples - self.new, "rejected": self.rejected, "acked": self.acked,
                "reconnects": self.reconnects, "no_reading": self.no_reading,
                "broker_dropped": self.broker_dropped, "state_changes": self.state_changes,
                "warnings": self.warnings}


def parse_payload(topic: str, payload: bytes, now_us: int) -> tuple[list, list, int]:
    """(runs, rejects, samples) of one message: runs are (device, metric, [ts µs], [values]).

    JSON: `{"ts": 1700000000.5, "metrics": {"vbat": 11.9}}`, a list of those, `{"samples": [...]}`,
    or columns for a batch: `{"ts": [t0, t1, ...], "metrics": {"vbat": [v0, v1, ...]}}`; a
    `device` key overrides the device named by the topic. Otherwise InfluxDB line protocol.
    A message that holds nothing (empty, only blanks, no metric) is a reject too; whatever goes
    wrong reading it is one, never an exception."""
    try:
        runs, rejects, n = _parse(topic, payload, now_us)
    except Exception as exc:  # noqa: BLE001 — a message no rule foresaw is a dead letter, not a crash
        return [], [f"unreadable payload: {type(exc).__name__}: {exc}"], 0
    if not runs and not rejects:
        rejects = ["empty payload" if not payload.strip() else "no samples in the payload"]
    return runs, rejects, n


def _parse(topic: str, payload: bytes, now_us: int) -> tuple[list, list, int]:
    m = _DEVICE_IN_TOPIC.match(topic)
    topic_device = m.group(1) if m else None
    text = payload.strip()
    columns = Columns()
    rejects: list[str] = []
    if text[:1] in (b"{", b"["):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return [], [f"malformed JSON: {exc}"], 0
        items = data if isinstance(data, list) else data.get("samples", [data]) if isinstance(data, dict) else None
        if not isinstance(items, list):
            return [], ["JSON payload is neither an object nor a list"], 0
        outer = data.get("device") if isinstance(data, dict) else None
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("metrics"), dict):
                rejects.append("a sample needs {\"ts\": ..., \"metrics\": {...}}")
                continue
            device = item.get("device") or outer or topic_device
            if not device:
                rejects.append("no device in the topic or the payload")
                continue
            if isinstance(item.get("ts"), list):
                _add_columns(columns, str(device), item["ts"], item["metrics"], now_us, rejects)
                continue
            ts = _stamp(item.get("ts"), now_us, rejects)
            if ts is None:
                continue
            for name, value in item["metrics"].items():
                if value is None:  # null: no reading (left out and counted by the store)
                    value = _NO_READING
                elif isinstance(value, bool) or not isinstance(value, (int, float)):
                    rejects.append(f"{name} is not a number: {value!r}")
                    continue
                columns.add(str(device), str(name), ts, float(value))
    else:
        try:
            lines = text.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            return [], ["payload is neither JSON nor line protocol (not UTF-8)"], 0
        for i, line in enumerate(lines, start=1):
            if line.strip():
                for sample in parse_line(line.strip(), topic_device, lambda why, _l: rejects.append(why),
                                         "ns", f"line {i}", now_us):
                    columns.add(*sample)
    runs = columns.drain()
    return runs, rejects, sum(len(r[2]) for r in runs)


_NO_READING = float("nan")


def _stamp(value, now_us: int, rejects: list) -> int | None:
    """A sample's time in µs (epoch s/ms/µs/ns by size, or ISO 8601); None, said, when unusable."""
    if value is None:
        return now_us
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            size = abs(value)  # numbers as numbers: no detour through text
            ts = int(value // 1000) if size > 1e17 else int(value) if size > 1e14 else \
                round(value * 1000) if size > 1e11 else round(value * 1_000_000)
        else:
            ts = to_us(str(value))
    except (ValueError, OverflowError):
        rejects.append(f"bad timestamp {value!r}")
        return None
    if ts > now_us + FUTURE_US:
        rejects.append(f"timestamp in the future: {value!r}")
        return None
    if ts < PAST_US:
        rejects.append(f"timestamp out of range: {value!r}")
        return None
    return ts


def _add_columns(columns, device: str, stamps: list, metrics: dict, now_us: int, rejects: list) -> None:
    """A batch as columns: one list of times, one list of values per metric, of the same length.
    Clean numeric columns are converted whole (numpy); anything else sample by sample, said."""
    import numpy as np

    try:
        ts = np.asarray(stamps, dtype=np.float64)
        if ts.ndim != 1 or not np.isfinite(ts).all():
            raise ValueError
        if not len(ts) or ts.min() <= 0:
            raise ValueError
        lo, hi = _unit_of(float(ts.min())), _unit_of(float(ts.max()))
        if lo != hi:  # seconds mixed with milliseconds: the careful path says which sample is off
            raise ValueError
        scale = {"ns": 1e-3, "us": 1, "ms": 1e3, "s": 1e6}[hi]
        us = np.round(ts * scale).astype(np.int64)
        if us.max() > now_us + FUTURE_US:
            raise ValueError
        ready = {}
        for name, values in metrics.items():
            column = np.asarray(values, dtype=np.float64)
            if column.shape != ts.shape or isinstance(values, (str, bytes)) or \
                    any(isinstance(v, bool) for v in values[:1]):
                raise ValueError
            ready[str(name)] = column
    except (ValueError, TypeError, OverflowError):
        _add_columns_slowly(columns, device, stamps, metrics, now_us, rejects)
        return
    for name, column in ready.items():
        columns.add_run(device, name, us, column)


def _unit_of(size: float) -> str:
    return "ns" if size > 1e17 else "us" if size > 1e14 else "ms" if size > 1e11 else "s"


def _add_columns_slowly(columns, device: str, stamps: list, metrics: dict, now_us: int, rejects: list) -> None:
    ts = [_stamp(v, now_us, rejects) for v in stamps]
    for name, values in metrics.items():
        if not isinstance(values, list) or len(values) != len(ts):
            rejects.append(f"{name}: needs a list of {len(ts)} values, one per ts")
            continue
        for t, value in zip(ts, values):
            if t is None:
                continue
            if value is None:
                value = _NO_READING
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                rejects.append(f"{name} is not a number: {value!r}")
                continue
            columns.add(device, str(name), t, float(value))


def worker_client_id(repo, group: str | None) -> tuple[str, object]:
    """This process's default client id and the lock that holds its slot: the lowest worker slot
    of (repository, group) that no running process holds. Two workers started side by side get
    0 and 1; each, restarted, takes its own slot and resumes its own persistent session."""
    import fcntl
    import hashlib
    import socket

    name = re.sub(r"[^A-Za-z0-9_.-]", "_", group or "solo")
    where = hashlib.sha1(str(repo.root.resolve()).encode()).hexdigest()[:6]
    host = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:16] or "host"
    slots = repo.mfdir / "cache" / "mqtt-workers"
    slots.mkdir(parents=True, exist_ok=True)
    for slot in range(10_000):
        lock = open(slots / f"{name}-{slot}.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        return f"mf-{host}-{where}-{name}-{slot}", lock
    raise BadInput(f"no free worker slot for group {name}")


SWITCH_INTERVAL = 0.0005


def hand_over_sooner() -> None:
    """For a process that ingests: paho's network thread and the writer share the GIL, and at
    Python's default switch interval (5 ms) a message that wakes the writer waits while paho reads
    the next ones; the broker sends no more than its inflight window (20) until acks come. The
    process's owner (the `mf ingest mqtt` command) calls this; the library leaves the setting alone."""
    import sys

    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))


class MqttIngest:
    def __init__(self, repo, broker: str, topic: str = "devices/+/telemetry", qos: int = 1,
                 group: str | None = None, client_id: str | None = None, username: str | None = None,
                 password: str | None = None, ca: str | None = None, batch_ms: int = 20, batch_size: int = 20_000,
                 on_warning=None):
        url = urlparse(broker if "://" in broker else f"mqtt://{broker}")
        if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise BadInput(f"--broker {broker}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        self.host, self.port = url.hostname or "127.0.0.1", url.port or (8883 if url.scheme in ("mqtts", "ssl") else 1883)
        self.tls = url.scheme in ("mqtts", "ssl") or ca is not None
        if qos not in (0, 1, 2):
            raise BadInput(f"--qos {qos}: 0, 1 or 2")
        self.repo, self.topic, self.qos, self.group = repo, topic, qos, group
        self._slot = None
        if client_id is None:
            client_id, self._slot = worker_client_id(repo, group)
        self.client_id = client_id
        self.username, self.password, self.ca = username, password, ca
        self.batch_ms, self.batch_size = batch_ms, batch_size
        self.on_warning = on_warning
        self.stats = Stats()
        self._lock = threading.Lock()
        self._pending: list = []
        self._connection = 0  # which network connection a message came on: acks go only to that one
        self._stop = threading.Event()
        self._arrived = threading.Event()
        self.known: dict[str, bool] = {}
        self.latencies: list[float] | None = None
        self._arrivals: dict[int, int] = {}
        self._dropped_seen: int | None = None  # the broker's dropped-message counter, last read
        self._pruning: threading.Thread | None = None
        self.pruned: dict[str, int] = {}

    # ---- paho callbacks (network thread) ----------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self._lock:
            self._connection += 1
        if reason_code.is_failure:
            return
        subscription = f"$share/{self.group}/{self.topic}" if self.group else self.topic
        client.subscribe([(subscription, self.qos), (DROPPED_TOPIC, 0)])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._lock:
            self._connection += 1
        if not self._stop.is_set():
            self.stats.reconnects += 1

    def _on_message(self, client, userdata, msg):
        # only queue it: parsing here would hold the GIL against the writer, whose SQLite inserts
        # give it up and take it back once per row
        received = self._arrival(msg)
        with self._lock:
            self._pending.append((msg.topic, msg.payload, received, msg.mid, msg.qos, self._connection))
        self._arrived.set()  # the broker lets only ~20 messages wait for an ack: store them now

    def _arrival(self, msg) -> int:
        """When a message arrived (µs): the time of a sample sent without `ts`. A redelivery (DUP)
        of a message seen lately keeps its first arrival, so its samples get the same keys and
        are stored once; the last ARRIVALS messages are remembered."""
        now = int(time.time() * 1e6)
        key = hash((msg.topic, msg.payload))
        if msg.dup:
            first = self._arrivals.get(key)
            if first is not None:
                return first
        self._arrivals[key] = now
        if len(self._arrivals) > ARRIVALS:
            del self._arrivals[next(iter(self._arrivals))]  # the oldest (dicts keep insertion order)
        return now

    # ---- the writer (this thread) -----------------------------------------------------------------

    def _flush(self, client, store, live) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        parsed = []
        for topic, payload, received_us, *_ in batch:
            if topic == DROPPED_TOPIC:
                self._broker_dropped(store, payload)
                continue
            parsed.append((topic, payload, self._parse(store, topic, payload, received_us)))
        runs = [run for *_, message_runs in parsed for run in message_runs]
        before = store.no_reading
        try:
            new = store.write_runs(runs)
        except OperationalError:
            raise  # the store itself failed (disk full, locked too long): nothing acknowledged
        except Exception:  # noqa: BLE001 — some message holds what the store refuses: find which
            new, runs = self._write_one_by_one(store, parsed)
        self.stats.no_reading += store.no_reading - before
        self.stats.samples += sum(len(r[2]) for r in runs) - (store.no_reading - before)
        self.stats.new += new
        if self.latencies is not None:  # broker-to-store, for the benchmark (sender clocks are this one)
            stored_at = time.time() * 1e6
            for run in runs:
                self.latencies.extend(stored_at - ts for ts in run[2])
        if live is not None and runs:
            live.observe(runs)
        # stored: now the broker may forget them. A message that came on an earlier connection is
        # not acknowledged on this one: the broker sends it again (it is dropped by key, and that
        # copy is acknowledged). Acking it here too would acknowledge its packet id twice, and the
        # second could hit a new message not yet stored; Mosquitto 2.0.11 (Debian 12) also loses
        # count of its inflight quota on an unknown id and stops delivering to the session.
        with self._lock:
            for *_, mid, qos, connection in batch:
                if qos > 0 and connection == self._connection:
                    client.ack(mid, qos)
                    self.stats.acked += 1

    def _parse(self, store, topic: str, payload: bytes, received_us: int) -> list:
        message_runs, rejects, _ = parse_payload(topic, payload, received_us)
        self.stats.messages += 1
        for why in rejects:
            self.stats.rejected += 1
            store.dead_letter(f"mqtt:{topic}", why, payload.decode("utf-8", "replace"))
        runs = []
        for run in message_runs:
            if self._known(run[0]):
                runs.append(run)
            else:
                self.stats.rejected += len(run[2])
                store.dead_letter(f"mqtt:{topic}", f"unknown device {run[0]}", payload.decode("utf-8", "replace"))
        return runs

    def _write_one_by_one(self, store, parsed: list) -> tuple[int, list]:
        new, kept = 0, []
        for topic, payload, runs in parsed:
            try:
                new += store.write_runs(runs)
                kept.extend(runs)
            except OperationalError:
                raise
            except Exception as exc:  # noqa: BLE001 — this message: said and set aside, the rest stored
                self.stats.rejected += 1
                store.dead_letter(f"mqtt:{topic}", f"cannot store: {type(exc).__name__}: {exc}",
                                  payload.decode("utf-8", "replace"))
        return new, kept

    def _broker_dropped(self, store, payload: bytes) -> None:
        """Mosquitto's count of messages it dropped (a subscriber's queue full, ...) since it started:
        each rise is said and recorded; a broker restart starts it from 0 again."""
        try:
            total = int(payload.decode().strip())
        except (UnicodeDecodeError, ValueError):
            return
        seen, self._dropped_seen = self._dropped_seen, total
        rise = total if seen is None or total < seen else total - seen
        if rise <= 0:
            return
        self.stats.broker_dropped += rise
        since = "since it started" if seen is None else "since the last count"
        text = (f"the broker {self.host}:{self.port} dropped {rise} message(s) {since} ({DROPPED_TOPIC} = {total}): "
                f"samples sent to it are lost; see the README for Mosquitto settings that keep them "
                f"(max_queued_messages 0, persistence true)")
        self.stats.warnings.append(text)
        store.dead_letter(f"broker:{self.host}:{self.port}", text, str(total))
        if self.on_warning is not None:
            self.on_warning(text)

    def _known(self, device: str) -> bool:
        if device not in self.known:
            self.repo.sync_warnings()
            status = self.repo.index.device_status(f"DeviceInstance:{device}")
            self.known[device] = status is not None and status != "decommissioned"
        return self.known[device]

    def stop(self) -> None:
        self._stop.set()

    def _prune_in_background(self) -> None:
        """Retention, off the path that stores: the cut-offs are read here (the index belongs to
        this thread), the deletes run in a thread with its own connection, in short transactions."""
        if self._pruning is not None and self._pruning.is_alive():
            return
        from metaforge.sync.ingest import prune, retention_cutoffs

        cutoffs = retention_cutoffs(self.repo)
        self._pruning = threading.Thread(target=lambda: self.pruned.update(prune(self.repo, cutoffs)),
                                         name="mf-retention", daemon=True)
        self._pruning.start()

    def run(self, max_messages: int | None = None, duration: float | None = None, live_twin: bool = True,
            idle_exit: float | None = None, prune_every: float = 3600.0) -> Stats:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from metaforge.sync.ingest import store as open_store
        from metaforge.sync.live import LiveTwin

        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        client.on_connect, client.on_message, client.on_disconnect = self._on_connect, self._on_message, self._on_disconnect
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(ca_certs=self.ca)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 24 * 3600  # the broker keeps our QoS 1 messages while we are away
        store = open_store(self.repo)
        live = LiveTwin(self.repo) if live_twin else None
        if live is not None:
            self.stats.state_changes = live.changes  # the same list: visible while it runs
        try:
            client.connect_async(self.host, self.port, keepalive=20, clean_start=False, properties=props)
            client.loop_start()
            started = last_data = time.monotonic()
            last_stale = started
            last_prune = started - prune_every  # retention at start, then every `prune_every` s

            while not self._stop.is_set():
                self._arrived.wait(self.batch_ms / 1000)
                self._arrived.clear()
                had = self.stats.messages
                self._flush(client, store, live)
                now = time.monotonic()
                if self.stats.messages != had:
                    last_data = now
                if now - last_prune >= prune_every:
                    self._prune_in_background()
                    last_prune = now
                if live is not None and now - last_stale >= 1.0:
                    live.check_stale()
                    last_stale = now
                if max_messages is not None and self.stats.messages >= max_messages:
                    break
                if duration is not None and now - started >= duration:
                    break
                if idle_exit is not None and now - last_data >= idle_exit and self.stats.messages:
                    break
            self._flush(client, store, live)  # what it holds, before it goes
        finally:
            self._stop.set()
            client.disconnect()
            client.loop_stop()
            store.close()
            if self._pruning is not None:
                self._pruning.join()
        return self.stats
