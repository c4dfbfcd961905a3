"""Figures for the artifact state (issue 4), end to end through the CLI as a user types it.

1. `mf ingest` of every schematic and board of Debian's KiCad demos copied into a twin: how many
   files, how many MB, seconds (wall, process start included) and seconds per MB (< 1 s/MB).
2. `mf project` after one value change in a 300-symbol schematic, the commit included (< 2 s).
3. `mf project` after one value change on the largest demo board (video: 7.4 MB board, its
   schematics), the commit included: the board is parsed once.
4. `mf ingest .` of a 3D-model-heavy project: the stickhub demo with its four vendor STEP models
   and copies of them to MODELS_TOTAL models (each read by OpenCascade in the child process,
   a GLB written), then the same again unchanged.
Run: .venv/bin/python benchmarks/bench_artifacts.py
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import mf_cmd  # noqa: E402
from bench_kicad import schematic_of  # noqa: E402

DEMOS = Path("/usr/share/kicad/demos")


def run(args: list[str], cwd: Path, ok=(0,)) -> float:
    t = time.perf_counter()
    p = subprocess.run(mf_cmd() + args, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if p.returncode not in ok:
        raise SystemExit(f"mf {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return elapsed


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def twin(path: Path) -> Path:
    subprocess.run(mf_cmd() + ["init", str(path), "--template", "drone-flight-controller"], check=True,
                   capture_output=True)
    return path


def bench_demos(work: Path) -> tuple[int, int, float, float]:
    repo = twin(work / "demos-twin")
    shutil.copytree(DEMOS, repo / "demos", ignore=shutil.ignore_patterns("*.pdf", "*.wrl", "*.step", "*.stp"))
    files = sorted(repo.glob("demos/**/*.kicad_sch")) + sorted(repo.glob("demos/**/*.kicad_pcb"))
    mb = sum(f.stat().st_size for f in files) / 1e6
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "demos", cwd=repo)
    seconds = run(["ingest", "demos", "--keep-going"], repo, ok=(0, 1))  # the KiCad 5 board is refused
    again = run(["ingest", "demos", "--keep-going"], repo, ok=(0, 1))
    return len(files), round(mb, 2), seconds, again


def bench_project(work: Path, saves: int = 5) -> list[float]:
    repo = twin(work / "big-twin")
    (repo / "hw").mkdir()
    schematic_of(300, repo / "hw")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "300 symbols", cwd=repo)
    run(["ingest", "hw"], repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "twin", cwd=repo)
    times = []
    for i in range(saves):
        run(["mutate", "set", "DesignElement:big/R150", f"value={20 + i}k", "-m", "bench"], repo)
        times.append(run(["project"], repo))
        git("add", "-A", cwd=repo)  # the log's new events, as the engineer's next commit would
        git("commit", "-qm", "twin", cwd=repo)
    return times


def bench_big_board(work: Path, saves: int = 3) -> tuple[float, list[float]]:
    repo = twin(work / "video-twin")
    shutil.copytree(DEMOS / "video", repo / "hw" / "video", ignore=shutil.ignore_patterns("*.pdf", "*.wrl", "*.step"))
    mb = (repo / "hw/video/video.kicad_pcb").stat().st_size / 1e6
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "video", cwd=repo)
    run(["ingest", "hw"], repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "twin", cwd=repo)
    times = []
    for i in range(saves):
        run(["mutate", "set", "DesignElement:video/C1", f"value={331 + i}nF", "-m", "bench"], repo)
        times.append(run(["project"], repo))
        git("add", "-A", cwd=repo)
        git("commit", "-qm", "twin", cwd=repo)
    return mb, times


MODELS_TOTAL = 24


def bench_models(work: Path) -> tuple[int, float, float]:
    repo = twin(work / "stickhub-twin")
    shutil.copytree(DEMOS / "stickhub", repo / "hw")
    vendor = sorted((repo / "hw" / "3dmodels").iterdir())
    for i in range(MODELS_TOTAL - len(vendor)):  # a library folder of that many models
        src = vendor[i % len(vendor)]
        shutil.copy(src, src.with_name(f"{src.stem}_v{i}{src.suffix}"))
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "stickhub", cwd=repo)
    first = run(["ingest", "."], repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "twin", cwd=repo)
    again = run(["ingest", "."], repo)
    return MODELS_TOTAL, first, again


def main() -> None:
    if not DEMOS.is_dir():
        sys.exit("needs Debian's kicad-demos: apt-get install kicad-demos")
    work = Path(tempfile.mkdtemp(prefix="mf-bench-artifacts-"))
    try:
        n, mb, seconds, again = bench_demos(work)
        project = bench_project(work)
        board_mb, big = bench_big_board(work)
        models, models_first, models_again = bench_models(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [(f"mf ingest of the KiCad demos: {n} schematics and boards, {mb} MB, s", seconds, None),
            ("  seconds per MB", seconds / mb, 1.0),
            ("mf ingest of the same files again (unchanged: nothing parsed), s", again, None),
            ("mf project after one value change, 300-symbol schematic, commit included, median s",
             statistics.median(project), 2.0),
            (f"mf project after one value change, largest demo board ({board_mb:.1f} MB), median s",
             statistics.median(big), None),
            (f"mf ingest . of stickhub with {models} STEP models (3D-model artifacts), s", models_first, None),
            ("mf ingest . of the same again (unchanged: nothing parsed), s", models_again, None)]
    ok = True
    print(f"\n{'figure':<92} {'measured':>10} {'target':>8}")
    for name, value, limit in rows:
        good = limit is None or value < limit
        ok &= good
        print(f"{name:<92} {value:>10.3f} {'< ' + str(limit) if limit else '':>8}  {'' if limit is None else 'ok' if good else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
