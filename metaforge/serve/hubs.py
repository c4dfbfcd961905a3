"""Live pushes: new events (/ws/events) and device overlays (/ws/devices/{id}).

The server follows the stores that `mf ingest` and every writer fill, whichever process they run
in, instead of subscribing to MQTT itself: what a viewer sees is what the twin holds (a sample
ingest refused never shows), and telemetry ingested from a file shows the same way. Following is
cheap: `PRAGMA data_version` tells in a few microseconds whether another connection committed
to telemetry.db, and the log's last segment size whether an event was appended; only then are
the new rows read (one B-tree range per metric of a watched device). Polled every 10 ms, a
sample reaches a browser about 5 ms after ingest stored it, well inside the 50 ms asked of MQTT
publish to browser.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field

import orjson

from metaforge.errors import MetaforgeError

log = logging.getLogger("mf.serve")
QUEUE = 512  # overlays a slow client may lag behind before the oldest are dropped (and it is told)


@dataclass(eq=False)
class Subscriber:
    types: tuple[str, ...] = ()   # event types (a prefix ending in "." or "*" for a family); () for all
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE))
    dropped: int = 0

    def push(self, message: bytes) -> None:
        if self.queue.full():  # a client that cannot keep up loses the oldest overlays, never stalls the others
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)

    def wants(self, event_type: str) -> bool:
        return not self.types or any(event_type == t or (t.endswith((".", "*")) and
                                                         event_type.startswith(t.rstrip("*")))
                                     for t in self.types)


class EventHub:
    """Follows the event log; keeps the newest events (RECENT) ready for the /ws/events feeds and
    wakes them when the log moves. Each feed reads at its own pace from its own position: from
    this buffer while its position is in it, else from the log in pages (EventFeed). Nothing is
    queued per client, so nothing is dropped: a slow client lags, and catches up from the log."""

    RECENT = 1024
    PAGE = 500

    def __init__(self, twin, poll_s: float):
        self.twin, self.poll_s = twin, poll_s
        self.listeners = []  # callables given each new event (the device hub watches health changes)
        self.head = None
        self.last_seq = None
        self.recent: deque[tuple[int, str, bytes]] = deque(maxlen=self.RECENT)  # (seq, type, message)
        self._moved = asyncio.Event()

    def start_position(self) -> None:
        repo = self.twin.repo()
        repo.sync_warnings()
        self.head = repo.log.stat_head()
        self.last_seq = repo.index.position().seq

    def moved(self) -> asyncio.Event:
        """Set once the log moves past what is known now (take it before reading, then wait on it)."""
        return self._moved

    def buffered(self, after: int) -> list[tuple[int, str, bytes]] | None:
        """The events after seq `after`, from the buffer; None when it does not reach back so far."""
        if after >= self.last_seq:
            return []
        if not self.recent or self.recent[0][0] > after + 1:
            return None
        return list(itertools.islice(self.recent, after + 1 - self.recent[0][0], None))

    def page(self, after: int) -> list[tuple[int, str, bytes]]:
        """Up to PAGE events after seq `after`, read from the log (in a worker thread: one Repo each)."""
        from metaforge.thread.queries import history

        return [(e["seq"], e["type"], _event_message(e))
                for e in history(self.twin.fresh(), None, None, self.PAGE, after, reverse=True)]

    def poll(self) -> None:
        repo = self.twin.repo()
        head = repo.log.stat_head()
        if head == self.head:
            return
        from metaforge.thread.queries import history

        repo.sync_warnings()
        self.head = head
        events = history(repo, None, None, None, self.last_seq, reverse=True)
        for e in events:
            self.last_seq = e["seq"]
            self.recent.append((e["seq"], e["type"], _event_message(e)))
            for listener in self.listeners:
                listener(e)
        if events:
            moved, self._moved = self._moved, asyncio.Event()
            moved.set()

    async def run(self) -> None:
        """Poll the log every poll_s, and at once when a write of this process commits (the
        transaction's on_commit): another process's events arrive by the poll."""
        from metaforge.thread.transaction import on_commit

        loop, woken = asyncio.get_running_loop(), asyncio.Event()
        stop = on_commit(lambda repo, seq: loop.call_soon_threadsafe(woken.set))
        try:
            while True:
                try:
                    await asyncio.wait_for(woken.wait(), self.poll_s)
                except asyncio.TimeoutError:
                    pass
                woken.clear()
                self._poll_logged()
        finally:
            stop()

    def _poll_logged(self) -> None:
        try:
            self.poll()
        except (MetaforgeError, OSError) as exc:  # a log mid-rewrite (checkout): try again next time
            log.warning("events: %s", exc)


class EventFeed:
    """One /ws/events client: every event after its position, in order, each once."""

    def __init__(self, hub: EventHub, since_seq: int | None, types: tuple[str, ...] = ()):
        self.hub, self.filter = hub, Subscriber(types=types)
        self.position = hub.last_seq if since_seq is None else since_seq

    async def run(self, send) -> None:
        """`send(message)` each event the client wants, until cancelled."""
        from starlette.concurrency import run_in_threadpool

        hub = self.hub
        while True:
            moved = hub.moved()
            if self.position >= hub.last_seq:
                await moved.wait()
                continue
            batch = hub.buffered(self.position)
            if batch is None:  # behind the buffer: a page from the log
                try:
                    batch = await run_in_threadpool(hub.page, self.position)
                except (MetaforgeError, OSError) as exc:  # a log mid-rewrite (checkout): again in a moment
                    log.warning("events feed: %s", exc)
                    await asyncio.sleep(max(hub.poll_s, 0.1))
                    continue
                if not batch:  # the log no longer reaches here (rewritten under us): on from its end
                    self.position = hub.last_seq
            for seq, event_type, message in batch:
                if self.filter.wants(event_type):
                    await send(message)
                self.position = seq


def _event_message(e: dict) -> bytes:
    return orjson.dumps({"type": "event", "event": e})


class DeviceHub:
    """Follows telemetry.db for the devices someone watches, and pushes each one's overlay."""

    def __init__(self, twin, poll_s: float):
        self.twin, self.poll_s = twin, poll_s
        self.subscribers: dict[str, set[Subscriber]] = {}
        self.builders = {}
        self.latest: dict[str, dict[str, tuple[int, float]]] = {}
        self.version = None
        self._store = None

    def store(self):
        if self._store is None:
            from metaforge.sync.ingest import store

            self._store = store(self.twin.repo())
        return self._store

    def subscribe(self, device: str, sub: Subscriber) -> str:
        """Watch a device (NotFound for an unknown one); the current overlay is queued at once."""
        from metaforge.serve.overlay import OverlayBuilder

        repo = self.twin.fresh()
        builder = self.builders.get(device) or OverlayBuilder(repo, device)
        name = builder.device
        self.builders[name] = builder
        if name not in self.subscribers:
            st = self.store()
            st.refresh_names()
            self.latest[name] = st.latest(name)
            self.subscribers[name] = set()
        self.subscribers[name].add(sub)
        sub.push(self._message(name, {}))
        return name

    def unsubscribe(self, device: str, sub: Subscriber) -> None:
        subs = self.subscribers.get(device)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self.subscribers[device]
            self.builders.pop(device, None)
            self.latest.pop(device, None)

    def _message(self, device: str, samples: dict) -> bytes:
        overlay = self.builders[device].build(self.latest[device], samples)
        return orjson.dumps({"type": "overlay", **overlay})

    def poll(self) -> None:
        if not self.subscribers:
            return
        st = self.store()
        version = st.data_version()
        if version == self.version:
            return
        self.version = version
        st.refresh_names()
        for device, subs in self.subscribers.items():
            latest = self.latest[device]
            new = st.newer(device, {m: ts for m, (ts, _) in latest.items()})
            if not new:
                continue
            for metric, rows in new.items():
                latest[metric] = rows[-1]
            message = self._message(device, new)
            for sub in subs:
                sub.push(message)

    def on_event(self, e: dict) -> None:
        """A device's health changed (ingest's live twin said so): push its overlay again."""
        if e["type"] != "device.state_updated":
            return
        device = e["entity"].split(":", 1)[1]
        if device in self.subscribers:
            message = self._message(device, {})
            for sub in self.subscribers[device]:
                sub.push(message)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                self.poll()
            except (MetaforgeError, OSError) as exc:
                log.warning("telemetry: %s", exc)
            except Exception as exc:  # noqa: BLE001 — sqlite busy and the like: the next poll retries
                log.warning("telemetry: %s: %s", type(exc).__name__, exc)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
