"""WebSocket routes: /ws/events (new events) and /ws/devices/{id} (a device's live state overlay)."""

from __future__ import annotations

import asyncio
from typing import Optional

from fastapi import APIRouter, Query, WebSocket

from metaforge.errors import MetaforgeError
from metaforge.serve.deps import DeviceHubDep, EventsHubDep
from metaforge.serve.hubs import Subscriber
from metaforge.serve.twin import error_response


router = APIRouter()


@router.websocket("/ws/events")
async def events(socket: WebSocket, events_hub: EventsHubDep, since_seq: Optional[int] = Query(None, ge=0),
                 type: list[str] = Query([])):
    """Each new event as {"type": "event", "event": {...}}; with since_seq, those after it first."""
    sub = Subscriber(types=tuple(type))
    await socket.accept()
    if since_seq is not None:  # the backlog and the subscription in one step: no gap, no repeat
        events_hub.backlog(since_seq, sub)
    events_hub.subscribers.add(sub)
    try:
        await _pump(socket, sub)
    finally:
        events_hub.subscribers.discard(sub)


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
    """Send what the hub queues until the client goes away."""

    async def send():
        while True:
            message = await sub.queue.get()
            await socket.send({"type": "websocket.send", "text": message.decode()})

    sender = asyncio.create_task(send())
    try:
        while True:
            received = await socket.receive()
            if received["type"] == "websocket.disconnect":
                return
    finally:
        sender.cancel()
