"""Live telemetry through a real Mosquitto broker: ingest, dead letters, anomalies with hysteresis,
state changes only on change, staleness, shared subscriptions, and a broker restart mid-stream."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

DEV = "FC-SN-20260301-002"
LIMITS = """
[[telemetry.limits]]
metric = "board_temp_c"
unit = "degC"
max = "TwinModel:DroneFlightController-v2.1.max_temp"
warn_margin = 10
hysteresis = 2
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path):
    """Our own Mosquitto on a free port, with persistence, that a test can restart."""
    if not shutil.which("mosquitto"):
        pytest.fail("mosquitto is not installed (.ci/run installs it)")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    # as root, mosquitto would drop to user mosquitto and could not write its database here
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"{user}listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {tmp_path}/\nautosave_interval 1\nmax_queued_messages 0\n")

    class Broker:
        url = f"mqtt://127.0.0.1:{port}"
        proc = None

        def start(self):
            self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    return
                except OSError:
                    time.sleep(0.05)
            raise RuntimeError("mosquitto did not start")

        def stop(self):
            self.proc.terminate()
            self.proc.wait(10)

    b = Broker()
    b.start()
    yield b
    if b.proc.poll() is None:
        b.stop()


@pytest.fixture
def fleet(twin, mf):
    cfg = twin / ".metaforge" / "config.toml"
    cfg.write_text(cfg.read_text() + LIMITS)
    assert mf("device", "register", DEV, "--model", "DroneFlightController-v2.1", "--policy",
              "staleness_threshold_s=1", cwd=twin).code == 0
    return twin


def publisher(url: str, client_id: str | None = None):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    host, port = url.split("//")[1].split(":")
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                    client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}")
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600  # a real device keeps its session across a broker restart too
    c.reconnect_delay_set(min_delay=0.2, max_delay=1)
    c.connect(host, int(port), clean_start=False, properties=props)
    c.loop_start()
    return c


def start_worker(path, url, **kw):
    from metaforge.repo import Repo
    from metaforge.sync.mqtt import MqttIngest

    worker = MqttIngest(Repo.find(path), url, client_id=kw.pop("client_id", f"mf-test-{uuid.uuid4().hex[:6]}"), **kw)
    thread = threading.Thread(target=worker.run, kwargs={"live_twin": kw.get("live", True)} if False else {}, daemon=True)
    thread.start()
    time.sleep(0.5)  # subscribed
    return worker, thread


def stored(path, metric="vbat"):
    from metaforge.repo import Repo
    from metaforge.sync.ingest import store

    s = store(Repo.find(path))
    try:
        return s.conn.execute("SELECT count(*) FROM samples s JOIN metrics m ON m.id = s.metric WHERE m.name = ?",
                              (metric,)).fetchone()[0]
    finally:
        s.close()


def wait_for(cond, seconds=15):
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_json_and_line_protocol_are_stored_and_bad_input_is_dead_lettered(fleet, broker, mf):
    worker, thread = start_worker(fleet, broker.url)
    pub = publisher(broker.url)
    now = time.time()
    topic = f"devices/{DEV}/telemetry"
    msgs = [json.dumps({"ts": now, "metrics": {"vbat": 11.9, "board_temp_c": 40}}),
            json.dumps({"samples": [{"ts": now + 0.01, "metrics": {"vbat": 11.8}}, {"ts": now + 0.02, "metrics": {"vbat": 11.7}}]}),
            f"power vbat=11.6 {int((now + 0.03) * 1e9)}",
            "{not json", json.dumps({"ts": now, "metrics": {"vbat": "high"}}),
            json.dumps({"ts": now + 10 ** 7, "metrics": {"vbat": 1}})]
    for m in msgs:
        pub.publish(topic, m, qos=1).wait_for_publish()
    pub.publish("devices/FC-NOBODY/telemetry", json.dumps({"ts": now, "metrics": {"vbat": 1}}), qos=1).wait_for_publish()
    assert wait_for(lambda: worker.stats.messages >= len(msgs) + 1)
    worker.stop()
    thread.join(10)
    assert stored(fleet) == 3 and stored(fleet, "power.vbat") == 1
    reasons = [d["reason"] for d in mf("telemetry", "dead-letters", "--json", cwd=fleet).json]
    for expected in ("malformed JSON", "vbat is not a number", "timestamp in the future", "unknown device FC-NOBODY"):
        assert any(expected in r for r in reasons), (expected, reasons)
    sources = [d["source"] for d in mf("telemetry", "dead-letters", "--json", cwd=fleet).json]
    assert f"mqtt:devices/{DEV}/telemetry" in sources


def test_anomaly_with_hysteresis_and_state_events_only_on_change(fleet, broker, mf):
    worker, thread = start_worker(fleet, broker.url)
    pub = publisher(broker.url)
    now = time.time()
    # a noisy signal at the warning threshold (40 °C = 50 °C limit - 10): enters warning once, no flapping
    temps = [30, 41, 39.5, 40.5, 39, 40.2, 38.5, 39.9, 51, 49, 50.5, 47.5, 30]
    for i, t in enumerate(temps):
        pub.publish(f"devices/{DEV}/telemetry", json.dumps({"ts": now + i, "metrics": {"board_temp_c": t}}),
                    qos=1).wait_for_publish()
        time.sleep(0.05)  # one sample per flush, as a 1 Hz sensor would arrive
    assert wait_for(lambda: worker.stats.messages >= len(temps))
    worker.stop()
    thread.join(10)
    path = [c["to"] for c in worker.stats.state_changes]
    assert path == ["nominal", "warning", "critical", "warning", "nominal"], path  # no flapping at 40 or 50
    events = mf("log", f"DeviceInstance:{DEV}", "--type", "device.state_updated", "--limit", "0", "--json", cwd=fleet).json
    assert len(events) == len(path)
    assert mf("show", f"DeviceInstance:{DEV}", "--json", cwd=fleet).json["properties"]["health"] == "nominal"


def test_a_silent_device_becomes_stale(fleet, broker, mf):
    worker, thread = start_worker(fleet, broker.url)
    pub = publisher(broker.url)
    pub.publish(f"devices/{DEV}/telemetry", json.dumps({"metrics": {"vbat": 11.9}}), qos=1).wait_for_publish()
    assert wait_for(lambda: any(c["to"] == "stale" for c in worker.stats.state_changes), seconds=6)
    worker.stop()
    thread.join(10)
    assert [c["to"] for c in worker.stats.state_changes] == ["nominal", "stale"]


def test_two_workers_share_one_fleet(fleet, broker):
    a, ta = start_worker(fleet, broker.url, group="fleet")
    b, tb = start_worker(fleet, broker.url, group="fleet")
    pub = publisher(broker.url)
    now = time.time()
    for i in range(400):
        pub.publish(f"devices/{DEV}/telemetry", json.dumps({"ts": now + i / 1000, "metrics": {"vbat": 11.0}}), qos=1)
    assert wait_for(lambda: a.stats.messages + b.stats.messages >= 400)
    for w, t in ((a, ta), (b, tb)):
        w.stop()
        t.join(10)
    assert a.stats.messages > 50 and b.stats.messages > 50  # both took a share
    assert a.stats.messages + b.stats.messages == 400
    assert stored(fleet) == 400


def test_two_mf_ingest_processes_share_one_fleet_and_stop_cleanly(fleet, broker):
    """Two real `mf ingest mqtt --group` processes on one repository: each takes a share, Ctrl-C
    (SIGINT) makes each flush what it holds, and every message is stored exactly once."""
    import signal
    import sys

    workers = [subprocess.Popen([sys.executable, "-m", "metaforge", "ingest", "mqtt", "--broker", broker.url,
                                 "--group", "fleet", "--client-id", f"mf-worker-{i}", "--json"],
                                cwd=fleet, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    try:
        probe = publisher(broker.url)  # wait until both are subscribed: the broker knows two sessions
        time.sleep(2.0)
        now = time.time()
        for i in range(1000):
            info = probe.publish(f"devices/{DEV}/telemetry",
                                 json.dumps({"ts": now + i / 1000, "metrics": {"vbat": 11.0}}), qos=1)
            if i % 200 == 199:  # the broker queues only so many for a subscriber: pace like a device
                info.wait_for_publish(5)
        assert wait_for(lambda: stored(fleet) == 1000, seconds=60), stored(fleet)
        probe.loop_stop()
    finally:
        for w in workers:
            w.send_signal(signal.SIGINT)
        outs = [w.communicate(timeout=20) for w in workers]
    for w, (out, err) in zip(workers, outs):
        assert w.returncode == 0, err
    stats = [json.loads(out) for out, _ in outs]
    assert all(s["messages"] > 100 for s in stats), stats  # both took a share
    assert sum(s["messages"] for s in stats) == 1000 and sum(s["new"] for s in stats) == 1000


def test_a_broker_restart_mid_stream_loses_nothing(fleet, broker):
    worker, thread = start_worker(fleet, broker.url, client_id="mf-restart-test")
    pub = publisher(broker.url, client_id="pub-restart-test")
    now = time.time()
    payloads = [json.dumps({"ts": now + i / 1000, "metrics": {"vbat": 11.0}}) for i in range(3000)]
    infos = {}
    for i, payload in enumerate(payloads):
        infos[i] = pub.publish(f"devices/{DEV}/telemetry", payload, qos=1)
        if i == 1500:  # the broker goes down and comes back in the middle of the stream
            broker.stop()
            time.sleep(0.5)
            broker.start()

    def acked(info) -> bool:
        try:
            return info.is_published()
        except (RuntimeError, ValueError):
            return False

    # like a device with at-least-once delivery: what the broker has not acknowledged is sent again
    for _ in range(20):
        wait_for(pub.is_connected, seconds=10)
        time.sleep(0.5)
        missing = [i for i, info in infos.items() if not acked(info)]
        if not missing:
            break
        for i in missing:
            infos[i] = pub.publish(f"devices/{DEV}/telemetry", payloads[i], qos=1)
    assert all(acked(info) for info in infos.values())
    assert wait_for(lambda: stored(fleet) == 3000, seconds=60), stored(fleet)
    worker.stop()
    thread.join(10)
    assert worker.stats.reconnects >= 1


def test_batch_payloads_as_columns_fast_and_careful():
    """Columns are the batch format: clean ones are taken whole, anything off is said per sample."""
    from metaforge.sync.mqtt import parse_payload

    now_us = int(time.time() * 1e6)
    t = now_us / 1e6 - 10
    topic = f"devices/{DEV}/telemetry"
    runs, rejects, n = parse_payload(topic, json.dumps(
        {"ts": [t, t + 0.01, t + 0.02], "metrics": {"vbat": [11.9, 11.8, 11.7], "temp": [40, 41, 42]}}).encode(), now_us)
    assert n == 6 and not rejects
    by_metric = {m: (list(ts), list(v)) for d, m, ts, v in runs}
    assert by_metric["vbat"][1] == [11.9, 11.8, 11.7] and by_metric["temp"][0][2] - by_metric["temp"][0][0] == 20_000
    ms = int(t * 1000)  # milliseconds are told from seconds by size, as for single samples
    assert parse_payload(topic, json.dumps({"ts": [ms, ms + 10], "metrics": {"v": [1, 2]}}).encode(),
                         now_us)[0][0][2][1] == (ms + 10) * 1000
    runs, rejects, n = parse_payload(topic, json.dumps(
        {"ts": [t, "yesterday", t + 10 ** 7], "metrics": {"vbat": [11.9, 11.8, 11.7], "bad": [1, "x", 3],
                                                         "short": [1.0]}}).encode(), now_us)
    assert n == 2  # vbat and bad at t: the other two times are off
    assert any("bad timestamp 'yesterday'" in r for r in rejects)
    assert any("timestamp in the future" in r for r in rejects)
    assert any("short: needs a list of 3 values" in r for r in rejects)
    _, rejects, n = parse_payload(topic, json.dumps({"ts": [t, t * 1000], "metrics": {"v": [1, 2]}}).encode(), now_us)
    assert n == 2 and not rejects  # each stamp by its own size on the careful path
