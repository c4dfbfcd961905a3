"""A repository with a twin: finding `.metaforge/` like git finds `.git/`, its config, its stores."""

from __future__ import annotations

import os
import subprocess
from functools import cached_property
from pathlib import Path

from metaforge.actors import check_actor
from metaforge.errors import BadInput, NotARepository
from metaforge.store.index import GraphIndex
from metaforge.store.log import EventLog

MFDIR = ".metaforge"


class Repo:
    def __init__(self, root: Path):
        self.root = root
        self.mfdir = root / MFDIR
        self.log = EventLog(self.mfdir)
        self.index = GraphIndex(self.mfdir / "index.db")

    @classmethod
    def find(cls, start: str | Path | None = None) -> "Repo":
        """The nearest directory at or above `start` holding `.metaforge/`."""
        here = Path(start or os.getcwd()).resolve()
        for candidate in (here, *here.parents):
            if (candidate / MFDIR).is_dir():
                return cls(candidate)
        raise NotARepository(f"not inside an mf repository (searched {here} and every parent up to /)",
                             "run `mf init` at the top of your git repository")

    @cached_property
    def config(self) -> dict:
        import tomllib

        path = self.mfdir / "config.toml"
        try:
            with open(path, "rb") as f:
                return tomllib.load(f)
        except FileNotFoundError:
            return {}
        except tomllib.TOMLDecodeError as exc:
            raise BadInput(f"{MFDIR}/config.toml: {exc}") from None

    def telemetry(self):
        """A new connection to this repository's time-series store (the caller closes it).
        Imported here, not at the top: most commands never touch telemetry."""
        from metaforge.store.telemetry import TelemetryStore

        return TelemetryStore(self.mfdir / "telemetry.db")

    @cached_property
    def types(self) -> dict[str, dict[str, str]]:
        from metaforge.thread.entities import merged_types

        return merged_types(self.config.get("types"))

    def transaction(self, actor: str, source):
        """The one gate every write goes through (see thread/transaction.py): use it as
        `with repo.transaction(actor, Source.CLI) as tx: tx.change(...)`."""
        from metaforge.thread.transaction import Transaction

        return Transaction(self, actor, source)

    def sync_warnings(self, progress=None) -> list[str]:
        """Catch the index up with the log. A damaged log still lets reads answer from the index
        as it stands, with a warning; writes refuse (they sync under the lock and raise).

        A log a newer mf wrote (UnknownFormat) is not damaged, and reads refuse it too: the index
        would answer without the newer events, and only if this mf happened to build it before
        (a fresh clone has none), while the fix, a newer mf, is one command away."""
        from metaforge.errors import LogCorrupt, UnknownFormat

        try:
            self.index.sync(self.log, locked=False, progress=progress)
        except UnknownFormat:
            raise
        except LogCorrupt as exc:
            if not self.index.position().seq:
                raise
            return self.index_notices() + [f"{exc}; answering from the index at seq {self.index.position().seq}"]
        return self.index_notices()

    def index_notices(self) -> list[str]:
        """What the index did by itself (moved a damaged file aside and rebuilt), said once."""
        out, self.index.notices[:] = list(self.index.notices), []
        return out

    def close(self) -> None:
        self.index.close()


def default_actor(root: Path | None = None) -> str:
    """`user:<git user.name>` unless MF_ACTOR says otherwise, so people and agents are told apart."""
    actor = os.environ.get("MF_ACTOR")
    if actor:
        return check_actor(actor)
    name = git(["config", "user.name"], cwd=root, check=False)
    if not name:
        import getpass

        name = getpass.getuser()
    return f"user:{name}"


def git(args: list[str], cwd: Path | None = None, check: bool = True, env: dict | None = None) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             env={**os.environ, **env} if env else None)
    except FileNotFoundError:
        raise BadInput("git is not installed", "mf keeps the twin in a git repository") from None
    if out.returncode != 0:
        if check:
            raise BadInput(f"git {' '.join(args)}: {out.stderr.strip() or 'failed'}")
        return ""
    return out.stdout.strip()
