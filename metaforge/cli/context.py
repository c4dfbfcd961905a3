"""What one `mf` command works on: the repository around it and who acts, each resolved once.

The app's callback makes one CommandContext per run (from `mf -C DIR`); a command takes it with
`context(actor)` and asks for `.repo` (found and caught up with the log when first asked, not
before: `--help` and usage errors open nothing) and `.actor` (its `--actor`, else MF_ACTOR, else
`user:<git user.name>`, checked once). The run closes it when the command ends. (DVC's `CmdBase`
does the same with its `Repo`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from metaforge.cli.output import progress_bar, warn

if TYPE_CHECKING:
    from metaforge.repo import Repo


class CommandContext:
    """The repository and the actor of one command, resolved lazily and once."""

    def __init__(self, cwd: str | None = None, actor: str | None = None):
        self.cwd = cwd              # `mf -C DIR`, or None for the working directory
        self.actor_option = actor   # the command's --actor, as typed
        self._repo: Repo | None = None
        self._caught_up = False
        self._actor: str | None = None

    def open(self, catch_up: bool = True) -> Repo:
        """The repository around `cwd`, found once. Reads and writes want it caught up with the log;
        `verify`, `rebuild` and `seal` look at the log as it is (`catch_up=False`)."""
        if self._repo is None:
            from metaforge.repo import Repo

            self._repo = Repo.find(self.cwd)
        if catch_up and not self._caught_up:
            with progress_bar("catching up the index") as update:
                for w in self._repo.sync_warnings(progress=update):
                    warn(w)
            self._caught_up = True
        return self._repo

    @property
    def repo(self) -> Repo:
        """The repository, its index caught up with the log (a damaged log: a warning, the index as it stands)."""
        return self.open()

    @property
    def actor(self) -> str:
        """Who this command acts as: --actor, else MF_ACTOR, else user:<git user.name> (so people and
        agents are told apart in the log)."""
        if self._actor is None:
            from metaforge.repo import default_actor

            self._actor = self.given_actor or default_actor(self.repo.root)
        return self._actor

    @property
    def given_actor(self) -> str | None:
        """--actor checked, or None when not given: for commands whose library picks its own default
        (`mf init`, `mf drift resolve` takes the file's author, `mf serve` the requester's)."""
        from metaforge.actors import check_actor

        return check_actor(self.actor_option) if self.actor_option else None

    def acting_as(self, actor: str | None) -> "CommandContext":
        """Take the command's --actor (None leaves the default)."""
        if actor is not None and actor != self.actor_option:
            self.actor_option, self._actor = actor, None
        return self

    @property
    def base(self) -> Path:
        """Where the paths a user types start: `mf -C DIR`, else the working directory."""
        return Path(self.cwd or ".")

    def path(self, typed: str | Path) -> Path:
        """A path as the user typed it, relative to `mf -C DIR` when given."""
        return self.base / typed

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
        self._repo, self._caught_up = None, False


def begin(cwd: str | None) -> CommandContext:
    """Start the context of a new run (the app's callback)."""
    from metaforge.cli import state

    end()
    state.context = CommandContext(cwd)
    return state.context


def end() -> None:
    """Close the run's context, if one was started (the app, when the command returns or fails)."""
    from metaforge.cli import state

    if state.context is not None:
        state.context.close()
        state.context = None


def context(actor: str | None = None) -> CommandContext:
    """The context of the command running now, told its --actor."""
    from metaforge.cli import state

    if state.context is None:  # a command function called outside `mf`'s app
        state.context = CommandContext(state.cwd)
    return state.context.acting_as(actor)
