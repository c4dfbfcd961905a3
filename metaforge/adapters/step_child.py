"""STEP files read in a child process: OpenCascade's reader can crash (a file truncated at an
entity boundary makes it dereference a missing entity) or take for ever, and neither may take mf
down with it. One child serves every STEP file of a command, so OCP is imported once; a child
that dies or overruns its time is killed, its file refused in one line, and the next file gets
a fresh child.

The child is a fresh interpreter (spawned), not a fork: mf may have threads running (a paho
client, a file watcher, the knowledge update) and a fork copies whatever lock one of them holds,
which hung the child once in the test suite. The interpreter costs ~0.1 s beside OCP's import.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from pathlib import Path

from metaforge.adapters.base import AdapterError

TIME_LIMIT = 300.0        # seconds one file may take to read, once OCP is imported
IMPORT_LIMIT = 120.0      # seconds the child may take to import OCP
LIMIT_ENV = "MF_STEP_TIME_LIMIT"


def time_limit() -> float:
    """The per-file limit; MF_STEP_TIME_LIMIT (seconds) overrides it for a huge assembly."""
    raw = os.environ.get(LIMIT_ENV, "")
    try:
        return float(raw) if raw else TIME_LIMIT
    except ValueError:
        return TIME_LIMIT


class _Child:
    def __init__(self, reader, warm):
        ctx = mp.get_context("spawn")
        self.pipe, theirs = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(theirs, reader, warm), daemon=True, name="mf-step-reader")
        self.process.start()
        theirs.close()
        self.ready = False

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.pipe.close()


_child: _Child | None = None


def parse(path: Path, rel: str, root: Path | None, reader, warm):
    """`reader(path, rel, root)` run by the child (which ran `warm()` once first, to import OCP)."""
    global _child
    if _child is None or not _child.process.is_alive():
        _child = _Child(reader, warm)
    child = _child
    try:
        if not child.ready:
            kind, body = _wait(child, rel, IMPORT_LIMIT, "importing OpenCascade")
            if kind == "refused":
                raise AdapterError(rel, body[0], hint=body[2])
            if kind != "ready":
                raise AdapterError(rel, f"OpenCascade could not be loaded: {body}")
            child.ready = True
        try:
            child.pipe.send((reader, str(path), rel, str(root) if root else None))  # any reader: a board's 3D view too
        except OSError:  # it died since (killed from outside): said as when it dies reading
            pass
        kind, body = _wait(child, rel, time_limit(), "reading it")
    except AdapterError:
        child.stop()
        _child = None
        raise
    if kind == "ok":
        return body
    if kind == "refused":
        reason, line, hint = body
        raise AdapterError(rel, reason, line, hint)
    raise AdapterError(rel, f"reading it failed inside OpenCascade: {body}")


def _wait(child: _Child, rel: str, limit: float, doing: str):
    if not child.pipe.poll(limit):
        if child.process.is_alive():
            raise AdapterError(rel, f"OpenCascade took more than {limit:g} s {doing}: refused "
                               f"(a larger limit: {LIMIT_ENV}=SECONDS)")
    try:
        return child.pipe.recv()
    except (EOFError, OSError):
        child.process.join(5)
        raise AdapterError(rel, f"OpenCascade crashed {doing} ({_death(child.process.exitcode)}): the file is "
                           "probably truncated or damaged; refused",
                           hint="export it again from the CAD program") from None


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _serve(pipe, reader, warm) -> None:
    """The child: import OCP once, then read one file per request until the parent hangs up."""
    try:
        warm()
    except AdapterError as exc:  # OCP is not installed
        pipe.send(("refused", (exc.reason, exc.line, exc.hint)))
        return
    except Exception as exc:  # noqa: BLE001 — told to the parent, which refuses the file with it
        pipe.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    pipe.send(("ready", None))
    while True:
        try:
            reader, path, rel, root = pipe.recv()
        except (EOFError, OSError):
            return
        try:
            pipe.send(("ok", reader(Path(path), rel, Path(root) if root else None)))
        except AdapterError as exc:
            pipe.send(("refused", (exc.reason, exc.line, exc.hint)))
        except Exception as exc:  # noqa: BLE001 — whatever OCP raises is told, never lost
            pipe.send(("failed", f"{type(exc).__name__}: {exc}"))
