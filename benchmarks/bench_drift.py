"""Figures for drift detection (issue 5). Run: .venv/bin/python benchmarks/bench_drift.py

1. Save → drift.detected in the log: a real `mf drift watch` process follows a twin holding a
   300-symbol schematic (bench_kicad's KiCad 9 file); each of 20 saves (written beside the file and
   renamed over it, as KiCad does) changes one more value; the time from the rename to the
   drift.detected line being in the log file (polled every 2 ms) is taken, median over the saves.
   With the watch's default debounce (300 ms) and with the architecture's 500 ms.
2. `mf drift` (one real process, wall time, median of 7) on a repository with 50 KiCad files
   (Debian's kicad-demos plus copies of two projects, read in with mf ingest) when nothing changed
   (and in a fresh clone, where no content hash is kept yet: every file read once),
3. after one schematic changed, and after the largest board (7.4 MB) changed.
Needs kicad-demos (apt install kicad-demos). `--json FILE` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kicad import DEMOS, schematic_of

TARGETS = {"save_to_detected_s": 1.0, "drift_clean_50_files_s": 0.5, "drift_one_changed_s": 1.5}
MF = [sys.executable, "-m", "metaforge"]
ENV = {**os.environ, "MF_ACTOR": "user:bench", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.invalid",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.invalid"}


def mf(*args: str, cwd: Path, ok=(0,)) -> subprocess.CompletedProcess:
    p = subprocess.run(MF + list(args), cwd=cwd, capture_output=True, text=True, env=ENV)
    if p.returncode not in ok:
        sys.exit(f"mf {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=ENV)


def new_twin(path: Path) -> Path:
    mf("init", str(path), cwd=path.parent)
    return path


def commit_all(path: Path) -> None:
    git("add", "-A", cwd=path)
    git("commit", "-qm", "files", "--no-verify", cwd=path)


# ---- 1. save → drift.detected ------------------------------------------------------------------

class LogTail:
    """New lines of the event log's last segment, as they are appended."""

    def __init__(self, repo: Path):
        self.path = sorted((repo / ".metaforge" / "events").glob("*.jsonl"))[-1]
        self.offset = self.path.stat().st_size

    def wait_for(self, kind: str, timeout: float = 20.0) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
            done = data.rfind(b"\n") + 1
            for line in data[:done].splitlines():
                if json.loads(line)["type"] == kind:
                    self.offset += done
                    return time.perf_counter()
            time.sleep(0.002)
        sys.exit(f"no {kind} in the log within {timeout} s")


def save_to_detected(folder: Path, debounce_ms: int, saves: int = 20) -> list[float]:
    repo = new_twin(folder / f"watch{debounce_ms}")
    sch = schematic_of(300, repo)
    commit_all(repo)
    mf("ingest", sch.name, cwd=repo)
    commit_all(repo)
    watch = subprocess.Popen(MF + ["drift", "watch", "--json", "--debounce", str(debounce_ms)], cwd=repo, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = threading.Event()
    threading.Thread(target=lambda: [started.set() for line in watch.stdout if '"started"' in line], daemon=True).start()
    if not started.wait(30):
        sys.exit("the watch did not start: " + watch.stderr.read())
    latencies = []
    try:
        text = sch.read_text()
        for i in range(1, saves + 1):
            # one more resistor gets a new value: the same save KiCad makes (temp file, rename)
            text = re.sub(rf'(\(property "Reference" "R{i}"[\s\S]*?\(property "Value" )"[^"]*"', rf'\1"{i}k5"',
                          text, count=1)
            tmp = sch.with_name(sch.name + ".tmp")
            tmp.write_text(text)
            tail = LogTail(repo)
            t = time.perf_counter()
            os.replace(tmp, sch)
            latencies.append(tail.wait_for("drift.detected") - t)
            time.sleep(0.3)  # saves a person makes are apart
    finally:
        watch.send_signal(2)
        watch.wait(20)
    return latencies


# ---- 2-3. mf drift on 50 files -------------------------------------------------------------------

def fifty_files(folder: Path) -> tuple[Path, int]:
    repo = new_twin(folder / "fifty")
    skip = shutil.ignore_patterns("*.pdf", "*.wrl", "*.step", "*.stp", "*.STEP", "microwave.kicad_pcb")
    shutil.copytree(DEMOS, repo / "hw", ignore=skip)
    for name in ("pic_programmer", "custom_pads_test"):  # copies, as a repository with two revisions of a board has
        shutil.copytree(DEMOS / name, repo / "hw-rev-b" / name, ignore=skip)
    commit_all(repo)
    mf("ingest", "hw", "hw-rev-b", "--keep-going", cwd=repo, ok=(0, 1))
    commit_all(repo)
    report = json.loads(mf("drift", "--json", cwd=repo, ok=(0, 1)).stdout)
    assert not report["drifts"], report["drifts"]
    # five demo boards name other footprints than their schematics: those are disagreements between
    # two files (exit 1), there before any change
    return repo, report["checked"], 1 if report["between_files"] else 0


def wall(args: list[str], cwd: Path, runs: int = 7, expect: int = 0) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(MF + args, cwd=cwd, capture_output=True, text=True, env=ENV)
        times.append(time.perf_counter() - t)
        if p.returncode != expect:
            sys.exit(f"mf {' '.join(args)}: exit {p.returncode}, expected {expect}: {p.stderr}")
    return statistics.median(times)


def change_board_value(path: Path) -> None:
    text = path.read_text()
    path.write_text(re.sub(r'\(fp_text value "[^"]*"', '(fp_text value "CHANGED"', text, count=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    ap.add_argument("--saves", type=int, default=20)
    args = ap.parse_args()
    if not DEMOS.is_dir():
        sys.exit(f"{DEMOS} is missing: apt-get install kicad-demos")
    fig = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for debounce in (300, 500):
            lat = save_to_detected(folder, debounce, args.saves)
            fig[f"save_to_detected_debounce{debounce}"] = {"median_s": round(statistics.median(lat), 3),
                                                           "max_s": round(max(lat), 3), "saves": len(lat)}
        repo, n, base = fifty_files(folder)
        fig["files"] = n
        cache = repo / ".metaforge" / "cache" / "drift-sha256.json"
        times = []
        for _ in range(5):  # a fresh clone (CI): every file read and hashed once
            cache.unlink(missing_ok=True)
            times.append(wall(["drift"], repo, runs=1, expect=base))
        fig["drift_clean_50_files_cold_s"] = round(statistics.median(times), 3)
        time.sleep(2.1)  # past the racy window: the hashes are kept from now on
        fig["drift_clean_50_files_s"] = round(wall(["drift"], repo, expect=base), 3)
        fig["status_same_repo_s"] = round(wall(["status"], repo), 3)  # what any command costs there
        sch = repo / "hw/pic_programmer/pic_programmer.kicad_sch"
        sch.write_text(sch.read_text().replace('"100µF"', '"220uF"'))
        fig["drift_one_schematic_changed_s"] = round(wall(["drift"], repo, expect=1), 3)
        git("checkout", "--", ".", cwd=repo)
        boards = sorted(repo.rglob("*.kicad_pcb"), key=lambda p: p.stat().st_size)
        change_board_value(boards[-1])
        fig["largest_board_MB"] = round(boards[-1].stat().st_size / 1e6, 2)
        fig["drift_largest_board_changed_s"] = round(wall(["drift"], repo, expect=1), 3)
    s300, s500 = fig["save_to_detected_debounce300"], fig["save_to_detected_debounce500"]
    print(f"save → drift.detected in the log, 300-symbol schematic, median of {s300['saves']} saves:")
    print(f"  debounce 300 ms (default): {s300['median_s']:.3f} s (max {s300['max_s']:.3f}), target < 1 s")
    print(f"  debounce 500 ms:           {s500['median_s']:.3f} s (max {s500['max_s']:.3f}), target < 1 s")
    print(f"mf drift on {n} KiCad files (median of 7 runs; mf status there: {fig['status_same_repo_s']:.3f} s):")
    print(f"  nothing changed:            {fig['drift_clean_50_files_s']:.3f} s, target < 0.5 s "
          f"({fig['drift_clean_50_files_cold_s']:.3f} s in a fresh clone: every file hashed)")
    print(f"  one schematic changed:      {fig['drift_one_schematic_changed_s']:.3f} s, target < 1.5 s")
    print(f"  largest board changed ({fig['largest_board_MB']} MB): {fig['drift_largest_board_changed_s']:.3f} s, "
          "target < 1.5 s")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2) + "\n")


if __name__ == "__main__":
    main()
