"""The repository as the server reads it: one Repo (and telemetry store) per thread, caught up
with the log before each answer, and the mapping of library errors to HTTP statuses."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import orjson
from starlette.responses import JSONResponse

from metaforge.errors import (BadInput, ConstraintViolation, LogCorrupt, MetaforgeError, NotFound, Refused,
                              VersionConflict)


class JSON(JSONResponse):
    """JSON by orjson (5-10x json's speed); a JSONResponse, so the OpenAPI document shows the models."""

    def render(self, content) -> bytes:
        return orjson.dumps(content, default=str)


class ReadOnly(Refused):
    kind = "read_only"


def status_of(exc: MetaforgeError) -> int:
    for cls, status in ((NotFound, 404), (ReadOnly, 403), (VersionConflict, 409), (ConstraintViolation, 422), (Refused, 409),
                        (BadInput, 400), (LogCorrupt, 503)):
        if isinstance(exc, cls):
            return status
    return 500


def error_response(exc: MetaforgeError) -> JSON:
    return JSON({"ok": False, "error": {"kind": exc.kind, "message": exc.message, "hint": exc.hint, **exc.details}},
                status_code=status_of(exc))


class Twin:
    """Per-thread access to one repository: SQLite connections are not shared between threads."""

    def __init__(self, root: Path):
        self.root = root
        self._local = threading.local()
        self._said: set[str] = set()

    def repo(self):
        from metaforge.repo import Repo

        repo = getattr(self._local, "repo", None)
        if repo is None:
            repo = self._local.repo = Repo(self.root)
        return repo

    def fresh(self):
        """The repo, its index as current as the log, checked as every command checks it: a stat of
        the log's segments when nothing changed (microseconds); a log changed by hand is verified
        from the index's last trusted position, a damaged index rebuilt, each said once on stderr.
        A log that does not verify is answered from the index at its last verified seq, as `mf
        status` does, never from the changed lines."""
        repo = self.repo()
        for notice in repo.sync_warnings():
            if notice not in self._said:
                self._said.add(notice)
                print(f"mf serve: {notice}", file=sys.stderr, flush=True)
        return repo

    def telemetry(self):
        from metaforge.sync.ingest import store

        ts = getattr(self._local, "telemetry", None)
        if ts is None:
            ts = self._local.telemetry = store(self.repo())
        ts.refresh_names()
        return ts
