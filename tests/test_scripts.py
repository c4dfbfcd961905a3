"""scripts/test on a machine that lacks the tools the tests use: as a user who cannot install them,
it stops before any test, naming each missing Debian package on a line of its own."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_test_command_names_what_is_missing_and_stops_first():
    tmp_path = Path(tempfile.mkdtemp(prefix="mf-scripts-test-"))  # pytest's own is private to root
    try:
        _check(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _check(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with git and the shell, and none of mosquitto, chromium, npm
    bin_dir.mkdir()
    for tool in ("bash", "git", "id", "dirname", "env"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "test", repo / "scripts" / "test")
    (repo / "scripts" / "setup").write_text("#!/usr/bin/env bash\necho setup ran; exit 3\n")
    for p in (tmp_path, bin_dir, repo, repo / "scripts"):
        p.chmod(0o755)
    cmd = ["bash", str(repo / "scripts" / "test")]
    if os.geteuid() == 0:  # root would install them: run it as a user who cannot
        cmd = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert p.returncode == 1, p.stderr
    assert "setup ran" not in p.stdout
    missing = [line.removeprefix("test: missing Debian package: ") for line in p.stderr.splitlines()
               if line.startswith("test: missing Debian package: ")]
    want = {"chromium", "nodejs", "npm"} | (set() if Path("/usr/sbin/mosquitto").exists() else {"mosquitto"})
    assert set(missing) == want
    assert not Path("/usr/share/kicad/demos").is_dir() or "kicad-demos" not in missing
