"""Virtual devices: `mf device simulate`. A fleet of devices that do not exist yet, whose telemetry
comes from the twin's own behavioral models, published to MQTT as real devices would.

The twin model's composition (`drone-flight`: battery, thermal network, throttle state machine)
runs for every device at once, vectorised (one NumPy column per device), in windows of simulated
time; each window starts from the states the last one ended in. Each device gets its own ambient
temperature, hover current and gust profile (seeded), and each metric its sensor noise. Faults
change what the models are given, for a time: `overheat` (the MCU dissipates several watts: a
stuck core, a blocked air path), `sag` (the pack's series resistance grows tenfold: a damaged
cell), `dropout` (the device goes silent). The first two reach `mf ingest mqtt`'s anomaly
checks through the models, the last its staleness check.

Messages are what `mf ingest mqtt` reads on `devices/<id>/telemetry`: `{"ts": t, "metrics":
{...}}` for one sample, columns (`{"ts": [...], "metrics": {"m": [...]}}`) for a batch.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlparse

from metaforge.errors import BadInput

# metric → (where it comes from, sensor noise σ in the metric's unit, decimals sent)
METRICS: dict[str, tuple[str, float, int]] = {
    "battery_status.voltage_v": ("battery.terminal_voltage", 0.01, 3),
    "battery_status.current_a": ("battery.load_current", 0.05, 3),
    "battery_status.remaining": ("battery.state_of_charge", 0.002, 4),
    "board_temp_c": ("thermal.board_temperature", 0.1, 2),
    "mcu_temp_c": ("thermal.mcu_temperature", 0.25, 2),
    "battery_temp_c": ("thermal.battery_temperature", 0.1, 2),
    "ambient_temp_c": ("ambient_temp_c", 0.05, 2),
    "imu.accel_z": ("imu", 0.0, 3),      # m/s²: gravity plus motor vibration (grows with current)
    "imu.gyro_x": ("imu", 0.0, 4),       # rad/s: turbulence and a per-device bias
    "imu.gyro_y": ("imu", 0.0, 4),
}
FAULTS = {
    "overheat": "the MCU dissipates 6 W (stuck at full load, air path blocked): its temperature climbs past its limit",
    "sag": "the pack's series resistance grows eightfold (a damaged cell): the voltage sags under load",
    "dropout": "the device stops sending (radio or power lost): the ingest marks it stale",
}
OVERHEAT_W = 6.0
SAG_FACTOR = 8.0
WINDOW_SAMPLES = 600_000     # samples (devices × steps) simulated at once: ~25 curves of 8 bytes each
MAX_WINDOW_S = 600.0
MAX_QOS1_MESSAGES = 5_000    # a second, from one paho client (measured ~6,000 on a 2-core machine)


@dataclass(frozen=True)
class Fault:
    name: str
    start: float                  # s of simulated time
    end: float | None = None      # None: to the end
    device: str | None = None     # None: every simulated device

    def active(self, t0: float, t1: float) -> bool:
        """Whether it holds over [t0, t1) (windows are cut at fault edges, so all of it or none)."""
        return self.start <= t0 and (self.end is None or t1 <= self.end)


_FAULT = re.compile(r"^([a-z]+)@([^:\-]+)(?:-([^:]+))?(?::(.+))?$")


def parse_fault(text: str) -> Fault:
    """`overheat@30s`, `sag@1m-3m`, `dropout@20s:FC-002` (NAME@START[-END][:DEVICE])."""
    from metaforge.sim.scenario import parse_duration

    m = _FAULT.match(text.strip())
    if not m or m.group(1) not in FAULTS:
        raise BadInput(f"--fault {text}: expected NAME@TIME[-END][:DEVICE]",
                       "faults: " + ", ".join(FAULTS) + "; e.g. overheat@30s, dropout@1m-2m:FC-002")
    start = 0.0 if m.group(2).strip() in ("0", "0s") else parse_duration(m.group(2))
    end = parse_duration(m.group(3)) if m.group(3) else None
    if end is not None and end <= start:
        raise BadInput(f"--fault {text}: it ends before it starts")
    return Fault(m.group(1), start, end, m.group(4))


# ---- the models, for a fleet ----------------------------------------------------------------------

@dataclass
class Window:
    t: Any                         # (T,) simulated seconds
    values: dict[str, Any]         # metric → (T, n), noise included
    silent: Any                    # (T, n) bool: a dropout holds


class VirtualFleet:
    """The devices' telemetry, window by window, from the twin model's composition."""

    def __init__(self, repo, devices: list[str], twin_model: str, rate_hz: float, faults: list[Fault] = (),
                 seed: int = 0):
        import numpy as np

        from metaforge.sim.whatif import composition_for

        self.devices, self.rate, self.faults = devices, rate_hz, list(faults)
        n = len(devices)
        self.catalog, self.composed = composition_for(repo, twin_model, None)
        knobs = {p.name for p in self.composed.scenario}
        missing = [k for k in ("ambient_temp_c", "load_current_a") if k not in knobs]
        if missing:
            raise BadInput(f"{twin_model}: its composition has no input {', '.join(missing)} to drive devices with")
        known = set(devices)
        for f in self.faults:
            if f.device is not None and f.device not in known:
                raise BadInput(f"--fault {f.name}@…:{f.device}: not one of the simulated devices")
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.ambient = 20.0 + rng.normal(0.0, 2.5, n)                 # °C, where each device flies
        self.hover = 12.0 * (1.0 + rng.normal(0.0, 0.08, n))          # A: airframe and payload differ
        self.gust_period = rng.uniform(8.0, 20.0, n)                  # s
        self.gust_phase = rng.uniform(0.0, 2 * np.pi, n)
        self.gyro_bias = rng.normal(0.0, 0.003, (2, n))               # rad/s
        self.index = {d: i for i, d in enumerate(devices)}
        self.initial: dict[str, Any] = {}
        self.window_s = self._window_length(n)

    def _window_length(self, n: int) -> float:
        steps = max(10, int(WINDOW_SAMPLES // max(n, 1)))
        return min(MAX_WINDOW_S, steps / self.rate)

    def cuts(self, duration: float | None):
        """(t0, t1) windows of simulated time, each a whole number of samples, cut where a fault
        changes a model parameter (`sag`): the others are inputs that vary within a window."""
        edges = sorted({round(e * self.rate) for f in self.faults if f.name == "sag"
                        for e in (f.start, f.end) if e is not None})
        step = max(1, round(self.window_s * self.rate))
        end = None if duration is None else round(duration * self.rate)
        k = 0
        while end is None or k < end:
            nxt = k + step
            nxt = min([e for e in edges if k < e < nxt] + [nxt] + ([end] if end is not None else []))
            yield k / self.rate, nxt / self.rate
            k = nxt

    def _mask(self, name: str, t0: float, t1: float):
        """Devices a fault holds for the whole of [t0, t1)."""
        import numpy as np

        mask = np.zeros(len(self.devices), dtype=bool)
        for f in self.faults:
            if f.name == name and f.active(t0, t1):
                if f.device is None:
                    mask[:] = True
                else:
                    mask[self.index[f.device]] = True
        return mask

    def _active(self, name: str, times):
        """(len(times), n) bool: where a fault holds, sample by sample."""
        import numpy as np

        out = np.zeros((len(times), len(self.devices)), dtype=bool)
        for f in self.faults:
            if f.name != name:
                continue
            when = (times >= f.start - 1e-9) & ((times < f.end - 1e-9) if f.end is not None else True)
            if f.device is None:
                out |= when[:, None]
            else:
                out[:, self.index[f.device]] |= when
        return out

    def window(self, t0: float, t1: float) -> Window:
        import numpy as np

        from metaforge.sim.engine import Scenario, Series, simulate

        n = len(self.devices)
        length = t1 - t0
        grid = np.arange(0.0, length + 1.0, 1.0)  # the gusts, at 1 s
        gust = 1.0 + 0.15 * np.sin(2 * np.pi * (t0 + grid)[:, None] / self.gust_period + self.gust_phase)
        inputs: dict[str, Any] = {"ambient_temp_c": self.ambient,
                                  "load_current_a": Series(grid, self.hover * gust)}
        overheat = self._active("overheat", t0 + grid)
        if overheat.any() and "mcu_power_w" in {p.name for p in self.composed.scenario}:
            base = next(p for p in self.composed.scenario if p.name == "mcu_power_w").default or 0.3
            inputs["mcu_power_w"] = Series(grid, np.where(overheat, OVERHEAT_W, base))
        parameters: dict[str, dict] = {}
        sag = self._mask("sag", t0, t1)
        if sag.any() and "battery" in self.composed.members:
            r0 = float(self.composed.members["battery"].definition.parameters.get("r0_ohm", 0.018))
            parameters["battery"] = {"r0_ohm": np.where(sag, r0 * SAG_FACTOR, r0)}
        sc = Scenario(length, self.rate, n=n, inputs=inputs, parameters=parameters, initial=dict(self.initial))
        out = simulate(self.composed, sc, self.catalog.limit)
        count = round(length * self.rate)
        self._carry(out.curves)
        t = t0 + out.t[:count]
        return Window(t, self._metrics(out.curves, count), self._active("dropout", t))

    def _carry(self, curves: dict) -> None:
        """The states the next window starts from: those a curve shows (a state machine's state,
        a latched event, a thermal node's temperature, a state an output names as it is). The
        others restart from the model's start value at each window (the battery's polarization,
        which settles within a minute)."""
        for alias, loaded in self.composed.members.items():
            d = loaded.definition
            for state in _state_names(d):
                if f"{alias}.{state}" in curves:
                    self.initial[f"{alias}.{state}"] = curves[f"{alias}.{state}"][-1]
            if d.model_type == "thermal-rc":
                for node in d.parameters["nodes"]:
                    curve = curves.get(f"{alias}.{node}_temperature")
                    if curve is not None:
                        self.initial[f"{alias}.{node}"] = curve[-1]
            elif d.model_type == "differential-equation":
                for out in d.outputs:
                    if out.expr and out.expr.strip() in d.states:
                        self.initial[f"{alias}.{out.expr.strip()}"] = curves[f"{alias}.{out.name}"][-1]

    def _metrics(self, curves: dict, count: int) -> dict[str, Any]:
        import numpy as np

        rng, n = self.rng, len(self.devices)
        shape = (count, n)
        out = {}
        for metric, (port, sigma, _) in METRICS.items():
            if port == "imu" or port not in curves:
                continue
            out[metric] = curves[port][:count] + rng.normal(0.0, sigma, shape) if sigma else curves[port][:count]
        current = curves["battery.load_current"][:count] if "battery.load_current" in curves else np.zeros(shape)
        vibration = 0.05 + 0.02 * current
        out["imu.accel_z"] = 9.80665 + vibration * rng.standard_normal(shape)
        turbulence = 0.004 + 0.0005 * current
        out["imu.gyro_x"] = self.gyro_bias[0] + turbulence * rng.standard_normal(shape)
        out["imu.gyro_y"] = self.gyro_bias[1] + turbulence * rng.standard_normal(shape)
        return out



def _state_names(d) -> list[str]:
    if d.model_type == "differential-equation":
        return list(d.states) + list(getattr(d, "events", None) or {})
    if d.model_type == "state-machine":
        return ["state"]
    return []


# ---- publishing -----------------------------------------------------------------------------------

@dataclass
class Stats:
    devices: int = 0
    messages: int = 0
    samples: int = 0
    simulated_s: float = 0.0
    seconds: float = 0.0
    model_seconds: float = 0.0       # in the models and the noise
    encode_seconds: float = 0.0      # making the JSON payloads
    publish_seconds: float = 0.0     # handing them to paho
    max_lag_s: float = 0.0           # how far behind its schedule a batch went out, at worst
    faults: list = field(default_factory=list)

    def as_dict(self) -> dict:
        rate = self.samples / self.seconds if self.seconds else 0.0
        return {"devices": self.devices, "messages": self.messages, "samples": self.samples,
                "simulated_s": round(self.simulated_s, 3), "seconds": round(self.seconds, 3),
                "samples_per_s": round(rate), "model_seconds": round(self.model_seconds, 3),
                "encode_seconds": round(self.encode_seconds, 3), "publish_seconds": round(self.publish_seconds, 3),
                "max_lag_s": round(self.max_lag_s, 3), "faults": self.faults}


def broker_address(broker: str) -> tuple[str, int, bool]:
    url = urlparse(broker if "://" in broker else f"mqtt://{broker}")
    if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise BadInput(f"--broker {broker}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
    tls = url.scheme in ("mqtts", "ssl")
    return url.hostname or "127.0.0.1", url.port or (8883 if tls else 1883), tls


def encode(devices: list[str], ts: list[float], values: dict[str, Any], silent,
           bundle: int = 1) -> list[tuple[str, bytes]]:
    """(topic, payload) per device for a batch of samples (rows of `values`), silent ones left out;
    with `bundle` > 1, one message carries that many devices (a list of samples, each naming its
    device), on the topic of the first: a paho client sends only ~6,000 QoS 1 messages a second."""
    import orjson

    items = samples(devices, ts, values, silent)
    if bundle <= 1:
        return [(f"devices/{device}/telemetry", orjson.dumps(item)) for device, item in items]
    out = []
    for lo in range(0, len(items), bundle):
        part = items[lo:lo + bundle]
        out.append((f"devices/{part[0][0]}/telemetry", orjson.dumps([item | {"device": d} for d, item in part])))
    return out


def samples(devices: list[str], ts: list[float], values: dict[str, Any], silent) -> list[tuple[str, dict]]:
    """(device, its sample or columns) for the devices not silent throughout the batch."""
    import numpy as np

    names = list(values)
    columns = [np.round(values[m], METRICS[m][2] if m in METRICS else 4) for m in names]
    quiet = silent.all(axis=0) if len(silent) else np.zeros(len(devices), dtype=bool)
    out = []
    if len(ts) == 1:
        rows = [c[0].tolist() for c in columns]
        t = ts[0]
        for i, device in enumerate(devices):
            if not quiet[i]:
                out.append((device, {"ts": t, "metrics": dict(zip(names, (r[i] for r in rows)))}))
        return out
    speaking = ~silent
    for i, device in enumerate(devices):
        if quiet[i]:
            continue
        keep = speaking[:, i]
        out.append((device, {"ts": [t for t, k in zip(ts, keep) if k],
                             "metrics": {m: c[keep, i].tolist() for m, c in zip(names, columns)}}))
    return out


class Publisher:
    """One paho client for the whole fleet; QoS 1 with a wide in-flight window by default."""

    def __init__(self, broker: str, qos: int = 1, client_id: str | None = None):
        import os

        import paho.mqtt.client as mqtt

        if qos not in (0, 1, 2):
            raise BadInput(f"--qos {qos}: 0, 1 or 2")
        self.host, self.port, tls = broker_address(broker)
        self.broker, self.qos = broker, qos
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"mf-simulate-{os.getpid()}", protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        if tls:
            self.client.tls_set()

    def __enter__(self):
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise BadInput(f"cannot reach the MQTT broker at {self.broker}: {exc.strerror or exc}",
                           "start one (mosquitto) or give --broker mqtt://HOST:PORT") from None
        self.client.loop_start()
        return self

    def publish(self, messages: list[tuple[str, bytes]]):
        info = None
        for topic, payload in messages:
            info = self.client.publish(topic, payload, qos=self.qos)
        return info

    def __exit__(self, *exc):
        deadline = time.monotonic() + 30
        while self.client.want_write() and time.monotonic() < deadline:
            time.sleep(0.01)
        # QoS 1: wait for the broker to have acknowledged what was sent
        while getattr(self.client, "_out_messages", None) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()


def simulate_devices(fleet: VirtualFleet, publisher: Publisher, *, duration: float | None, batch_s: float = 1.0,
                     speed: float = 1.0, bundle: int = 1, stop: Callable[[], bool] = lambda: False,
                     progress: Callable[[Stats], None] | None = None) -> Stats:
    """Publish the fleet's telemetry: each device one message per `batch_s` of simulated time,
    each batch at its time (`speed` times faster than real time: timestamps are real time)."""
    stats = Stats(devices=len(fleet.devices), faults=[f.__dict__ for f in fleet.faults])
    started_wall, started = time.time(), time.monotonic()
    for window, rows in _batches(fleet, duration, max(1, round(batch_s * fleet.rate)), stats):
        wait = started + float(window.t[rows.stop - 1]) / speed - time.monotonic()
        if wait > 0:
            if _sleep(wait, stop):
                break
        else:
            stats.max_lag_s = max(stats.max_lag_s, -wait)
        if stop():
            break
        ts = [round(started_wall + float(x) / speed, 6) for x in window.t[rows]]
        t = time.perf_counter()
        silent = window.silent[rows]
        messages = encode(fleet.devices, ts, {m: v[rows] for m, v in window.values.items()}, silent, bundle)
        stats.encode_seconds += time.perf_counter() - t
        t = time.perf_counter()
        publisher.publish(messages)
        stats.publish_seconds += time.perf_counter() - t
        stats.messages += len(messages)
        stats.samples += int((~silent).sum()) * len(window.values)
        stats.simulated_s = float(window.t[rows.stop - 1]) + 1.0 / fleet.rate
        if progress:
            progress(stats)
    stats.seconds = time.monotonic() - started
    return stats


def _batches(fleet: VirtualFleet, duration: float | None, per_batch: int, stats: Stats):
    """(window, rows of one batch), window after window, each window simulated when it is reached."""
    for t0, t1 in fleet.cuts(duration):
        t = time.perf_counter()
        window = fleet.window(t0, t1)
        stats.model_seconds += time.perf_counter() - t
        for lo in range(0, len(window.t), per_batch):
            yield window, slice(lo, min(lo + per_batch, len(window.t)))


def _sleep(seconds: float, stop: Callable[[], bool]) -> bool:
    """Sleep, waking to check `stop` every 0.2 s; True if told to stop."""
    end = time.monotonic() + seconds
    while True:
        if stop():
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.2))


def plan(repo, ids: list[str], count: int | None, model: str | None) -> tuple[list[str], str, list[str]]:
    """(device names, their twin model, those the registry does not know). With `count`, the one
    id given is a prefix: ID-00001 … ID-N. Unknown devices need `--model`; `mf ingest mqtt` keeps
    only registered devices' samples (the others are dead letters)."""
    if count is not None:
        if len(ids) != 1 or count < 1:
            raise BadInput("--count N takes one id, the prefix of the devices' names (e.g. SIM --count 10000)")
        width = max(5, len(str(count)))
        ids = [f"{ids[0]}-{i:0{width}d}" for i in range(1, count + 1)]
    if not ids:
        raise BadInput("name at least one device (or a prefix and --count N)")
    if len(set(ids)) != len(ids):
        raise BadInput("a device is named twice")
    names = [i.removeprefix("DeviceInstance:") for i in ids]
    unknown = [n for n in names if repo.index.device_status(f"DeviceInstance:{n}") is None]
    twin = None
    if model:
        twin = model if model.startswith("TwinModel:") else f"TwinModel:{model}"
        if not repo.index.exists(twin):
            raise BadInput(f"unknown twin model {twin}")
    else:
        registered = [n for n in names if n not in set(unknown)]
        if not registered:
            raise BadInput(f"{names[0]} is not a registered device: say which twin model it is a virtual unit of",
                           "--model DroneFlightController-v2.1 (or register it: mf device register ID --model ...)")
        models = repo.index.edges_from(f"DeviceInstance:{registered[0]}", "INSTANCE_OF")
        if not models:
            raise BadInput(f"device {registered[0]} is INSTANCE_OF no TwinModel")
        twin = models[0][1]
    return names, twin, unknown


def run(repo, ids: list[str], *, broker: str, rate_hz: float, duration: float | None, faults: list[str],
        count: int | None = None, model: str | None = None, batch_s: float = 1.0, speed: float = 1.0,
        bundle: int = 1, qos: int = 1, seed: int = 0, stop: Callable[[], bool] = lambda: False,
        started: Callable[[list[str], str, list[str]], None] | None = None,
        progress: Callable[[Stats], None] | None = None) -> Stats:
    """`mf device simulate`: plan the fleet, connect, publish until the duration or `stop()`."""
    if speed <= 0:
        raise BadInput("--speed must be positive")
    if bundle < 1:
        raise BadInput("--bundle: at least 1 device per message")
    if batch_s < 0:
        raise BadInput("--batch must be zero (one message per sample) or more seconds")
    names, twin, unknown = plan(repo, ids, count, model)
    fleet = VirtualFleet(repo, names, twin, rate_hz, [parse_fault(f) for f in faults], seed)
    publisher = Publisher(broker, qos).__enter__()
    try:
        if started:
            started(names, twin, unknown)
        stats = simulate_devices(fleet, publisher, duration=duration, batch_s=batch_s, speed=speed, bundle=bundle,
                                 stop=stop, progress=progress)
    finally:
        draining = time.monotonic()
        publisher.__exit__(None, None, None)  # what is queued goes out (at QoS 1: acknowledged) first
    stats.seconds += time.monotonic() - draining
    return stats
