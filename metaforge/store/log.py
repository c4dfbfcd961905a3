"""The append-only event log: JSON Lines in segment files under `.metaforge/events/`.

Segments are numbered 000001.jsonl, 000002.jsonl, ...; each holds a contiguous run of seq and
every append goes to the last one. A new segment is started only by `mf seal` (on the main
branch, when no branch with events is open), never by an append: so everything a branch appends
after it forks lands in one file, and the git merge driver, which sees one file at a time, sees
all of it (see thread/merge.py).

Writers hold an exclusive flock on `.metaforge/log.lock`. A batch is made atomic with a
rollback journal (the sizes of the files before the batch): written and fsync'd before the
first byte of the batch, removed after the last byte is fsync'd. Whoever takes the lock next
and finds a journal rolls the unfinished batch back, so a killed writer leaves all of its
batch or none of it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import orjson

from metaforge import events as ev
from metaforge.errors import LogCorrupt, MetaforgeError, StorageError, UnknownFormat
from metaforge.events import FORMAT, GENESIS, Draft, check_hash, encode, line_hash

_SEGMENT_RE = re.compile(r"^(\d{6})\.jsonl$")
_BLOCK = 32 << 20  # read segments in 32 MB blocks: a long-lived segment may hold a million events


def segment_name(num: int) -> str:
    return f"{num:06d}.jsonl"


class Position(NamedTuple):
    """Where the log ends: the last event and the size of the file it is in."""

    seq: int = 0
    hash: str = GENESIS
    segment: int = 0
    size: int = 0
    mtime_ns: int = 0


class TornTail(LogCorrupt):
    """The last segment ends in a partial line (a crash mid-write): repairable."""

    def __init__(self, path: str, line: int, size: int, keep: int):
        super().__init__(f"{path}:{line}: torn last line ({size - keep} bytes without an end)",
                         "run `mf verify --repair` to cut it (it refuses if complete events would go)")
        self.path, self.line, self.size, self.keep = path, line, size, keep


class LogUnlocked(MetaforgeError):
    """A bug: something tried to append without holding the lock (exit code 3)."""

    kind = "internal"


@dataclass(slots=True)
class Record:
    """An event as read from (or just written to) the log, with where it lives."""

    event: dict   # the plain dict the folds read (upcast to this build's format)
    segment: int
    offset: int

    def typed(self) -> ev.Event:
        """The event with its payload as its declared model, built now (the folds never ask)."""
        return ev.typed(self.event)


class EventLog:
    def __init__(self, mfdir: Path):
        self.dir = mfdir / "events"
        self.lock_path = mfdir / "log.lock"
        self.journal_path = mfdir / "log.journal"
        self.rel = ".metaforge/events"
        self._held = 0  # how deep this process is in lock(): append refuses at 0

    # ---- files -------------------------------------------------------------------------

    def path(self, num: int) -> Path:
        return self.dir / segment_name(num)

    def display(self, num: int) -> str:
        return f"{self.rel}/{segment_name(num)}"

    def segments(self) -> list[int]:
        """Segment numbers present, checked to run 1..N without a hole."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            raise LogCorrupt(f"{self.rel}/ is missing", "restore it from git: git checkout -- .metaforge/events")
        nums = sorted(int(m.group(1)) for n in names if (m := _SEGMENT_RE.match(n)))
        for expect, num in enumerate(nums, start=1):
            if num != expect:
                raise LogCorrupt(f"{self.display(expect)} is missing (found {self.display(num)})",
                                 "restore it from git: git checkout -- .metaforge/events")
        return nums

    def fingerprint(self) -> list[list[int]]:
        """[segment, size, mtime_ns, ctime_ns, inode] of every segment, read with stat() only: the
        cheap check (git's index keeps the same for each file) that the log is the one an index
        was built from. Any difference means something wrote the log, and the chain is checked."""
        out = []
        for num in self.segments():
            st = os.stat(self.path(num))
            out.append([num, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
        return out

    def segment_start(self, num: int) -> Position:
        """Where segment `num` begins in the chain: after the last line of segment num - 1, read
        from its last line alone (the caller trusts that segment). Position() if it cannot tell."""
        if num <= 1:
            return Position()
        prev = self.path(num - 1)
        try:
            size = os.path.getsize(prev)
            h = self.tail_hash(num - 1, size)
            if h is None:
                return Position()
            with open(prev, "rb") as f:
                f.seek(max(0, size - (1 << 20)))
                last = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
            seq = orjson.loads(last)["seq"]
        except (OSError, ValueError, KeyError, TypeError):
            return Position()
        return Position(seq, h, num, 0) if type(seq) is int else Position()

    def first_hash(self) -> str | None:
        """The hash of the log's first event (None if there is none or it is not sound): which log
        this is, whatever was appended since."""
        try:
            with open(self.path(1), "rb") as f:
                line = f.readline()
        except FileNotFoundError:
            return None
        return check_hash(line[:-1]) if line.endswith(b"\n") else None

    def committed(self, num: int) -> bytes | None:
        """Segment `num` as git's HEAD holds it (None: not committed, or no git)."""
        import subprocess

        try:
            out = subprocess.run(["git", "show", f"HEAD:./{self.rel}/{segment_name(num)}"], cwd=self.dir.parent.parent,
                                 capture_output=True)
        except OSError:
            return None
        return out.stdout if out.returncode == 0 else None

    def has_commits(self) -> bool:
        """Does the git repository around the log have a commit (so a checkout could have happened)?"""
        import subprocess

        try:
            out = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=self.dir.parent.parent,
                                 capture_output=True)
        except OSError:
            return False
        return out.returncode == 0

    def stat_head(self) -> tuple[int, int, int]:
        """(last segment, its size, its mtime_ns) without reading anything: the fast check."""
        nums = self.segments()
        if not nums:
            return 0, 0, 0
        st = os.stat(self.path(nums[-1]))
        return nums[-1], st.st_size, st.st_mtime_ns

    # ---- locking and recovery ----------------------------------------------------------

    @contextmanager
    def lock(self):
        """The exclusive write lock (re-entrant within this object). Writers get it through
        `repo.transaction()`; the index takes it to catch up."""
        if self._held:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.recover()
            self._held = 1
            yield
        finally:
            self._held = 0
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def recover(self) -> bool:
        """Roll back a batch whose writer died before it finished (call under the lock)."""
        try:
            journal = json.loads(self.journal_path.read_text())
        except FileNotFoundError:
            return False
        except ValueError:
            journal = None  # torn journal: the writer died before writing any event
        if journal:
            for name, size in journal["sizes"].items():
                with open(self.dir / name, "r+b") as f:
                    f.truncate(size)
                    os.fsync(f.fileno())
            for name in journal["created"]:
                try:
                    os.unlink(self.dir / name)
                except FileNotFoundError:
                    pass
            _fsync_dir(self.dir)
        os.unlink(self.journal_path)
        _fsync_dir(self.journal_path.parent)
        return True

    # ---- writing -----------------------------------------------------------------------

    def append(self, head: Position, drafts: list[Draft], actor: str, ts: str,
               ids: list[str] | None = None) -> tuple[list[Record], Position]:
        """Append a batch after `head`, which must be the true end: only under the lock, which
        `repo.transaction()` holds."""
        if not self._held:
            raise LogUnlocked("event log: append outside the write lock (writes go through repo.transaction())")
        if not drafts:
            return [], head
        num = head.segment or 1
        seq, prev, offset = head.seq, head.hash, head.size if head.segment else 0
        lines: list[bytes] = []
        records: list[Record] = []
        for i, draft in enumerate(drafts):
            seq += 1
            line, eid, prev = encode(seq, draft, ts, actor, prev, ids[i] if ids else None)
            records.append(Record(_record_dict(seq, eid, draft, ts, actor, prev), num, offset))
            lines.append(line)
            offset += len(line)
        path = self.path(num)
        created = not path.exists()
        journal = {"sizes": {} if created else {segment_name(num): head.size},
                   "created": [segment_name(num)] if created else []}
        try:
            _write_durable(self.journal_path, json.dumps(journal).encode())
        except OSError as exc:
            self._undo()
            raise StorageError.of(exc, ".metaforge/log.journal") from exc
        try:
            with open(path, "ab") as f:
                f.write(b"".join(lines))
                f.flush()
                os.fsync(f.fileno())
            if created:
                _fsync_dir(self.dir)
        except OSError as exc:  # no space, a size limit, an I/O error: take back what got written
            self._undo()
            raise StorageError.of(exc, self.display(num)) from exc
        os.unlink(self.journal_path)  # the commit point
        _fsync_dir(self.journal_path.parent)
        st = os.stat(path)
        return records, Position(seq, prev, num, st.st_size, st.st_mtime_ns)

    def _undo(self) -> None:
        """Roll back the batch being written now (its journal is on disk, or torn, or absent)."""
        try:
            self.recover()
        except OSError:
            pass  # the journal stays: whoever takes the lock next rolls the batch back

    def seal(self) -> str | None:
        """Start a new segment, so the current one never changes again (under the lock)."""
        nums = self.segments()
        if not nums or os.path.getsize(self.path(nums[-1])) == 0:
            return None
        self.path(nums[-1] + 1).touch()
        _fsync_dir(self.dir)
        return self.display(nums[-1] + 1)

    # ---- reading -----------------------------------------------------------------------

    def read(self, start: Position = Position(), stop_at_torn: bool = False) -> "LogReader":
        return LogReader(self, start, stop_at_torn)

    def tail_hash(self, num: int, size: int) -> str | None:
        """The hash of the line that ends at byte `size` of segment `num`, if it is valid."""
        try:
            with open(self.path(num), "rb") as f:
                if size <= 0 or os.fstat(f.fileno()).st_size < size:
                    return None
                back = 4096
                while True:
                    f.seek(max(0, size - back))
                    chunk = f.read(min(back, size))
                    if not chunk.endswith(b"\n"):
                        return None
                    cut = chunk.rfind(b"\n", 0, len(chunk) - 1)
                    if cut >= 0 or back >= size:
                        return check_hash(chunk[cut + 1:-1])
                    back *= 4
        except FileNotFoundError:
            return None

    def lines_at(self, refs: list[tuple[int, int]]) -> list[dict]:
        """Events stored at (segment, offset) pairs, read straight from their files."""
        out, handles = [], {}
        try:
            for num, offset in refs:
                f = handles.get(num) or handles.setdefault(num, open(self.path(num), "rb"))
                f.seek(offset)
                d = orjson.loads(f.readline())
                out.append(d if d.get("v") == FORMAT else ev.upcast(d))
        finally:
            for f in handles.values():
                f.close()
        return out

    def cut(self, num: int, keep: int) -> None:
        """Cut segment `num` to its first `keep` bytes (removing it if nothing is kept): `mf verify
        --repair`, under the lock, after it has decided what may go."""
        path = self.path(num)
        if keep == 0:
            os.unlink(path)
            _fsync_dir(self.dir)
        else:
            with open(path, "r+b") as f:
                f.truncate(keep)
                os.fsync(f.fileno())

@dataclass(slots=True)
class _Torn:
    segment: int
    line: int
    size: int
    keep: int


class LogReader:
    """Iterates the log from a position, checking seq, chain, hashes and format as it goes: the one
    place lines are upcast, and where a line of a format this build does not know stops the read.

    After iteration `position` is where the log ends. With stop_at_torn, a torn tail ends
    the iteration and is described in `torn`; otherwise it raises TornTail.
    """

    def __init__(self, log: EventLog, start: Position, stop_at_torn: bool):
        self.log, self.position, self.stop_at_torn = log, start, stop_at_torn
        self.torn: _Torn | None = None

    def __iter__(self) -> Iterator[Record]:
        log = self.log
        nums = log.segments()
        seq, prev = self.position.seq, self.position.hash
        first = self.position.segment or 1
        loads, fmt = orjson.loads, FORMAT
        for num in nums:
            if num < first:
                continue
            start = self.position.size if num == self.position.segment else 0
            offset = start
            with open(log.path(num), "rb") as f:
                f.seek(start)
                carry = b""
                while True:
                    block = f.read(_BLOCK)
                    data = carry + block
                    if not block:
                        break
                    lines = data.split(b"\n")
                    carry = lines.pop()
                    for line in lines:
                        seq += 1
                        try:
                            d = loads(line)
                            h = line_hash(line)
                            if h is None or d["seq"] != seq or d["prev"] != prev or d["v"] != fmt:
                                raise ValueError
                        except (ValueError, KeyError, TypeError):
                            d, h = self._slow_check(line, num, offset, seq, prev)
                        prev = h
                        yield Record(d, num, offset)
                        offset += len(line) + 1
            end = offset + len(carry)
            if carry:
                lineno = self._line_number(num, offset)
                if num != nums[-1]:
                    raise LogCorrupt(f"{log.display(num)}:{lineno}: line without an end in a sealed segment")
                torn = _Torn(num, lineno, end, offset)
                if not self.stop_at_torn:
                    raise TornTail(log.display(num), torn.line, torn.size, torn.keep)
                self.torn = torn
                end = offset
            self.position = Position(seq, prev, num, end, 0)

    def _line_number(self, num: int, offset: int) -> int:
        """The line that starts at byte `offset` of a segment (counted only when something is wrong)."""
        with open(self.log.path(num), "rb") as f:
            return f.read(offset).count(b"\n") + 1

    def _slow_check(self, line: bytes, num: int, offset: int, seq: int, prev: str) -> tuple[dict, str]:
        """The line that failed the fast check: upcast it if it is sound and only older, else say
        exactly what is wrong with it (and raise). The format is judged first: a newer mf's line
        may not even hash the way this one does."""
        lineno = self._line_number(num, offset)
        where = f"{self.log.display(num)}:{lineno}"
        if not line:
            raise LogCorrupt(f"{where}: empty line", "restore the file from git")
        try:
            d = orjson.loads(line)
            if not isinstance(d, dict):
                raise ValueError
        except ValueError:
            raise LogCorrupt(f"{where}: not a JSON event", "restore the file from git") from None
        v = d.get("v", 1)
        if type(v) is not int or v < 1:
            raise LogCorrupt(f"{where}: event format {v!r} is not a format of mf", "restore the file from git")
        if v > FORMAT:
            raise UnknownFormat(f"{where}: {ev.newer_format(v)}", ev.UPGRADE_HINT,
                                {"file": self.log.display(num), "line": lineno, "format": v})
        h = line_hash(line)
        if h is None:
            raise LogCorrupt(f"{where}: hash does not match the line (edited or damaged)",
                             "restore the file from git: a corrected fact is a new event")
        if d.get("seq") != seq:
            raise LogCorrupt(f"{where}: seq {d.get('seq')} where {seq} was expected")
        if d.get("prev") != prev:
            raise LogCorrupt(f"{where}: chain broken (prev does not match the previous event's hash)",
                             "an event before it was edited, removed or reordered")
        try:
            return ev.upcast(d), h
        except (KeyError, TypeError, ValueError) as exc:
            raise LogCorrupt(f"{where}: an event of format {v} this mf cannot upcast ({exc!r})") from None


def _record_dict(seq: int, eid: str, draft: Draft, ts: str, actor: str, h: str) -> dict:
    return {"seq": seq, "id": eid, "type": draft.type, "entity": draft.entity, "version": draft.version,
            "ts": ts, "actor": draft.actor or actor, "payload": draft.payload, "msg": draft.msg, "hash": h}


def _write_durable(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
