"""How much a request may hold, each limit answered with its own status before the server holds
more than the limit in memory:

- the request line and headers: at most HEAD_BYTES bytes and HEADERS headers, else 400 (counted as
  the bytes arrive, before the parser has a whole header to hand over: a 100 MB header never sits
  in memory); one Host header, else 400;
- the body: at most `--max-body` bytes (8 MiB by default). A Content-Length over it is 413
  before one byte of the body is read (a client that sent `Expect: 100-continue` never sends it);
  a body without a length (chunked) is counted as it streams and refused with 413 as soon as it
  passes the limit;
- JSON in a body: integers within 64 bits, nesting at most JSON_DEPTH deep, else 400 (what the
  store's own limits then check, through the normal write path, is theirs);
- integers in a query: each parameter declares its range in the OpenAPI document (400 outside);
- a WebSocket message from a client: at most WS_MESSAGE bytes, else the socket closes with 1009.
"""

from __future__ import annotations

import httptools

from metaforge.limits import MAX_DEPTH
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_BYTES = 32 * 1024
HEADERS = 100
WS_MESSAGE = 64 * 1024
JSON_DEPTH = MAX_DEPTH     # the store's own nesting limit (metaforge/limits.py)
MAX_INT = 2**63 - 1       # what SQLite and the log's JSON hold
SEQ_MAX = 2**53           # a position or version: exact in a JavaScript number, far beyond any log


class BodyTooLarge(Exception):
    pass


class BadHead(httptools.HttpParserCallbackError):
    """Raised inside a parser callback: the parser's error, which uvicorn answers with 400 and a
    closed connection."""


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, counting the bytes of each request's head as they arrive:
    llhttp itself has no limit and would collect a header of any size."""

    _in_head = True
    _head_bytes = 0
    _head_ended = False
    _header_bytes = 0

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes, self._header_count, self._header_bytes = True, 0, 0, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_ended = False, True
        if self._header_count > HEADERS:
            raise BadHead(f"more than {HEADERS} headers")
        if self._header_bytes > HEAD_BYTES:  # a head that arrived whole, in one chunk with its end
            raise BadHead(f"request line and headers over {HEAD_BYTES} bytes")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        # counted only while no head ended in this chunk: a whole request (head and body) may arrive
        # in one chunk, and then the parser is "in a head" again, of the next request, after it
        was_in_head, self._head_ended = self._in_head, False
        super().data_received(data)
        if was_in_head and self._in_head and not self._head_ended and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > HEAD_BYTES:
                self.send_400_response(f"request line and headers over {HEAD_BYTES} bytes")


def check_json(value, depth: int = 0) -> str | None:
    """None if `value` (parsed JSON) is inside the limits, else what is wrong."""
    if depth > JSON_DEPTH:
        return f"nested more than {JSON_DEPTH} deep"
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return None
    if isinstance(value, int):
        return None if -MAX_INT - 1 <= value <= MAX_INT else "an integer beyond 64 bits"
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        problem = check_json(item, depth + 1)
        if problem is not None:
            return problem
    return None


async def read_body(receive, limit: int) -> list[dict]:
    """The request's body messages, read to the end, or BodyTooLarge once they pass `limit`."""
    messages, size = [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        size += len(message.get("body", b""))
        if size > limit:
            raise BodyTooLarge(size)
        if not message.get("more_body", False):
            return messages


def replay(messages: list[dict], receive):
    """A `receive` that gives the messages already read, then the connection's own."""
    pending = list(messages)

    async def again():
        if pending:
            return pending.pop(0)
        return await receive()

    return again
