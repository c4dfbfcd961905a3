"""WebSocket routes: /ws/events (new events) and /ws/devices/{id} (a device's live state overlay)."""

from __future__ import annotations

import asyncio
from typing import Optional

import orjson

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from metaforge.errors import MetaforgeError
from metaforge.serve.deps import DeviceHubDep, EventsHubDep
from metaforge.serve.hubs import EventFeed, Subscriber
from metaforge.serve.limits import SEQ_MAX
from metaforge.serve.twin import error_response


router = APIRouter()


@router.websocket("/ws/events")
async def events(socket: WebSocket, events_hub: EventsHubDep,
                 since_seq: Optional[int] = Query(None, ge=0, le=SEQ_MAX), type: list[str] = Query([])):
    """Each new event as {"type": "event", "event": {...}}; with since_seq, every one after it first
    (read from the log in pages when it is further back than the server keeps at hand): in order,
    none left out, none twice."""
    feed = EventFeed(events_hub, since_seq, tuple(t for t in type if t))
    await socket.accept()
    sender = asyncio.create_task(feed.run(lambda m: socket.send({"type": "websocket.send", "text": m.decode()})))
    try:
        await _until_closed(socket, sender)
    finally:
        sender.cancel()


@router.websocket("/ws/devices/{device_id}")
async def device(socket: WebSocket, device_hub: DeviceHubDep, device_id: str):
    """The device's LiveStateOverlay now, then again each time telemetry arrives:
    {"type": "overlay", "deviceId", "health", "meshOverlays": [{meshName, colorMap, values, ...}],
    "annotations": [{position, label, value, status, ...}], "samples": {metric: [[ts_us, value]]}}."""
    sub = Subscriber()
    try:
        name = device_hub.subscribe(device_id, sub)
    except MetaforgeError as exc:  # an unknown device: the handshake is refused with the error
        await socket.send_denial_response(error_response(exc))
        return
    try:
        await socket.accept()
        await _pump(socket, sub)
    finally:
        device_hub.unsubscribe(name, sub)


async def _pump(socket: WebSocket, sub: Subscriber) -> None:
    """Send what the hub queues until the client goes away; if overlays were dropped (a client
    slower than its device), say how many before the next one."""

    async def send():
        while True:
            message = await sub.queue.get()
            if sub.dropped:
                dropped, sub.dropped = sub.dropped, 0
                await socket.send({"type": "websocket.send", "text": orjson.dumps({
                    "type": "dropped", "count": dropped,
                    "hint": "overlays left out: GET /api/v1/devices/{id}/telemetry has every sample"}).decode()})
            await socket.send({"type": "websocket.send", "text": message.decode()})

    sender = asyncio.create_task(send())
    try:
        await _until_closed(socket, sender)
    finally:
        sender.cancel()


async def _until_closed(socket: WebSocket, sender: asyncio.Task) -> None:
    """Read (and ignore) what the client sends until it goes away; a sender that failed ends it too."""
    receiving = asyncio.ensure_future(socket.receive())
    while True:
        done, _ = await asyncio.wait({receiving, sender}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done:
            receiving.cancel()
            try:
                sender.result()
            except (WebSocketDisconnect, OSError, RuntimeError):  # the client went away mid-send
                pass
            return
        if receiving.result()["type"] == "websocket.disconnect":
            return
        receiving = asyncio.ensure_future(socket.receive())
