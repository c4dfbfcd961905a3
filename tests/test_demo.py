"""./scripts/demo, the tour of every layer, run as a new user runs it (its set-up skipped: this
interpreter's mf stands for the .venv the set-up makes), with its own Mosquitto on a free port,
and `--serve` left running at the end: the dashboard's API then shows the board in 3D."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _get_json(url: str, proc: subprocess.Popen) -> dict:
    """The answer of the server the demo started (it prints its URL as it starts it)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return json.load(r)
        except OSError:
            assert proc.poll() is None, "mf serve stopped"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_the_demo_tours_every_layer_and_leaves_the_dashboard_running(tmp_path):
    env = {**os.environ, "MF_DEMO_PYTHON": sys.executable, "MF_DEMO_OWN_BROKER": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    env.pop("MF_ACTOR", None)
    demo = tmp_path / "drone-fc"
    proc = subprocess.Popen([str(ROOT / "scripts" / "demo"), "--serve", str(demo)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    lines: list[str] = []
    url = None
    try:
        deadline = time.monotonic() + 240
        while url is None and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if not ready:
                assert proc.poll() is None, "".join(lines)
                continue
            line = proc.stdout.readline()
            if not line:
                break
            line = _ANSI.sub("", line)
            lines.append(line)
            m = re.match(r"open (http://127\.0\.0\.1:\d+/)", line)
            if m:
                url = m.group(1)
        out = "".join(lines)
        assert url, out
        # the tour, in order: each layer's heading, and what must happen under it
        headings = re.findall(r"^━━ (\d+)\. ", out, re.M)
        assert headings == [str(i) for i in range(1, 15)], headings
        assert "kicad__flight-controller.kicad_pcb.glb" in out and "board: 36 placed parts" in out
        assert "refused: thermal-ldo" in out and "BOMItem:C1 is at version 2, not 1" in out
        assert "needs approval: proposed as Proposal:" in out and "✓ approved as user:Lead Engineer" in out
        assert re.search(r"semantic version \d+ ↔ commit [0-9a-f]{12} .*kicad/flight-controller-bom.csv", out)
        assert "DesignElement:flight-controller/R1.value: 10k → 12k in kicad/sheets/power.kicad_sch" in out
        assert "accepted into the graph by user:Hardware Engineer" in out
        assert out.count("✓ no drift") == 2
        assert "Merge made by" in out and "chain intact" in out
        assert re.search(r"started Mosquitto on 127\.0\.0\.1:\d+", out)
        assert "24000 samples stored, 0 rejected" in out
        assert "FC-SN-20260301-001: nominal → warning" in out and "FC-SN-20260301-001: warning → critical" in out
        assert re.search(r"health\s+critical", out)
        assert "fleet what-if drone-flight · 4 devices" in out
        took = int(re.search(r"Done in (\d+) s, set-up included", out).group(1))
        assert took < 150, took  # the set-up, skipped here, has the rest of the 3 minutes

        # mf serve, left running: the project's first model is the board, its GLB served
        manifest = _get_json(url + "api/v1/projects/DroneFlightController-v2.1/model-manifest", proc)
        assert manifest["model"] == "kicad__flight-controller.kicad_pcb"
        assert manifest["mesh_to_node_map"]["flight-controller/U1"] == "DesignElement:flight-controller/U1"
        glb_url = manifest["glb_url"] if manifest["glb_url"].startswith("http") else url.rstrip("/") + manifest["glb_url"]
        with urllib.request.urlopen(glb_url, timeout=30) as r:
            assert r.read(4) == b"glTF"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)
