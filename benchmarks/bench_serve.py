"""mf serve figures, against real processes on this machine:

1. entity reads (GET /api/v1/entities/{id}, a random one of 10,000 each time) on a 10,000-entity
   twin made with `mf mutate apply`: an open-loop load generator sends exactly RATE requests/s
   (default 1,000) for DURATION seconds over keep-alive connections and times each request from
   when it was due (not when a connection was free), so a stalled server shows in the tail
   instead of slowing the load; then wrk (Debian's, when installed) for the most the server takes
   at 8 connections.
   The open-loop run is made twice, side by side: with the machine as it is, and with a second
   process keeping one core busy (a Python busy loop), the case of a server sharing a 2-core
   machine with another job.
2. MQTT publish → WebSocket receipt: a device publishing at 100 Hz to Mosquitto, a separate
   `mf ingest mqtt` process storing it, `mf serve` pushing the overlay; the WebSocket client (and,
   with --browser, a page in headless Chromium) times each sample from its publish time.

3. (--only schemathesis) the long schemathesis run, every check, against a server with writes
   allowed: no server error, no schema violation (the test suite runs a minute of it).

    .venv/bin/python benchmarks/bench_serve.py [--rate 1000] [--duration 20] [--browser]
    .venv/bin/python benchmarks/bench_serve.py --only schemathesis [--schemathesis-seconds 600]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from serve_support import DEVICE, Ingest, Mosquitto, Server, make_twin, mf_env, publisher  # noqa: E402

ENTITIES = 10_000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def big_twin(folder: Path) -> Path:
    path = folder / "big"
    subprocess.run([sys.executable, "-m", "metaforge", "init", str(path), "--template", "drone-flight-controller"],
                   check=True, capture_output=True, env=mf_env())
    changes = [{"add": f"BOMItem:R{i}", "props": {"value": "10k", "resistance": "10kohm", "quantity": 1,
                                                  "unit_cost": 0.002, "currency": "USD", "rail": "3V3",
                                                  "description": f"pull-up resistor {i}"}} for i in range(ENTITIES)]
    (path / "bench-changes.json").write_text(json.dumps({"changes": changes, "message": "bench twin"}))
    subprocess.run([sys.executable, "-m", "metaforge", "mutate", "apply", "bench-changes.json"], cwd=path, check=True,
                   capture_output=True, env=mf_env())
    return path


# ---- 1. entity reads at a fixed rate --------------------------------------------------------------------

async def open_loop(port: int, rate: int, duration: float, connections: int = 32) -> dict:
    """Send `rate` requests/s for `duration` s; each latency is from the moment the request was due."""
    total = int(rate * duration)
    due_queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    errors = 0

    async def worker():
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                due, path = await due_queue.get()
                if due is None:
                    return
                writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - due)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    import gc

    gc.disable()  # this process's own collections would show as server latency
    start = time.perf_counter() + 0.2
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due_queue.put_nowait((due, f"/api/v1/entities/BOMItem:R{random.randrange(ENTITIES)}"))
    for _ in workers:
        due_queue.put_nowait((None, None))
    await asyncio.gather(*workers)
    gc.enable()
    elapsed = time.perf_counter() - start
    ms = [x * 1000 for x in latencies]
    return {"requests": len(ms), "errors": errors, "achieved_rate": round(len(ms) / elapsed, 1),
            "p50_ms": round(pct(ms, 50), 2), "p99_ms": round(pct(ms, 99), 2), "p999_ms": round(pct(ms, 99.9), 2),
            "max_ms": round(max(ms), 2)}


def wrk(port: int, folder: Path, seconds: int = 10) -> dict | None:
    if not shutil.which("wrk"):
        return None
    script = folder / "random-entity.lua"
    script.write_text('request = function()\n  return wrk.format("GET", "/api/v1/entities/BOMItem:R" .. '
                      f'math.random(0, {ENTITIES - 1}))\nend\n')
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    return {"max_rate": round(rate), "p99_ms_at_max": round(float(p99.group(1)) * scale, 2), "connections": 8}


# ---- 2. MQTT publish → WebSocket receipt ------------------------------------------------------------------

def mqtt_to_websocket(folder: Path, hz: int, seconds: float, browser: bool) -> dict:
    twin = make_twin(folder / "live", model=False)
    broker = Mosquitto(folder)
    ingest = Ingest(twin, broker.url)
    server = Server(twin)
    pub = publisher(broker.url)
    try:
        warm_up(pub, server)
        result = {"python_websocket": asyncio.run(ws_latency(server, pub, hz, seconds))}
        if browser:
            result["chromium"] = browser_latency(server, pub, hz, seconds)
        return result
    finally:
        pub.loop_stop()
        server.stop()
        ingest.stop()
        broker.stop()


def warm_up(pub, server) -> None:
    """Publish until ingest has subscribed, the server pushes, and the device's health has gone from
    unknown to nominal: that first state change is an event ingest appends (fsync'd) before it
    stores more samples, a one-off ~0.1 s pause that is ingest's, not a steady-state figure."""
    from websockets.sync.client import connect

    with connect(f"{server.ws_url}/ws/devices/{DEVICE}") as ws:
        ws.recv(10)
        end = time.time() + 30
        while time.time() < end:
            pub.publish(f"devices/{DEVICE}/telemetry", json.dumps({"ts": time.time(), "metrics": {
                "board_temp_c": 35.0, "seq": -1}}), qos=1)
            try:
                if json.loads(ws.recv(timeout=0.5)).get("health") == "nominal":
                    return
            except TimeoutError:
                pass
    raise RuntimeError("no overlay with the device nominal came back: is ingest running?")


def publish_at(pub, hz: int, seconds: float, stop_flag: list) -> int:
    """Publish a sample every 1/hz s (on a schedule, not sleep-after-send); the payload carries its
    publish time, which is what each receipt is timed against."""
    n = int(hz * seconds)
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / hz - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pub.publish(f"devices/{DEVICE}/telemetry", json.dumps({"ts": time.time(), "metrics": {
            "board_temp_c": 35 + 5 * ((i % 200) / 200), "seq": i}}), qos=1)
    stop_flag.append(True)
    return n


async def ws_latency(server, pub, hz: int, seconds: float) -> dict:
    import websockets

    latencies, seen = [], set()
    async with websockets.connect(f"{server.ws_url}/ws/devices/{DEVICE}", max_size=None) as ws:
        await ws.recv()
        stop: list = []
        sender = asyncio.get_running_loop().run_in_executor(None, publish_at, pub, hz, seconds, stop)
        while not (stop and len(seen) >= int(hz * seconds)):
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 3))
            except asyncio.TimeoutError:
                break
            now = time.time() * 1e6
            for ts, value in message.get("samples", {}).get("seq", []):
                if value >= 0 and value not in seen:
                    seen.add(value)
                    latencies.append((now - ts) / 1000)
        sent = await sender
    return summary(latencies, sent)


def summary(latencies: list[float], sent: int) -> dict:
    return {"samples_sent": sent, "received": len(latencies), "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(pct(latencies, 99), 2), "max_ms": round(max(latencies), 2)}


def browser_latency(server, pub, hz: int, seconds: float) -> dict:
    """The same, timed by the page itself in headless Chromium (Date.now() at each message)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server.url + "/api/v1/status")
        page.evaluate("""url => new Promise(ready => {
            window.lat = []; window.seen = new Set();
            const ws = new WebSocket(url);
            ws.onmessage = (e) => {
              const now = Date.now() * 1000;
              const m = JSON.parse(e.data);
              for (const [ts, v] of (m.samples?.seq || [])) if (v >= 0 && !seen.has(v)) { seen.add(v); lat.push((now - ts) / 1000); }
              ready();
            };
        })""", f"{server.ws_url}/ws/devices/{DEVICE}")
        stop: list = []
        sent = publish_at(pub, hz, seconds, stop)
        page.wait_for_function(f"window.seen.size >= {sent}", timeout=10_000)
        latencies = page.evaluate("window.lat")
        browser.close()
    return summary(latencies, sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--hz", type=int, default=100)
    parser.add_argument("--browser", action="store_true", help="also time receipt in headless Chromium")
    parser.add_argument("--only", choices=("reads", "live", "schemathesis"), help="run one of them")
    parser.add_argument("--schemathesis-seconds", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.only == "schemathesis":
            return long_schemathesis(folder, args.schemathesis_seconds)
        if args.only != "live":
            reads_figures(folder, args)
        if args.only != "reads":
            live = mqtt_to_websocket(folder, args.hz, args.duration, args.browser)
            for client, figures in live.items():
                print(f"MQTT publish → {client} receipt, {args.hz} Hz device for {args.duration:g} s: "
                      f"{json.dumps(figures)}  target p99 < 50 ms")


def reads_figures(folder: Path, args) -> None:
    twin = big_twin(folder)
    server = Server(twin)
    try:
        asyncio.run(open_loop(server.port, 200, 2))  # warm up: caches, the index's pages
        print(f"load average before: {_load()}")
        quiet = cpu_timed(server, lambda: asyncio.run(open_loop(server.port, args.rate, args.duration)))
        with busy_core():
            busy = cpu_timed(server, lambda: asyncio.run(open_loop(server.port, args.rate, args.duration)))
        closed = wrk(server.port, folder)
    finally:
        server.stop()
    print(f"entity reads on a {ENTITIES:,}-entity twin at {args.rate} req/s for {args.duration:g} s (open loop), "
          "target p99 < 20 ms:")
    print(f"  {'':28} {'as the machine is':>20} {'one core kept busy':>20}")
    for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms", "achieved_rate", "errors", "server_cpu_us_per_request"):
        print(f"  {key:28} {quiet[key]:>20} {busy[key]:>20}")
    print(f"wrk, 8 connections, as fast as it goes: {json.dumps(closed) if closed else 'wrk not installed'}")


def cpu_timed(server, run) -> dict:
    """The run's figures, plus the server process's CPU time (user + system) per request: what the
    server itself spends, which other jobs on the machine do not change much."""
    import os

    def cpu() -> float:
        fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu()
    figures = run()
    figures["server_cpu_us_per_request"] = round((cpu() - before) / figures["requests"] * 1e6)
    return figures


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextlib.contextmanager
def busy_core():
    """A second process spinning on one core for as long as the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def long_schemathesis(folder: Path, seconds: int) -> None:
    from serve_support import schemathesis_run

    twin = make_twin(folder / "st")
    server = Server(twin, "--allow-writes", "--actor", "agent:schemathesis")
    try:
        start = time.perf_counter()
        p = schemathesis_run(server, folder, seconds)
    finally:
        log = server.stop()
    summary = p.stdout.split("SUMMARY")[-1]
    print(p.stdout[-6000:] if p.returncode else summary)
    cases = re.search(r"(\d[\d,]*) generated", summary)
    print(f"schemathesis, every check, {seconds} s: exit {p.returncode}, "
          f"{cases.group(1) if cases else '?'} cases in {time.perf_counter() - start:.0f} s, "
          f"server errors logged: {log.count('internal error')}")


if __name__ == "__main__":
    main()
