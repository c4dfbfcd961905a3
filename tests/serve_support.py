"""What the `mf serve` tests and benchmark share: a twin with a 3D model, a device and a simulation
run; a real `mf serve` process; a real Mosquitto broker; a real `mf ingest mqtt` process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "FC-SN-20260301-001"
PLATE = "DesignElement:enclosure/chassis_plate"
DOME = "DesignElement:enclosure/sensor_mast/lidar_dome"
SIM_RUN = "SimulationRun:what-if-hot-day"
TELEMETRY_CONFIG = f"""
[[telemetry.limits]]
metric = "board_temp_c"
unit = "degC"
max = "TwinModel:DroneFlightController-v2.1.max_temp"
warn_margin = 10
hysteresis = 2

[[telemetry.overlays]]
metric = "board_temp_c"
element = "{PLATE}"
color_map = "thermal"
range = [20, 60]
label = "board temperature"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mf_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def make_twin(path: Path, model: bool = True) -> Path:
    """The drone flight controller template, its enclosure as a STEP assembly (parsed: GLB, manifest
    and the parts as DesignElements), the dome using the GPS module, limits and an overlay for the
    board temperature, and a what-if SimulationRun of the device."""
    from metaforge.cli.app import run
    from metaforge.repo import Repo
    from metaforge.thread.commands import Change, execute
    from metaforge.thread.policy import Source

    assert run(["init", str(path), "--template", "drone-flight-controller"]) == 0
    cfg = path / ".metaforge" / "config.toml"
    cfg.write_text(cfg.read_text() + TELEMETRY_CONFIG)
    repo = Repo.find(path)
    changes = []
    if model:
        changes += step_changes(repo, path)
        changes.append(Change("link", DOME, rel="USES_COMPONENT", dst="BOMItem:GPS1"))
    changes += [
        Change("add", SIM_RUN, props={"scenario": "ambient 45 °C, 8 A hover", "started_at": "2026-03-02T10:00:00Z",
                                      "finished_at": "2026-03-02T10:00:01Z", "result": "ok",
                                      "overrides": {"ambient_temperature": 45},
                                      "outputs": {"results": {"cell_temperature_max": 52.1},
                                                  "curves": {"t_s": [0, 60, 120, 180],
                                                             "units": {"cell_temperature": "degC"},
                                                             "values": {"cell_temperature": [[45, 47.5, 50.2, 52.1]]}}}}),
        Change("link", SIM_RUN, rel="SIMULATES", dst=f"DeviceInstance:{DEVICE}"),
    ]
    execute(repo, changes, actor="user:tester", message="test twin for mf serve", source=Source.TEMPLATE)
    repo.close()
    return path


def step_changes(repo, path: Path) -> list:
    """What `mf ingest` of the STEP file will do: its parts as entities (the file's root is the
    template's DesignElement:enclosure, whose artifact_path names the file)."""
    from step_models import rover

    from metaforge.adapters.step import StepAdapter
    from metaforge.thread.commands import Change

    (path / "mech").mkdir(exist_ok=True)
    rover(path / "mech" / "enclosure.step")
    parsed = StepAdapter().parse(path / "mech" / "enclosure.step", "mech/enclosure.step", root=path)
    assert parsed.extra["manifest"], parsed.extra
    exists = {r[0] for r in repo.index.conn.execute("SELECT id FROM nodes WHERE deleted = 0")}
    changes = []
    for e in parsed.entities:
        changes.append(Change("set" if e.id in exists else "add", e.id, props=e.props))
    for e in parsed.entities:
        changes += [Change("link", e.id, rel=rel, dst=dst) for rel, dst in e.links]
    return changes


class Server:
    """A real `mf serve` process on a free port; `url` once it listens."""

    def __init__(self, root: Path, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "metaforge", "serve", "--port", "0", "--json", *args],
                                     cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**mf_env(), **(env or {})})
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"mf serve did not start: {self.proc.stderr.read()}")
        info = json.loads(line)
        self.url, self.port = info["url"].rstrip("/"), info["port"]
        self.ws_url = self.url.replace("http://", "ws://")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stderr.read()


class Mosquitto:
    """Our own Mosquitto on a free port (the CI machine's may not run one)."""

    def __init__(self, folder: Path):
        if not shutil.which("mosquitto"):
            raise RuntimeError("mosquitto is not installed (.ci/run installs it)")
        self.port = free_port()
        conf = folder / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(f"{user}listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Ingest:
    """A separate `mf ingest mqtt` process on the twin."""

    def __init__(self, root: Path, broker_url: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "metaforge", "ingest", "mqtt", "--broker", broker_url,
                                      "--client-id", f"mf-serve-test-{uuid.uuid4().hex[:6]}"],
                                     cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=mf_env())
        assert "ingesting" in self.proc.stderr.readline()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def publisher(url: str):
    import paho.mqtt.client as mqtt

    host, port = url.split("//")[1].split(":")
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(host, int(port))
    client.loop_start()
    return client


def publish(client, device: str, metrics: dict, ts: float | None = None, qos: int = 0):
    payload = json.dumps({"ts": time.time() if ts is None else ts, "metrics": metrics})
    return client.publish(f"devices/{device}/telemetry", payload, qos=qos)


def schemathesis_run(server: Server, folder: Path, seconds: int, seed: str | None = None, extra: tuple = ()):
    """schemathesis with every check (and tests/serve_schemathesis.toml) against a running server."""
    st = Path(sys.executable).with_name("schemathesis")
    return subprocess.run([str(st), "--config-file", str(ROOT / "tests" / "serve_schemathesis.toml"), "run",
                           f"{server.url}/openapi.json", "--checks", "all", "--max-time", str(seconds),
                           # the config's `enabled = false` does not reach the stateful phase: said here too
                           "--exclude-checks", "use_after_free",
                           "--workers", "1", "--seed", seed or os.environ.get("MF_SCHEMATHESIS_SEED", "20260301"),
                           *extra, "--no-color", "--report-dir", str(folder / "schemathesis-report")],
                          capture_output=True, text=True, timeout=seconds + 600, cwd=folder)
