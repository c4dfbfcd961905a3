"""The dashboard left open: CPU of headless Chromium (every process of it) while the page sits idle
on the drone twin with its 3D model loaded, beside the same browser on a blank page, in one run.
Target (issue 18): under 2 % of a core. Run: .venv/bin/python benchmarks/bench_dashboard_idle.py [SECONDS]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from serve_support import Server, make_twin  # noqa: E402
from test_serve_browser import CHROMIUM_ARGS, chromium  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root_pid: int) -> float:
    """CPU seconds (user + sys) of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += (int(stats[pid][11]) + int(stats[pid][12])) / TICK
        todo.extend(children.get(pid, []))
    return total


def idle_share(page, browser_pid: int, seconds: float) -> float:
    page.wait_for_timeout(2000)  # let loading settle
    start, t0 = tree_cpu(browser_pid), time.monotonic()
    page.wait_for_timeout(seconds * 1000)
    return (tree_cpu(browser_pid) - start) / (time.monotonic() - t0)


def main() -> None:
    import socket
    import subprocess

    from playwright.sync_api import sync_playwright

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    work = Path(tempfile.mkdtemp(prefix="mf-bench-dashboard-"))
    server = Server(make_twin(work / "drone"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # our own Chromium process, so that its process tree (GPU, renderer, utility) is ours to count
    browser_proc = subprocess.Popen([chromium(), "--headless=new", f"--remote-debugging-port={port}",
                                     f"--user-data-dir={work / 'profile'}", *CHROMIUM_ARGS, "about:blank"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as p:
            for _ in range(100):
                try:
                    browser = p.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
                    break
                except Exception:  # noqa: BLE001 — not listening yet
                    time.sleep(0.1)
            page = browser.contexts[0].new_page()
            page.set_viewport_size({"width": 1400, "height": 850})
            page.goto("about:blank")
            blank = idle_share(page, browser_proc.pid, seconds)
            page.goto(server.url + "/")
            page.wait_for_function("window.mf && window.mf.loaded && window.mf.ready", timeout=60_000)
            frames = page.evaluate("window.mf.viewer.frames")
            dashboard = idle_share(page, browser_proc.pid, seconds)
            frames_idle = page.evaluate("window.mf.viewer.frames") - frames
            browser.close()
    finally:
        browser_proc.kill()
        server.stop()
    print(f"headless Chromium, whole process tree, idle for {seconds:g} s (load average {os.getloadavg()[0]:.2f}):")
    print(f"  blank page                         {blank * 100:6.2f} % of a core")
    print(f"  dashboard, drone twin, model shown {dashboard * 100:6.2f} % of a core   "
          f"({frames_idle} frames drawn while idle; target < 2 %)")


if __name__ == "__main__":
    main()
