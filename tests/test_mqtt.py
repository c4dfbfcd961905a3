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


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def readme_block(name: str) -> str:
    """The fenced block of README.md under `<!-- recipe: NAME -->`: the tests run what it says."""
    text = (ROOT / "README.md").read_text()
    after = text.split(f"<!-- recipe: {name} -->", 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def make_broker(tmp_path, settings: str):
    if not shutil.which("mosquitto"):
        pytest.fail("mosquitto is not installed (.ci/run installs it)")
    port = _free_port()
    conf = tmp_path / f"mosquitto-{port}.conf"
    log = tmp_path / f"mosquitto-{port}.log"
    # as root, mosquitto would drop to user mosquitto and could not write its database here
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"{user}listener {port} 127.0.0.1\nallow_anonymous true\npersistence_location {tmp_path}/\n"
                    f"log_dest file {log}\nlog_type all\n{settings}")

    class Broker:
        url = f"mqtt://127.0.0.1:{port}"
        proc = None
        log_path = log

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

    return Broker()


@pytest.fixture
def broker(tmp_path):
    """Our own Mosquitto on a free port, set up as the README says loses nothing, restartable."""
    b = make_broker(tmp_path, readme_block("mosquitto-lossless"))
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


# ---- issue 25: never stop, never drop silently ---------------------------------------------------

def start_mf(path, url, *args):
    import sys

    return subprocess.Popen([sys.executable, "-m", "metaforge", "ingest", "mqtt", "--broker", url, "--json", *args],
                            cwd=path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_mf(proc):
    import signal

    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, (json.loads(out) if out.strip() else None), err


def store_counts(path):
    from metaforge.repo import Repo
    from metaforge.sync.ingest import store

    s = store(Repo.find(path))
    try:
        n = s.conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        return n, s.dead_letters(1000), s.no_readings()
    finally:
        s.close()


def test_bad_messages_are_acked_and_dead_lettered_and_mf_keeps_going_across_restarts(fleet, broker):
    """Each kind of message that once crashed `mf ingest mqtt` or vanished, sent while the worker is
    away (so its persistent session holds them), then taken by a real `mf` process: it stores what
    it can, says why for the rest, exits 0, and after a restart none of them comes back."""
    first = start_mf(fleet, broker.url)  # a session for this worker, then away
    time.sleep(2.0)
    code, stats, err = stop_mf(first)
    assert code == 0, err
    worker_id = err.split(" as ")[1].split()[0]
    now = time.time()
    ns = lambda dt: int((now + dt) * 1e9)
    bad = [
        f"env x=nan {ns(0.1)}".encode(),                                              # NaN: no reading
        json.dumps({"ts": [now + 0.2, now + 0.3], "metrics": {"x": [1.0, None]}}).encode(),  # null in columns
        json.dumps({"ts": now + 0.4, "metrics": {"x": None, "y": 2.0}}).encode(),     # null, one sample
        f"env x=inf {ns(0.5)}".encode(), f"env x=1e999 {ns(0.6)}".encode(),           # inf, and a float overflow
        b"", b"  \n ",                                                                 # empty
        b"\xff\xfe\x00garbage",                                                        # not UTF-8
        b'{"ts": 1, "metrics": {"x": NaN}}',                                          # NaN is not JSON
        b"[" * 5000,                                                                   # nested past any parser
        b"hello world",                                                                # not line protocol
        json.dumps({"ts": now, "metrics": {"x": 10 ** 30}}).encode(),                  # past 64 bits: a float, kept
        json.dumps({"ts": -1e300, "metrics": {"x": 1.0}}).encode(),                    # a time no store can hold
        json.dumps({"ts": [now + 0.7, -1e300], "metrics": {"x": [1.0, 2.0]}}).encode(),  # the same, in columns
    ]
    pub = publisher(broker.url)
    topic = f"devices/{DEV}/telemetry"
    for payload in bad:
        pub.publish(topic, payload, qos=1).wait_for_publish(5)
    pub.publish(topic, json.dumps({"ts": now + 1, "metrics": {"vbat": 11.9}}), qos=1).wait_for_publish(5)

    second = start_mf(fleet, broker.url)
    assert wait_for(lambda: stored(fleet) == 1, seconds=30)
    time.sleep(1.0)
    code, stats, err = stop_mf(second)
    assert code == 0, err
    assert f" as {worker_id}" in err  # the same worker: its session, with what waited for it
    assert stats["messages"] == len(bad) + 1 and stats["acked"] == len(bad) + 1, stats
    assert stats["no_reading"] == 5 and stats["new"] == 5, stats  # vbat, x=1.0 twice, y=2.0 and x=1e30 stored
    n, letters, gaps = store_counts(fleet)
    reasons = [d["reason"] for d in letters]
    for expected in ("empty payload", "not UTF-8", "malformed JSON", "world is not a number",
                     "timestamp out of range: -1e+300"):
        assert any(expected in r for r in reasons), (expected, reasons)
    assert sum(1 for r in reasons if r == "empty payload") == 2
    assert {(g["metric"], g["values"]) for g in gaps} == {("x", 2), ("env.x", 3)}

    third = start_mf(fleet, broker.url)  # nothing comes back; new data is taken as before
    time.sleep(2.0)
    pub.publish(topic, json.dumps({"ts": now + 2, "metrics": {"vbat": 11.8}}), qos=1).wait_for_publish(5)
    assert wait_for(lambda: stored(fleet) == 2, seconds=20)
    code, stats, err = stop_mf(third)
    assert code == 0, err
    assert stats["messages"] == 1 and stats["rejected"] == 0, stats


def test_a_peak_inside_one_batch_changes_state_at_its_own_time(fleet, broker, mf):
    """0.3 s at 90 °C inside one 100-sample message (columns, 100 Hz): critical at the first hot
    sample's time, back to nominal at the first cool one's."""
    worker, thread = start_worker(fleet, broker.url)
    pub = publisher(broker.url)
    t0 = round(time.time()) - 5.0
    ts = [t0 + i / 100 for i in range(100)]
    temps = [30.0] * 40 + [90.0] * 30 + [30.0] * 30
    pub.publish(f"devices/{DEV}/telemetry", json.dumps({"ts": ts, "metrics": {"board_temp_c": temps}}),
                qos=1).wait_for_publish(5)
    assert wait_for(lambda: worker.stats.messages >= 1)
    worker.stop()
    thread.join(10)
    changes = [(c["to"], c["at"]) for c in worker.stats.state_changes]
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{round(t % 1 * 1e6):06d}Z"
    assert changes == [("nominal", iso(ts[0])), ("critical", iso(ts[40])), ("nominal", iso(ts[70]))], changes
    events = mf("log", f"DeviceInstance:{DEV}", "--type", "device.state_updated", "--limit", "0", "--json",
                cwd=fleet).json
    payloads = sorted((e["payload"]["at"], e["payload"]["to"]) for e in events)
    assert payloads == sorted((at, to) for to, at in changes)
    hot = next(e["payload"] for e in events if e["payload"]["to"] == "critical")
    assert hot["trigger"] == {"metric": "board_temp_c", "value": 90.0}


def test_the_readme_two_worker_recipe(fleet, broker):
    """The README's two commands, as written (only the broker's address is this test's): distinct
    client ids, no connection taken from the other, both take a share, each stores once; a worker
    restarted comes back as itself."""
    import shlex

    commands = [shlex.split(line.replace("mqtt://127.0.0.1:1883", broker.url))
                for line in readme_block("two-workers").splitlines() if line.strip()]
    assert len(commands) == 2 and all(c[:3] == ["mf", "ingest", "mqtt"] for c in commands)
    workers = [start_mf(fleet, broker.url, *c[3:]) for c in commands]
    try:
        probe = publisher(broker.url)
        time.sleep(2.5)
        now = time.time()
        for i in range(1000):
            info = probe.publish(f"devices/{DEV}/telemetry",
                                 json.dumps({"ts": now + i / 1000, "metrics": {"vbat": 11.0}}), qos=1)
            if i % 200 == 199:
                info.wait_for_publish(5)
        assert wait_for(lambda: stored(fleet) == 1000, seconds=60), stored(fleet)
    finally:
        results = [stop_mf(w) for w in workers]
    ids = [err.split(" as ")[1].split()[0] for _, _, err in results]
    assert all(code == 0 for code, _, _ in results), results
    assert len(set(ids)) == 2 and {i.rsplit("-", 1)[1] for i in ids} == {"0", "1"}, ids
    assert all(stats["messages"] > 100 for _, stats, _ in results), results  # both took a share
    assert sum(stats["new"] for _, stats, _ in results) == 1000
    assert "already connected" not in broker.log_path.read_text()
    again = start_mf(fleet, broker.url, *commands[0][3:])  # alone now: the lowest slot, the same id
    time.sleep(1.0)
    code, _, err = stop_mf(again)
    assert code == 0 and f" as {ids[0] if ids[0].endswith('-0') else ids[1]}" in err


@pytest.mark.parametrize("settings", ["lossless", "default-queue"])
def test_what_the_broker_drops_is_said_and_recorded(fleet, tmp_path, settings):
    """500 QoS 1 messages while the worker is away. A broker with Mosquitto's queue limit (here 100,
    the default is 1000) drops the rest: mf, back, warns, records it and counts it. With the
    README's settings it drops nothing and all 500 are stored."""
    lossy = "max_queued_messages 100\nsys_interval 1\npersistence true\nautosave_interval 1\n"
    lossless = readme_block("mosquitto-lossless").replace("sys_interval 10", "sys_interval 1")
    b = make_broker(tmp_path, lossless if settings == "lossless" else lossy)
    b.start()
    try:
        first = start_mf(fleet, b.url)
        time.sleep(2.0)
        assert stop_mf(first)[0] == 0
        pub = publisher(b.url)
        now = time.time()
        for i in range(500):
            info = pub.publish(f"devices/{DEV}/telemetry", json.dumps({"ts": now + i / 100, "metrics": {"vbat": 11.0}}),
                               qos=1)
        info.wait_for_publish(10)
        time.sleep(1.5)  # a $SYS period
        again = start_mf(fleet, b.url)
        expected = 500 if settings == "lossless" else 100
        assert wait_for(lambda: stored(fleet) == expected, seconds=30), stored(fleet)
        time.sleep(2.5)  # the $SYS counter comes within sys_interval
        code, stats, err = stop_mf(again)
    finally:
        b.stop()
    assert code == 0, err
    _, letters, _ = store_counts(fleet)
    broker_letters = [d for d in letters if d["source"].startswith("broker:")]
    if settings == "lossless":
        assert stats["broker_dropped"] == 0 and not broker_letters and "dropped" not in err
    else:
        assert stats["broker_dropped"] == 400, stats
        assert "warning:" in err and "dropped 400 message(s)" in err
        assert len(broker_letters) == 1 and "max_queued_messages" in broker_letters[0]["reason"]


def test_retention_runs_beside_the_ingest_loop(fleet, broker, mf):
    """Samples past the device's retention are pruned by the worker's own thread, at its start,
    while it goes on storing."""
    now = int(time.time())
    (fleet / "old.csv").write_text("ts,vbat\n" + "".join(f"{now - d * 86400},{11 + d / 100}\n" for d in (1, 100, 400)))
    assert mf("ingest", "telemetry", "old.csv", "--device", DEV, cwd=fleet).code == 0
    worker, thread = start_worker(fleet, broker.url)
    pub = publisher(broker.url)
    pub.publish(f"devices/{DEV}/telemetry", json.dumps({"metrics": {"vbat": 11.9}}), qos=1).wait_for_publish(5)
    assert wait_for(lambda: worker.pruned.get(DEV) == 2 and worker.stats.new == 1)
    worker.stop()
    thread.join(10)
    assert stored(fleet) == 2  # a day old and the new one: 100 and 400 days are past 90


def test_a_redelivered_message_without_ts_is_stored_once(fleet):
    """A sample sent without `ts` is stamped on arrival; the broker's redelivery of that message
    (DUP set, as after a reconnect) keeps the first stamp, so it is not a second sample. The same
    payload sent again as a new message (no DUP) is a new sample."""
    from paho.mqtt.client import MQTTMessage

    from metaforge.repo import Repo
    from metaforge.sync.ingest import store
    from metaforge.sync.mqtt import MqttIngest

    worker = MqttIngest(Repo.find(fleet), "mqtt://127.0.0.1:1", client_id="mf-dup-test")

    def message(dup: bool):
        msg = MQTTMessage(mid=7, topic=f"devices/{DEV}/telemetry".encode())
        msg.payload, msg.qos, msg.dup = b'{"metrics": {"vbat": 11.9}}', 0, dup
        return msg

    s = store(Repo.find(fleet))
    try:
        worker._on_message(None, None, message(False))
        time.sleep(0.002)
        worker._on_message(None, None, message(True))  # the broker sends it again
        worker._flush(None, s, None)
        assert worker.stats.new == 1 and worker.stats.samples == 2
        time.sleep(0.002)
        worker._on_message(None, None, message(False))  # the device sends the same reading again
        worker._flush(None, s, None)
        assert worker.stats.new == 2
    finally:
        s.close()
