"""Figures for the operational and live twin (issues 6 and 25). Run: .venv/bin/python benchmarks/bench_telemetry.py

Needs Mosquitto (this machine runs one on 127.0.0.1:1883; the restart figure starts its own).
1. File ingest into the SQLite store: a bench CSV, a 1,000,000-sample line-protocol file and a PX4
   ULog (shared/data/px4) ingested as 8 devices. The CSV is timed against a bare baseline in the
   same run, alternating: the csv module and one sqlite3 `executemany` into a table keyed as mf's.
2. MQTT at QoS 1, one sample per message: a bare paho subscriber, then `mf ingest mqtt`, same
   broker, same publisher, alternating rounds; zero loss counted end to end. Then messages
   carrying 100 samples.
3. Broker-to-store latency at 100 Hz from one device, p99.
4. A broker restart in the middle of a 100,000-message QoS 1 stream: stored exactly once.
5. `mf telemetry query D M --since 24h --every 1m --agg mean` over 24 h at 100 Hz (8.64 M points)
   ending now (not on a minute boundary), and `mf telemetry prune` with nothing to delete.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import mf_cmd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ULOG = ROOT.parent / "shared" / "data" / "px4" / "sample_log_small.ulg"
BROKER = "mqtt://127.0.0.1:1883"


def repo_with_devices(path: Path, n: int):
    from metaforge.repo import Repo
    from metaforge.thread.devices import register

    subprocess.run(mf_cmd() + ["init", str(path), "--template", "drone-flight-controller"], check=True,
                   capture_output=True)
    repo = Repo(path)
    for i in range(n):
        register(repo, f"D{i}", "DroneFlightController-v2.1", actor="agent:bench")
    return repo


def publisher(url: str):
    host, port = url.split("//")[1].split(":")
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                    client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    c.max_inflight_messages_set(200)
    c.connect(host, int(port))
    c.loop_start()
    return c


def publish_all(pub, topic: str, payloads: list[bytes], consumed=None) -> float:
    """Publish at QoS 1 as fast as the broker takes it. This machine's Mosquitto keeps at most
    1,000 QoS 1 messages queued for a subscriber and drops the rest, so the publisher waits for
    its acknowledgements every 500, and, given `consumed` (messages the subscriber has taken),
    keeps the subscriber within 400 of it, as a fleet paced by its devices' rates would be."""
    started = time.perf_counter()
    infos = []
    for i, p in enumerate(payloads):
        infos.append(pub.publish(topic, p, qos=1))
        if i % 100 == 99:
            if i % 500 == 499:
                infos[-1].wait_for_publish(60)
            while consumed is not None and i + 1 - consumed() > 400:
                time.sleep(0.0005)
    for info in infos:
        info.wait_for_publish(60)
    return time.perf_counter() - started


def bare_rate(payloads: list[bytes]) -> float:
    """Messages/s a plain paho subscriber receives (QoS 1, auto ack) from the same publisher."""
    got, done = [0], threading.Event()
    n = len(payloads)
    sub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                      client_id=f"bench-bare-{uuid.uuid4().hex[:6]}")

    def on_message(client, userdata, msg):
        got[0] += 1
        if got[0] == 1:
            got.append(time.perf_counter())
        if got[0] == n:
            got.append(time.perf_counter())
            done.set()

    topic = f"bench/{uuid.uuid4().hex[:6]}/telemetry"
    sub.on_message = on_message
    sub.connect("127.0.0.1", 1883)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    time.sleep(0.5)
    pub = publisher(BROKER)
    publish_all(pub, topic, payloads, consumed=lambda: got[0])
    done.wait(120)
    sub.loop_stop()
    pub.loop_stop()
    if len(got) < 3:
        raise SystemExit(f"the bare subscriber got {got[0]} of {n}: the broker dropped messages")
    return n / (got[-1] - got[1])


def mf_rate(repo, payloads: list[bytes], device: str, samples_each: int) -> tuple[float, int, int]:
    from metaforge.sync.mqtt import MqttIngest

    worker = MqttIngest(repo, BROKER, client_id=f"mf-bench-{uuid.uuid4().hex[:6]}")
    thread = threading.Thread(target=worker.run, kwargs={"max_messages": len(payloads)}, daemon=True)
    thread.start()
    time.sleep(0.7)
    pub = publisher(BROKER)
    started = time.perf_counter()
    publish_all(pub, f"devices/{device}/telemetry", payloads, consumed=lambda: worker.stats.messages)
    thread.join(300)
    seconds = time.perf_counter() - started
    pub.loop_stop()
    return len(payloads) / seconds, worker.stats.new, worker.stats.samples


def mf_process_rate(repo, payloads: list[bytes], device: str, samples_each: int) -> tuple[float, int]:
    """`mf ingest mqtt` as a user runs it, in its own process: samples/s from the first publish to
    the last sample stored (the process's start-up is before, its shutdown after). Progress is
    read from the store's per-minute rollups, which the worker updates with every batch."""
    from metaforge.store import sqlite

    cmd = mf_cmd() + ["ingest", "mqtt", "--broker", BROKER, "--client-id", f"mf-bench-{uuid.uuid4().hex[:6]}",
                      "--max-messages", str(len(payloads)), "--json"]
    proc = subprocess.Popen(cmd, cwd=repo.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # started and subscribed
    db = sqlite.connect(str(repo.mfdir / "telemetry.db"))

    def stored() -> int:
        row = db.execute("SELECT sum(r.n) FROM rollup_1m r JOIN devices d ON d.id = r.device WHERE d.name = ?",
                         (device,)).fetchone()
        return row[0] or 0

    base = stored()
    pub = publisher(BROKER)
    started = time.perf_counter()
    publish_all(pub, f"devices/{device}/telemetry", payloads, consumed=lambda: (stored() - base) // samples_each)
    total = len(payloads) * samples_each
    while stored() - base < total and proc.poll() is None:
        time.sleep(0.001)
    seconds = time.perf_counter() - started
    out, err = proc.communicate(timeout=60)
    pub.loop_stop()
    if proc.returncode != 0:
        raise SystemExit(f"mf ingest mqtt failed: {err}")
    return total / seconds, json.loads(out)["new"]


CSV_ROWS = 100_000  # an EVT bench run at 100 Hz, ten channels: 1,000,000 samples


def bare_csv(path: Path, db: Path) -> float:
    """Samples/s of the plainest Python that stores the same CSV: the csv module, float(), and one
    sqlite3 `executemany` into a table keyed as mf's (WAL, synchronous NORMAL, one transaction)."""
    import csv

    from metaforge.store import sqlite

    conn = sqlite.connect(str(db))
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE samples (device INTEGER NOT NULL, metric INTEGER NOT NULL, ts INTEGER NOT NULL, "
                 "seq INTEGER NOT NULL, value REAL NOT NULL, PRIMARY KEY (device, metric, ts, seq)) WITHOUT ROWID")
    started = time.perf_counter()
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [(1, m, int(r[0]) * 1000, 0, float(r[m])) for r in reader for m in range(1, len(header))]
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return len(rows) / seconds
LP_LINES = 200_000  # five fields each: 1,000,000 samples


def bench_files(work: Path) -> list[tuple[str, float]]:
    """(figure name, samples/s) for a bench CSV, a line-protocol file and the PX4 ULog."""
    from metaforge.sync.ingest import ingest_files

    repo = repo_with_devices(work / "files", 8)
    figures = []
    csv_path = work / "files" / "evt-run.csv"
    names = ["v_batt", "i_batt", "v_5v", "i_5v", "v_3v3", "i_3v3", "t_mcu", "t_ldo", "t_buck", "rpm"]
    t0 = 1_700_000_000_000  # ms
    with open(csv_path, "w") as f:
        f.write("ts," + ",".join(names) + "\n")
        for i in range(CSV_ROWS):
            f.write(f"{t0 + i * 10}," + ",".join(f"{(i * 7 + k) % 97 / 10:.2f}" for k in range(10)) + "\n")
    mf_rates, bare_rates = [], []
    for round_ in range(3):  # alternating, each into a fresh store: the load of the machine hits both
        db = work / "files" / f"bare-{round_}.db"
        bare_rates.append(bare_csv(csv_path, db))
        db.unlink()
        device = f"D{round_}"
        started = time.perf_counter()
        out = ingest_files(repo, [csv_path], device)
        mf_rates.append(out["samples"] / (time.perf_counter() - started))
    ratios = sorted(m / b for m, b in zip(mf_rates, bare_rates))
    figures.append((f"file ingest, bench CSV at 100 Hz x 10 channels ({out['samples']:,} samples), samples/s, "
                    f"best of 3", max(mf_rates)))
    figures.append(("  bare csv + executemany, same file, samples/s, best of 3", max(bare_rates)))
    figures.append((f"  mf / bare, median of 3 alternating rounds ({', '.join(f'{r:.2f}' for r in ratios)})",
                    ratios[1]))
    lp = work / "files" / "bench.lp"
    base = 1_700_000_000 * 10 ** 9
    with open(lp, "w") as f:
        for i in range(LP_LINES):
            f.write(f"power,device=D1 v3v3={3.3 + i % 7 / 100},i3v3={0.1 + i % 5 / 100},v5={5.0},i5={0.2},"
                    f"temp={40 + i % 9} {base + i * 10_000_000}\n")
    started = time.perf_counter()
    out = ingest_files(repo, [lp])
    figures.append((f"file ingest, line protocol ({out['samples']:,} samples), samples/s",
                    out["samples"] / (time.perf_counter() - started)))
    samples = 0
    started = time.perf_counter()
    for i in range(8):
        samples += ingest_files(repo, [ULOG], f"D{i}")["samples"]
    figures.append((f"file ingest, PX4 ULog, 8 files one by one ({samples:,} samples), samples/s",
                    samples / (time.perf_counter() - started)))
    return figures


def bench_latency(repo) -> float:
    from metaforge.sync.mqtt import MqttIngest

    worker = MqttIngest(repo, BROKER, client_id=f"mf-lat-{uuid.uuid4().hex[:6]}")
    worker.latencies = []
    thread = threading.Thread(target=worker.run, kwargs={"max_messages": 1000}, daemon=True)
    thread.start()
    time.sleep(0.7)
    pub = publisher(BROKER)
    next_at = time.perf_counter()
    for _ in range(1000):  # 10 s at 100 Hz
        pub.publish("devices/D1/telemetry", json.dumps({"ts": time.time(), "metrics": {"gyro": 0.01}}), qos=1)
        next_at += 0.01
        time.sleep(max(0.0, next_at - time.perf_counter()))
    thread.join(60)
    pub.loop_stop()
    lat = sorted(worker.latencies)
    return lat[int(len(lat) * 0.99)] / 1000


def bench_restart(work: Path, repo) -> tuple[int, int]:
    from metaforge.sync.mqtt import MqttIngest

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = work / "mosquitto.conf"
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"{user}listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {work}/\nautosave_interval 1\nmax_queued_messages 0\n")
    start = lambda: subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = start()
    time.sleep(0.5)
    url = f"mqtt://127.0.0.1:{port}"
    worker = MqttIngest(repo, url, client_id="mf-bench-restart")
    thread = threading.Thread(target=worker.run, kwargs={"idle_exit": 5.0}, daemon=True)
    thread.start()
    time.sleep(0.7)
    pub = publisher(url)
    now = time.time()
    payloads = [json.dumps({"ts": now + i / 10_000, "metrics": {"restart": 1.0}}) for i in range(100_000)]
    infos = {}
    for i, p in enumerate(payloads):
        infos[i] = pub.publish("devices/D2/telemetry", p, qos=1)
        if i % 20_000 == 19_999:
            try:
                infos[i].wait_for_publish(30)
            except (RuntimeError, ValueError):
                pass
        if i == 50_000:
            broker.terminate()
            broker.wait()
            broker = start()

    def acked(info) -> bool:
        try:
            return info.is_published()
        except (RuntimeError, ValueError):
            return False

    for _ in range(60):  # a device resends what the broker has not acknowledged
        time.sleep(1)
        if not pub.is_connected():
            continue
        missing = [i for i, info in infos.items() if not acked(info)]
        if not missing:
            break
        for i in missing:
            infos[i] = pub.publish("devices/D2/telemetry", payloads[i], qos=1)
    thread.join(120)
    pub.loop_stop()
    broker.terminate()
    from metaforge.sync.ingest import store

    s = store(repo)
    n = s.conn.execute("SELECT count(*) FROM samples s JOIN metrics m ON m.id = s.metric WHERE m.name = 'restart'"
                       ).fetchone()[0]
    s.close()
    return n, worker.stats.samples - worker.stats.new


def bench_query(work: Path) -> tuple[float, float, float]:
    """24 h at 100 Hz ending now, then the natural query (`--since 24h`: not on a minute boundary),
    the same on minute boundaries, and `mf telemetry prune` with nothing past retention. s each."""
    import numpy as np

    from metaforge.store.telemetry import TelemetryStore

    repo = repo_with_devices(work / "query", 1)
    s = TelemetryStore(repo.mfdir / "telemetry.db")
    end = int(time.time() * 1e6)
    start = end - 86_400_000_000
    for hour in range(24):
        ts = start + (hour * 360_000 + np.arange(360_000, dtype=np.int64)) * 10_000
        s.write_runs([("D0", "imu.gyro_x", ts, (np.arange(360_000) % 1000) / 1000)])
    s.close()

    def timed(*args) -> tuple[float, list]:
        started = time.perf_counter()
        p = subprocess.run(mf_cmd() + list(args), cwd=repo.root, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        assert p.returncode == 0, p.stderr
        return seconds, json.loads(p.stdout)

    natural, rows = timed("telemetry", "query", "D0", "imu.gyro_x", "--since", "24h", "--every", "1m", "--agg", "mean",
                          "--json")
    assert len(rows) in (1440, 1441), len(rows)
    lo = -(-start // 60_000_000) * 60
    aligned, rows = timed("telemetry", "query", "D0", "imu.gyro_x", "--since", str(lo), "--until",
                          str(lo + 86_340), "--every", "1m", "--agg", "mean", "--json")
    prune, out = timed("telemetry", "prune", "--json")
    assert not any(out.values()), out
    return natural, aligned, prune


MQTT_MESSAGES = 20_000
STAGES = ("files", "mqtt", "batched", "latency", "restart", "query")


def main() -> None:
    """`bench_telemetry.py [STAGE…]` runs the named stages (all by default)."""
    stages = sys.argv[1:] or STAGES
    unknown = set(stages) - set(STAGES)
    if unknown:
        sys.exit(f"unknown stage(s) {', '.join(sorted(unknown))}; stages: {', '.join(STAGES)}")
    work = Path(tempfile.mkdtemp(prefix="mf-bench-telemetry-"))
    rows = []
    if "files" in stages:
        figures = bench_files(work)
        rows.append((*figures[0], 500_000, ">"))
        rows.append((*figures[1], None, ">"))
        rows.append((*figures[2], 0.9, ">"))
        rows += [(name, rate, None, ">") for name, rate in figures[3:]]
    repo = repo_with_devices(work / "mqtt", 3) if set(stages) & {"mqtt", "batched", "latency", "restart"} else None
    if "mqtt" in stages:
        from metaforge.sync.mqtt import hand_over_sooner

        hand_over_sooner()  # as `mf ingest mqtt` does in its process: both subscribers run with it
        bares, mfs, ratios, stored = [], [], [], 0
        for round_ in range(3):  # alternating rounds: the machine's load falls on both alike
            t0 = time.time() + 100 * round_
            payloads = [json.dumps({"ts": t0 + i / 1e5, "metrics": {"v": 1.0}}).encode() for i in range(MQTT_MESSAGES)]
            bare = bare_rate(payloads)
            payloads = [json.dumps({"ts": t0 + 50 + i / 1e5, "metrics": {"v": 1.0}}).encode()
                        for i in range(MQTT_MESSAGES)]
            rate, new, samples = mf_rate(repo, payloads, "D0", 1)
            stored += new
            bares.append(bare)
            mfs.append(rate)
            ratios.append(rate / bare)
            print(f"  round {round_ + 1}: bare paho {bare:,.0f}, mf {rate:,.0f} messages/s ({rate / bare:.2f}), "
                  f"{new} new", file=sys.stderr, flush=True)
        median = sorted(ratios)[1]
        rows += [("MQTT QoS 1, bare paho subscriber, messages/s, median of 3", sorted(bares)[1], None, ">"),
                 (f"MQTT QoS 1, mf ingest mqtt, messages/s, median of 3 ({stored:,} of {3 * MQTT_MESSAGES:,} stored)",
                  sorted(mfs)[1], None, ">"),
                 (f"  mf / bare, median of 3 alternating rounds ({', '.join(f'{r:.2f}' for r in sorted(ratios))})",
                  median, 0.85, ">")]
    if "batched" in stages:
        t0 = time.time() + 10
        # a batch as columns (the documented batch payload): 100 samples of 100 Hz a message
        batched = [json.dumps({"ts": [t0 + (i * 100 + j) / 1e5 for j in range(100)],
                               "metrics": {"b": [1.0 + j / 100 for j in range(100)]}}).encode() for i in range(5_000)]
        brate, bnew = mf_process_rate(repo, batched, "D1", 100)
        rows.append((f"MQTT QoS 1, 100 samples a message, mf ingest mqtt process, samples/s ({bnew:,} of "
                     f"500,000 stored)", brate, 250_000, ">"))
    if "latency" in stages:
        rows.append(("100 Hz from one device, broker-to-store latency p99, ms", bench_latency(repo), 10, "<"))
    if "restart" in stages:
        stored, dups = bench_restart(work, repo)
        rows.append((f"broker restart mid 100,000-message stream: stored once ({dups} redeliveries dropped)",
                     stored, 100_000, "="))
    if "query" in stages:
        natural, aligned, prune = bench_query(work)
        rows.append(("mf telemetry query --since 24h --every 1m --agg mean, 8.64 M points at 100 Hz, s", natural, 1.0, "<"))
        rows.append(("  the same on minute boundaries, s", aligned, 1.0, "<"))
        rows.append(("mf telemetry prune, 8.64 M rows, nothing past retention, s", prune, 1.0, "<"))
    print(f"\n{'figure':<92} {'measured':>12} {'target':>12}")
    ok = True
    for name, value, limit, op in rows:
        good = limit is None or (value > limit if op == ">" else value < limit if op == "<" else value == limit)
        ok &= good
        target = "" if limit is None else f"{op} {limit:,.0f}" if limit >= 100 else f"{op} {limit}"
        print(f"{name:<92} {value:>12,.2f} {target:>12}  {'' if limit is None else 'ok' if good else 'MISSED'}")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
