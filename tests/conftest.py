"""Test helpers: real git repositories in tmp dirs, mf run in-process or as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from metaforge.cli.app import run

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("MF_ACTOR", "user:tester")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Tester")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "tester@example.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Tester")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "tester@example.invalid")


@pytest.fixture
def mf(capsys):
    """mf(*args, cwd=...) runs the CLI in this process and returns (code, stdout, stderr)."""

    def call(*args: str, cwd: Path | None = None) -> Ran:
        capsys.readouterr()
        argv = (["-C", str(cwd)] if cwd else []) + list(args)
        code = run(argv)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return call


def mf_process(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run mf as its own process, the way a hook or CI runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "metaforge", *args], cwd=cwd, capture_output=True, text=True,
                          env=full_env, timeout=timeout)


@pytest.fixture
def repo(tmp_path, mf) -> Path:
    """An initialized mf repository (a real git repository) with no events."""
    path = tmp_path / "product"
    r = mf("init", str(path))
    assert r.code == 0, r.err
    return path


@pytest.fixture
def twin(tmp_path, mf) -> Path:
    """A repository made from the drone flight controller template."""
    path = tmp_path / "drone"
    r = mf("init", str(path), "--template", "drone-flight-controller")
    assert r.code == 0, r.err
    return path


def read_log(path: Path) -> list[dict]:
    events = []
    for seg in sorted((path / ".metaforge" / "events").glob("*.jsonl")):
        events += [json.loads(line) for line in seg.read_text().splitlines()]
    return events


def log_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((path / ".metaforge" / "events").glob("*.jsonl")))
