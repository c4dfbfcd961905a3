"""Figures for virtual devices (issue 18): `mf device simulate` driving 10,000 devices at 1 Hz ×
10 metrics from one process. Run: .venv/bin/python benchmarks/bench_virtual_devices.py [SECONDS]

Starts its own Mosquitto on a free port and counts what the broker delivers with `mosquitto_sub`
(a C subscriber, so the count does not slow the publisher down by much).
1. Real time: 10,000 devices, 1 Hz, for SECONDS (default 30) of simulated = wall time. Figures:
   samples/s held, how far behind its schedule a batch went out at worst, the CPU the process used
   (of one core), and messages delivered by the broker.
2. As fast as it can (`--speed 1000`): 10,000 devices for 60 s of simulated time, the ceiling.
Both at QoS 0 with one message per device, and at QoS 1 (the default) with 100 devices a message.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import mf_cmd  # noqa: E402

DEVICES = 10_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def counter(port: int, qos: int, expect: int, timeout: float) -> subprocess.Popen:
    # one line (the topic) per message; it exits after `expect` messages, or `timeout` s of silence
    proc = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "devices/+/telemetry",
                             "-q", str(qos), "-F", "%t", "-C", str(expect), "-W", str(int(timeout))],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def run(repo: Path, port: int, seconds: int, speed: float, qos: int, bundle: int) -> dict:
    # the counter subscribes at QoS 0: at QoS 1 the broker sends it 20 messages per round trip (its
    # in-flight window), and it would count its own slowness, not the publisher's delivery
    sub = counter(port, 0, DEVICES * seconds // bundle, seconds / speed + 180)
    cmd = mf_cmd() + ["device", "simulate", "SIM", "--count", str(DEVICES), "--model", "DroneFlightController-v2.1",
                      "--broker", f"mqtt://127.0.0.1:{port}", "--rate", "1Hz", "--duration", f"{seconds}s",
                      "--speed", str(speed), "--qos", str(qos), "--bundle", str(bundle), "--json"]
    before = os.times()
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    stats = json.loads(done.stdout)
    try:
        out = sub.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        sub.kill()
        out = sub.communicate()[0]
    delivered = sum(1 for line in out.splitlines() if line)
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {**stats, "process_wall_s": round(wall, 2), "process_cpu_s": round(cpu, 2),
            "cpu_of_one_core": round(cpu / wall, 2), "delivered": delivered}


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    if not shutil.which("mosquitto") or not shutil.which("mosquitto_sub"):
        raise SystemExit("needs mosquitto and mosquitto_sub")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = tmp / "fleet"
        subprocess.run(mf_cmd() + ["init", str(repo), "--template", "drone-flight-controller"], check=True,
                       capture_output=True)
        broker, port = start_broker(tmp)
        try:
            # QoS 0: a message per device (its own topic); QoS 1: 100 devices a message (paho sends
            # only ~6,000 QoS 1 messages a second, fewer than 10,000 devices need)
            for qos, bundle in ((0, 1), (1, 100)):
                real = run(repo, port, seconds, 1.0, qos, bundle)
                print(f"real time, QoS {qos}, {bundle} device(s) a message: {DEVICES} devices × 10 metrics at 1 Hz for {seconds} s: "
                      f"{real['samples']:,} samples in {real['seconds']} s ({real['samples_per_s']:,}/s), "
                      f"worst lag {real['max_lag_s']} s, CPU {real['cpu_of_one_core']:.0%} of a core "
                      f"(models {real['model_seconds']} s, JSON {real['encode_seconds']} s, paho "
                      f"{real['publish_seconds']} s), broker delivered {real['delivered']:,} of {real['messages']:,} messages")
                fast = run(repo, port, 60, 1000.0, qos, bundle)
                print(f"flat out, QoS {qos}, {bundle} device(s) a message: {DEVICES} devices × 60 s simulated: {fast['samples']:,} samples in "
                      f"{fast['seconds']} s = {fast['samples_per_s']:,} samples/s "
                      f"({fast['samples_per_s'] / 100_000:.1f}× the real-time need), "
                      f"broker delivered {fast['delivered']:,} of {fast['messages']:,} messages")
        finally:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    main()
