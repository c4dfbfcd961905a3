"""Drift live: the reconciler, and the watch that runs it on every save.

The reconciler makes the log's open drifts (drift.detected not yet resolved) exactly the real
ones: it detects every file's drift under the log lock and appends `drift.detected` where a
file's disagreement is new or changed, `drift.resolved` where it is gone. Because it appends
only what differs from what the log already holds, a save seen twice, or a save and the
periodic pass, never records the same drift twice.

The watch follows the working tree with watchfiles and reconciles the files a change touched
(and everything when the event log itself changed: the graph moved), plus all files every N
seconds and at start, which catches what no watch saw (a `git checkout`, a file changed while
nothing watched). Editors that save by writing a temporary file and renaming it over the old
one show up as a change of the file's path like any other save.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from collections.abc import Callable

from metaforge.thread import drift

# a file seen missing or unreadable is looked at again after this long: editors that save by
# deleting and re-creating, or by writing in two steps, leave such a moment behind
SETTLE_S = 0.25
STEP_MS = 50      # watchfiles' own grouping of the events of one save
MAX_WAIT_S = 2.0  # changes that never pause are read at least this often


def reconcile(repo, actor: str, rels: list[str] | None = None, *, settle: float = 0.0) -> dict:
    """Bring the log's open drifts in line with the files (all of them, or those under `rels`)."""
    from metaforge.thread.policy import Source

    with repo.transaction(actor, Source.RECORD) as tx:
        report = drift.detect(repo, rels, locked=True, settle=settle)
        real = {fd.path: fd for fd in report.drifts}
        opened = drift.open_drifts(repo)
        if rels is not None:
            checked = {r[0] for r in drift._select(repo, rels)[0]}
            opened = {p: o for p, o in opened.items() if p in checked}
        drafts, detected, resolved = [], [], []
        for path, fd in real.items():
            o = opened.get(path)
            if o is None or o["fingerprint"] != fd.fingerprint:
                detected.append((fd, len(drafts)))
                drafts.append(drift.detected_draft(fd))
        for path, o in opened.items():
            if path not in real:
                how = _why_gone(repo, path, o)
                drafts.append(drift.resolved_draft(path, how, o))
                resolved.append({"path": path, "how": how, "drift": o["seq"]})
        first = tx.record(drafts)
        still = drift.open_drifts(repo)
    return {"checked": report.checked, "parsed": report.parsed,
            "detected": [{"id": first + at, **fd.as_dict()} for fd, at in detected],
            "resolved": resolved,
            "open": [{"id": o["seq"], "path": p, "direction": o["payload"]["direction"],
                      "summary": o["payload"]["summary"]} for p, o in still.items()]}


def _why_gone(repo, path: str, opened: dict) -> str:
    """How a drift ended without `mf drift resolve`: the file was read in or written since, the
    file went back to what was mapped, or the graph came back to the file's values."""
    row = repo.index.artifact(path)
    if row is None or row.how == "removed":
        return "unmapped"
    if row.seq > opened["payload"].get("mapping_seq", 0):
        return {"ingest": "ingested", "project": "projected"}.get(row.how, row.how)
    try:
        same = drift.sha256((repo.root / path).read_bytes()) == row.sha256
    except OSError:
        same = False
    return "reverted" if same else "reconciled"


# ---- the watch ----------------------------------------------------------------------------------

class _Filter:
    """Changes worth a look: files an adapter reads, and the event log's segments."""

    def __init__(self, root: Path):
        from metaforge.adapters import registry

        self.root, self.registry = str(root), registry
        self.events = os.path.join(self.root, ".metaforge", "events") + os.sep

    def __call__(self, change, path: str) -> bool:
        if path.startswith(self.events):
            return path.endswith(".jsonl")
        rel = os.path.relpath(path, self.root)
        if rel.startswith((".git" + os.sep, ".metaforge" + os.sep)):
            return False
        return self.registry.for_file(rel) is not None


def watch(repo, *, actor: str, accept: bool = False, debounce_ms: int = 300, reconcile_every: float = 30.0,
          report: Callable[[str, dict], None] = lambda kind, data: None, stop=None) -> None:
    """Follow the working tree until `stop` is set (a threading.Event) or Ctrl-C.

    `report(kind, data)` hears what happens: "started" (the first pass's result, with the drifts
    open), "reconciled" (a pass that recorded something), "accepted" (a
    person's edit taken into the graph with --accept), "refused" (an accept that failed: the
    drift stays open), "error" (a pass that failed; the watch goes on).
    """
    import threading

    import watchfiles

    root = repo.root.resolve()
    stop = stop or threading.Event()
    restore = _stop_on_signals(stop)
    state = _WatchState()
    try:
        # watchfiles hands a batch once no change came for STEP_MS; the debounce is ours: a batch's
        # files are read once no change came for debounce_ms (its own wake-up then, with nothing),
        # or after MAX_WAIT_S of changes that never stop. The first pass runs at the first wake-up,
        # once the watcher is live, so no save falls between it and the watch.
        for changes in watchfiles.watch(root, watch_filter=_Filter(root), step=STEP_MS, debounce=1600,
                                        stop_event=stop, rust_timeout=debounce_ms, yield_on_timeout=True,
                                        raise_interrupt=False):
            if stop.is_set():
                break
            if changes:
                state.add(_touched(repo, root, changes, state.log_seen))
                if not state.overdue():
                    continue
            full = not state.started or state.full or time.monotonic() - state.last_full >= reconcile_every
            if not full and not state.pending:
                continue
            _pass(repo, actor, None if full else sorted(state.pending), accept, report, first=not state.started)
            state.done(repo, full)
    finally:
        restore()


class _WatchState:
    """What the watch has seen and not yet read, and when it last read everything."""

    def __init__(self):
        self.started, self.full, self.pending = False, False, set()
        self.since: float | None = None
        self.last_full = 0.0
        self.log_seen = None

    def add(self, rels: list[str] | None) -> None:
        if rels is None:
            self.full = True
        else:
            self.pending.update(rels)
        if (self.full or self.pending) and self.since is None:
            self.since = time.monotonic()

    def overdue(self) -> bool:
        return self.since is not None and time.monotonic() - self.since >= MAX_WAIT_S

    def done(self, repo, full: bool) -> None:
        self.started, self.full, self.pending, self.since = True, False, set(), None
        self.log_seen = repo.log.stat_head()  # our own appends are no news
        if full:
            self.last_full = time.monotonic()


def _touched(repo, root: Path, changes, log_seen: tuple) -> list[str] | None:
    """The mapped files a batch of changes touched; None (all files) when someone else appended to
    the log (the graph may have moved)."""
    events = os.path.join(str(root), ".metaforge", "events") + os.sep
    if any(p.startswith(events) for _, p in changes) and repo.log.stat_head() != log_seen:
        return None
    mapped = {a.path for a in repo.index.artifacts()}
    return sorted({rel for _, p in changes for rel in [Path(os.path.relpath(p, root)).as_posix()] if rel in mapped})


def _pass(repo, actor: str, rels: list[str] | None, accept: bool, report, first: bool = False) -> None:
    try:
        out = reconcile(repo, actor, rels, settle=SETTLE_S)
    except Exception as exc:  # noqa: BLE001 — a pass that fails is said; the watch goes on
        report("error", {"message": getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}",
                         "hint": getattr(exc, "hint", None)})
        return
    if first or out["detected"] or out["resolved"]:
        report("started" if first else "reconciled", out)
    if accept:
        taken = [d for d in out["detected"] if d["direction"] == "file" and _accept(repo, actor, d, report)]
        if taken:  # the graph moved: the other files of those entities may now lag behind it
            _pass(repo, actor, None, False, report)


def _accept(repo, actor: str, d: dict, report) -> bool:
    """Only a person's saved edit (direction file) is taken; never undo the graph's changes."""
    from metaforge.errors import MetaforgeError
    from metaforge.thread.drift_resolve import resolve

    try:
        out = resolve(repo, d["path"], how="accept-file", actor=actor)
    except MetaforgeError as exc:
        report("refused", {"path": d["path"], "id": d["id"], "message": exc.message, "hint": exc.hint})
        return False
    report("accepted", out)
    return True


def _stop_on_signals(stop) -> Callable[[], None]:
    """Ctrl-C (and SIGTERM) end the watch after the pass in hand, never in the middle of an append."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, handler in old.items():
            signal.signal(s, handler)

    return restore
