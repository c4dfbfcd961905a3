"""Virtual devices (`mf device simulate`): telemetry from the twin's own models, through a real
Mosquitto broker into a real `mf ingest mqtt` process, with faults that trip its anomaly and
staleness checks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from metaforge.repo import Repo

DEV = "FC-SN-20260301-001"   # the template's built unit
TWIN = "TwinModel:DroneFlightController-v2.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path):
    if not shutil.which("mosquitto"):
        pytest.fail("mosquitto is not installed (.ci/run installs it)")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("mosquitto did not start")
    yield f"mqtt://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def _mf(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metaforge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _ingest(cwd: Path, url: str, seconds: float) -> subprocess.Popen:
    """`mf ingest mqtt` as its own process, subscribed before this returns."""
    proc = subprocess.Popen([sys.executable, "-m", "metaforge", "ingest", "mqtt", "--broker", url,
                             "--duration", str(seconds), "--json", "--client-id", f"ingest-{os.getpid()}"],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # its first line comes once it has started (imports, repository open): then it connects and
    # subscribes to the local broker in its first loop, within milliseconds
    assert "ingesting" in proc.stderr.readline()
    time.sleep(0.7)
    return proc


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out)


def _show(cwd: Path) -> dict:
    r = _mf("device", "show", DEV, "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# ---- end to end, through a real broker and a real mf ingest mqtt ------------------------------------

def test_overheat_fault_drives_the_device_critical_through_the_live_twin(twin, broker):
    ingest = _ingest(twin, broker, 9)
    sim = _mf("device", "simulate", DEV, "--broker", broker, "--rate", "10Hz", "--duration", "60s",
              "--speed", "10", "--fault", "overheat@10s", "--json", cwd=twin)
    assert sim.returncode == 0, sim.stderr
    stats = json.loads(sim.stdout)
    assert stats["messages"] == 60 and stats["samples"] == 60 * 10 * 10  # 1 message/s, 10 samples × 10 metrics
    got = _finish(ingest)
    assert got["samples"] == 6000 and got["rejected"] == 0
    path = [(c["from"], c["to"]) for c in got["state_changes"] if c["device"] == DEV]
    # nominal while it hovers, then the MCU passes 75 °C (warning) and 85 °C (critical): in that order
    assert [to for _, to in path] == ["nominal", "warning", "critical"], path
    assert _show(twin)["properties"]["health"] == "critical"
    rows = json.loads(_mf("telemetry", "query", DEV, "mcu_temp_c", "--json", cwd=twin).stdout)
    temps = np.array([r["value"] for r in rows])
    assert len(temps) == 600
    assert temps[:100].max() < 40 and temps[-50:].min() > 85  # the model heats it, it was not set


def test_sag_fault_warns_on_the_pack_voltage(twin, broker):
    ingest = _ingest(twin, broker, 6)
    sim = _mf("device", "simulate", DEV, "--broker", broker, "--rate", "5Hz", "--duration", "40s",
              "--speed", "10", "--fault", "sag@20s", "--json", cwd=twin)
    assert sim.returncode == 0, sim.stderr
    got = _finish(ingest)
    changes = [c for c in got["state_changes"] if c["device"] == DEV]
    assert [c["to"] for c in changes][:2] == ["nominal", "warning"], changes
    rows = json.loads(_mf("telemetry", "query", DEV, "battery_status.voltage_v", "--json", cwd=twin).stdout)
    volts = np.array([r["value"] for r in rows])
    before, after = volts[:100], volts[110:]
    assert before.min() > 11.5 and after.mean() < before.mean() - 1.0  # a sag of more than a volt under load


def test_dropout_fault_goes_stale(twin, broker):
    assert _mf("device", "policy", DEV, "staleness_threshold_s=1", cwd=twin).returncode == 0
    ingest = _ingest(twin, broker, 6)
    sim = _mf("device", "simulate", DEV, "--broker", broker, "--rate", "2Hz", "--duration", "4s",
              "--batch", "0.5", "--fault", "dropout@1s", "--json", cwd=twin)
    assert sim.returncode == 0, sim.stderr
    assert json.loads(sim.stdout)["messages"] == 2  # 0 s and 0.5 s, then silence
    got = _finish(ingest)
    assert [c["to"] for c in got["state_changes"] if c["device"] == DEV] == ["nominal", "stale"]


def test_bundled_messages_reach_the_ingest_device_by_device(twin, broker):
    for i in (1, 2, 3):
        assert _mf("device", "register", f"SIM-{i:05d}", "--model", "DroneFlightController-v2.1", cwd=twin).returncode == 0
    ingest = _ingest(twin, broker, 5)
    sim = _mf("device", "simulate", "SIM", "--count", "3", "--bundle", "2", "--broker", broker, "--rate", "2Hz",
              "--duration", "4s", "--speed", "4", "--json", cwd=twin)
    assert sim.returncode == 0, sim.stderr
    assert json.loads(sim.stdout)["messages"] == 8  # 4 batches × (2 devices + 1 device)
    got = _finish(ingest)
    assert got["messages"] == 8 and got["samples"] == 3 * 8 * 10 and got["rejected"] == 0
    for i in (1, 2, 3):
        rows = json.loads(_mf("telemetry", "query", f"SIM-{i:05d}", "board_temp_c", "--json", cwd=twin).stdout)
        assert len(rows) == 8


# ---- the fleet's telemetry itself ------------------------------------------------------------------

def _collect(url: str, topic: str = "devices/+/telemetry"):
    """A plain paho subscriber: the messages as the broker delivered them."""
    host, port = url.removeprefix("mqtt://").split(":")
    got, ready = [], threading.Event()
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{time.time_ns()}")
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *a: ready.set()
    client.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload)))
    client.connect(host, int(port))
    client.loop_start()
    assert ready.wait(10)
    return client, got


def test_a_fleet_of_unregistered_devices_needs_its_model_and_is_said(twin, broker):
    r = _mf("device", "simulate", "SIM", "--count", "3", "--broker", broker, "--duration", "1s", cwd=twin)
    assert r.returncode == 2 and "--model" in r.stderr
    client, got = _collect(broker)
    r = _mf("device", "simulate", "SIM", "--count", "300", "--model", "DroneFlightController-v2.1", "--broker",
            broker, "--duration", "3s", "--speed", "3", "--json", cwd=twin)
    assert r.returncode == 0, r.stderr
    assert "300 of them are not registered" in r.stderr
    deadline = time.time() + 10
    while len(got) < 900 and time.time() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    assert len(got) == 900  # 300 devices × 3 s, one message per second each
    topics = {t for t, _ in got}
    assert topics == {f"devices/SIM-{i:05d}/telemetry" for i in range(1, 301)}
    first = got[0][1]
    assert set(first["metrics"]) == {"battery_status.voltage_v", "battery_status.current_a", "battery_status.remaining",
                                     "board_temp_c", "mcu_temp_c", "battery_temp_c", "ambient_temp_c",
                                     "imu.accel_z", "imu.gyro_x", "imu.gyro_y"}
    ambient = np.array([p["metrics"]["ambient_temp_c"] for _, p in got[:300]])
    assert ambient.std() > 1.0  # each device flies somewhere else


def test_the_models_drive_the_values_and_the_noise_is_the_sensors(twin):
    from metaforge.sync.simulate import METRICS, VirtualFleet

    repo = Repo(twin)
    try:
        fleet = VirtualFleet(repo, [f"D{i}" for i in range(400)], TWIN, 1.0, seed=7)
        windows = [fleet.window(t0, t1) for t0, t1 in fleet.cuts(240)]
        again = VirtualFleet(repo, [f"D{i}" for i in range(400)], TWIN, 1.0, seed=7).window(0, 240)
    finally:
        repo.close()
    volts = np.concatenate([w.values["battery_status.voltage_v"] for w in windows])
    soc = np.concatenate([w.values["battery_status.remaining"] for w in windows])
    assert volts.shape == (240, 400)
    # four minutes of hover: every pack discharged by the battery model, from a full charge
    assert soc[0].mean() > 0.99 and 0.6 < soc[-1].mean() < 0.85
    assert volts[-10:].mean() < volts[:10].mean() - 0.3
    # sensor noise on top of the model: the sample-to-sample jitter of the MCU temperature is its σ
    mcu = np.concatenate([w.values["mcu_temp_c"] for w in windows])
    jitter = np.diff(mcu, axis=0).std() / np.sqrt(2)
    assert abs(jitter - METRICS["mcu_temp_c"][1]) < 0.03
    # the same seed, the same fleet
    assert len(windows) == 1 and np.array_equal(again.values["mcu_temp_c"], windows[0].values["mcu_temp_c"])


def test_windows_carry_the_models_state_across_their_edges(twin):
    """A sag on one device cuts the run into windows (a parameter changes); on either side of the
    cut the other devices go on where they were: charge, temperatures, the throttle's state."""
    from metaforge.sync.simulate import VirtualFleet, parse_fault

    repo = Repo(twin)
    try:
        fleet = VirtualFleet(repo, ["A", "B", "C"], TWIN, 1.0,
                             [parse_fault("overheat@5s:A"), parse_fault("sag@40s:B")], seed=3)
        cuts = list(fleet.cuts(80))
        windows = [fleet.window(t0, t1) for t0, t1 in cuts]
    finally:
        repo.close()
    assert cuts == [(0.0, 40.0), (40.0, 80.0)]
    values = {m: np.concatenate([w.values[m] for w in windows]) for m in windows[0].values}
    soc, board = values["battery_status.remaining"][:, 2], values["board_temp_c"][:, 2]
    assert abs(soc[40] - soc[39]) < 0.005 and abs(board[40] - board[39]) < 0.6  # C: no jump at the cut
    current = values["battery_status.current_a"][:, 0]
    assert current[:5].mean() > 9 and abs(current[30:40]).mean() < 0.3  # A overheated: the firmware shut down
    assert abs(current[40:]).max() < 1.0  # and it stays down after the cut: the state machine carried over
    volts = values["battery_status.voltage_v"][:, 1]
    assert volts[41:50].mean() < volts[30:39].mean() - 1.0  # B sags from 40 s on


def test_faults_are_parsed_or_refused():
    from metaforge.errors import BadInput
    from metaforge.sync.simulate import parse_fault

    f = parse_fault("dropout@1m-2m:FC-002")
    assert (f.name, f.start, f.end, f.device) == ("dropout", 60.0, 120.0, "FC-002")
    assert parse_fault("overheat@30s").device is None
    for bad in ("melt@10s", "overheat", "sag@20s-10s", "overheat@soon"):
        with pytest.raises(BadInput):
            parse_fault(bad)


def test_bad_options_are_exit_2(twin, broker):
    for args in (["--fault", "melt@10s"], ["--rate", "fast"], ["--fault", "overheat@5s:NOPE"]):
        r = _mf("device", "simulate", DEV, "--broker", broker, "--duration", "1s", *args, cwd=twin)
        assert r.returncode == 2, (args, r.stderr)
    port = _free_port()
    r = _mf("device", "simulate", DEV, "--broker", f"mqtt://127.0.0.1:{port}", "--duration", "1s", cwd=twin)
    assert r.returncode == 2 and "cannot reach the MQTT broker" in r.stderr


def test_the_command_has_help_and_is_in_the_readme(mf):
    r = mf("device", "simulate", "--help")
    assert r.code == 0 and "Usage: mf device simulate" in r.out
    for option in ("--broker", "--rate", "--duration", "--fault", "--count", "--bundle", "--speed", "--json"):
        assert option in r.out
    assert "mf device simulate" in (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_command_passes_what_it_parsed_to_one_library_call(twin, mf, monkeypatch):
    """Thin: the options, parsed (10Hz → 10.0, 1m → 60.0), go to `simulate.run` and nowhere else."""
    from metaforge.sync import simulate

    seen = []

    def run(repo, ids, **kw):
        seen.append((ids, {k: v for k, v in kw.items() if k not in ("stop", "started", "progress")}))
        return simulate.Stats(devices=1)

    monkeypatch.setattr(simulate, "run", run)
    r = mf("device", "simulate", DEV, "--rate", "10Hz", "--duration", "1m", "--fault", "overheat@30s",
           "--fault", "dropout@40s-50s", "--speed", "5", "--bundle", "3", "--qos", "0", "--seed", "9", "--json", cwd=twin)
    assert r.code == 0, r.err
    assert seen == [([DEV], {"broker": "mqtt://127.0.0.1:1883", "rate_hz": 10.0, "duration": 60.0,
                             "faults": ["overheat@30s", "dropout@40s-50s"], "count": None, "model": None,
                             "batch_s": 1.0, "speed": 5.0, "bundle": 3, "qos": 0, "seed": 9})]
    assert r.json["devices"] == 1
