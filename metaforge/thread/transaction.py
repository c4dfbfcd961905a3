"""One gate for every change to the twin.

    with repo.transaction(actor, Source.INGEST) as tx:
        result = tx.change(changes, message, extra=records)   # or tx.record(drafts)

A transaction takes the log lock, catches the index up, plans the changes on the state as it is
(`thread/commands.py`), checks the constraints they can affect, applies the approval rules, and
then appends and projects, all under the write policy of its source and actor
(`thread/policy.py`). When it ends with something committed, whatever follows a commit is told:
the knowledge index is updated in the background, and in-process listeners (`on_commit`) run.

Nothing else takes the log lock to write; `EventLog.append` refuses to run without it.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable

from metaforge import events as ev
from metaforge.batch import no_gc
from metaforge.errors import BadInput, LogCorrupt, Refused, UnknownFormat
from metaforge.thread.commands import Change, Planned, Result, plan, refuse_if_blocked
from metaforge.graph import GraphState
from metaforge.thread.policy import LAND, PROPOSE, REFUSE, Source, rule_of

_listeners: list[Callable[[object, int], None]] = []
_appended = [0]  # the seq of this process's last append (the CLI asks whether a failed command had appended)


def last_appended() -> int:
    """The seq of the last event this process appended (0: none yet)."""
    return _appended[0]


def on_commit(listener: Callable[[object, int], None]) -> Callable[[], None]:
    """Call `listener(repo, last_seq)` after every transaction of this process that appended
    something. Returns the function that stops it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


class Transaction:
    def __init__(self, repo, actor: str, source: Source):
        from metaforge.actors import check_actor

        self.repo, self.actor, self.source = repo, check_actor(actor), source
        self.rule = None if source is Source.RECORD else rule_of(source, self.actor)
        self.last_seq = 0  # of the last event this transaction appended (0: nothing yet)
        self._stack = ExitStack()

    def __enter__(self) -> "Transaction":
        self._stack.enter_context(self.repo.log.lock())
        try:
            self._stack.enter_context(no_gc())
            self.repo.index.sync(self.repo.log, locked=True)
        except LogCorrupt as exc:
            self._stack.close()
            if isinstance(exc, UnknownFormat):
                raise
            hint = exc.hint if exc.hint and "mf verify" in exc.hint else \
                "run `mf verify` for the whole report" + (f"; {exc.hint}" if exc.hint else "")
            raise LogCorrupt(f"{exc.message}: refusing to append onto a log that does not verify", hint,
                             exc.details) from exc
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        self._stack.close()
        if kind is None and self.last_seq:
            _after_commit(self.repo, self.last_seq)
        return False

    @property
    def head(self):
        return self.repo.index.position()

    @property
    def index(self):
        return self.repo.index

    # ---- changes to entities ---------------------------------------------------------------

    def plan(self, changes: list[Change], message: str | None = None, *, dry_run: bool = False,
             actor: str | None = None) -> Planned:
        """Check and fold the changes on today's state, with their constraint verdicts. `actor`:
        the author of the changes when it is not this transaction's (an approved proposal)."""
        if self.rule is None:
            raise BadInput("a record transaction changes no entity")
        return plan(self.repo, changes, actor=actor or self.actor, message=message, dry_run=dry_run)

    def change(self, changes: list[Change], message: str | None = None, *, extra: list[ev.Draft] = (),
               dry_run: bool = False, proposal_records: list[ev.Draft] = ()) -> Result:
        """Plan the changes and land them under the policy; `extra`: records for the same batch.
        A change an approval rule covers becomes a proposal; `proposal_records` are the records
        that land with it once it is approved (the mapping of a file read in)."""
        return self.apply(self.plan(changes, message, dry_run=dry_run), extra=extra,
                          proposal_records=proposal_records)

    def apply(self, planned: Planned, *, extra: list[ev.Draft] = (), proposal_records: list[ev.Draft] = (),
              drafts: list[ev.Draft] | None = None) -> Result:
        """Land a planned batch under the policy (see `change`). `drafts` replaces the planned
        events when a caller annotates them (an approval adds its note)."""
        result = planned.result
        blocking = [v for v in result.verdicts if v.blocking]
        if result.dry_run:
            return result
        if blocking and result.drafts():
            if self.rule.on_violation == REFUSE:
                refuse_if_blocked(result)
            result.warnings = [v.message for v in blocking]
        if result.drafts() and self.rule.on_approval == PROPOSE:
            from metaforge.thread import approval

            changes = [o.change for o in result.outcomes]
            covering = approval.rule_for(self.repo.config, changes, planned.state)
            if covering is not None:
                approval.propose(self, planned, covering, records=list(proposal_records))
                return result
        self._append(planned.head, (result.drafts() if drafts is None else drafts) + list(extra),
                     planned.state, result.actor, result.ts)
        return result

    # ---- records: events that change no entity -------------------------------------------

    def record(self, drafts: list[ev.Draft]) -> int:
        """Append events that change no entity (mappings, StateLinks, drifts, proposals, merge
        decisions) and index them. Returns the seq of the first (0 if none)."""
        graph = [d for d in drafts if d.type in ev.GRAPH_EVENT_TYPES]
        if graph:
            raise Refused(f"{graph[0].type} of {graph[0].entity} changes an entity: it goes through a change")
        if not drafts:
            return 0
        head = self.head
        self._append(head, list(drafts), GraphState(base=self.repo.index), self.actor, ev.now())
        return head.seq + 1

    def _append(self, head, drafts: list[ev.Draft], state: GraphState, actor: str, ts: str) -> None:
        if not drafts:
            return
        records, end = self.repo.log.append(head, drafts, actor, ts)
        _appended[0] = end.seq
        self.repo.index.commit(state, records, end, self.repo.log)
        self.last_seq = end.seq


def _after_commit(repo, last_seq: int) -> None:
    """What follows a commit. The commit has landed: nothing here may fail the write."""
    import logging

    for notify in (lambda: _spawn_knowledge_update(repo),
                   *(lambda f=f: f(repo, last_seq) for f in list(_listeners))):
        try:
            notify()
        except Exception as exc:  # a listener's failure is its own, said in the log
            logging.getLogger("metaforge").warning("after commit: %s", exc)


@contextmanager
def maintenance(repo):
    """The log lock for work on the log that appends no event (verify --repair, rebuild, seal):
    the only other holder of the lock, so that a writer never sees half of it."""
    with repo.log.lock():
        yield


KNOWLEDGE_PENDING = "knowledge.db.pending"  # beside knowledge.db: ignored by git with it


def _spawn_knowledge_update(repo) -> None:
    """Index what was just committed, in the background, if this repository uses the knowledge
    index. One updater at a time: it removes the marker before it reads, so a commit after that
    starts the next one, and commits before it are all in what it reads."""
    import os
    import subprocess
    import sys
    import time

    if not (repo.mfdir / "knowledge.db").exists() or os.environ.get("MF_NO_BACKGROUND"):
        return
    marker = repo.mfdir / KNOWLEDGE_PENDING
    try:
        if time.time() - marker.stat().st_mtime < 120:
            return  # an updater is on its way and has not started reading yet
    except FileNotFoundError:
        pass
    marker.touch()
    subprocess.Popen([sys.executable, "-m", "metaforge", "-C", str(repo.root), "knowledge", "update", "--quiet"],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


__all__ = ["Transaction", "Source", "on_commit", "maintenance", "LAND", "PROPOSE"]
