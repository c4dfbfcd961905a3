"""Who may ask: the token on every HTTP request and WebSocket handshake, the Host and Origin checks,
and the signed, expiring URLs of the GLB files.

- With a token (required off loopback), a request carries it as `Authorization: Bearer TOKEN`,
  `X-MF-Token: TOKEN`, the `mf_token` cookie, or `?token=TOKEN` (a browser's first page load: the
  server answers with the cookie and the same page without the token in its address).
- Without a token (loopback only), the Host header must name this machine, so a web page whose
  DNS name was re-bound to 127.0.0.1 cannot read the twin through the browser.
- A WebSocket handshake or a write whose Origin is another site is refused either way.
- Compared in constant time: both sides are hashed first, so not even the length leaks.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from metaforge.serve.settings import ServeSettings, is_loopback

COOKIE = "mf_token"
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())


# ---- signed GLB URLs ------------------------------------------------------------------------------

def signature(secret: bytes, name: str, expires: int) -> str:
    return hmac.new(secret, f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_path(settings: ServeSettings, name: str, now: float | None = None) -> tuple[str, int]:
    expires = int((time.time() if now is None else now) + settings.url_ttl)
    query = urlencode({"expires": expires, "sig": signature(settings.secret, name, expires)})
    return f"/api/v1/artifacts/{name}?{query}", expires


def check_signature(settings: ServeSettings, name: str, expires: str | None, sig: str | None) -> str | None:
    """None if the URL is good, else why not."""
    if not expires or not sig:
        return "this URL is not signed: ask the model manifest for a fresh one"
    try:
        when = int(expires)
    except ValueError:
        return "malformed expiry"
    if not hmac.compare_digest(signature(settings.secret, name, when), sig):
        return "bad signature (tampered, or signed by another server start)"
    if when < time.time():
        return "this URL has expired: ask the model manifest for a fresh one"
    return None


# ---- the guard in front of everything ---------------------------------------------------------------

class Guard:
    """ASGI middleware: every HTTP request and WebSocket handshake passes here first."""

    def __init__(self, app, settings: ServeSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        problem = self._problem(scope, headers, query)
        if problem is not None:
            return await _refuse(scope, receive, send, *problem)
        if (scope["type"] == "http" and scope["method"] == "GET" and "token" in query
                and not scope["path"].startswith(("/api/", "/openapi"))):
            return await _set_cookie_and_redirect(scope, send, query, self.settings.token)
        return await self.app(scope, receive, send)

    def _problem(self, scope, headers: dict, query: dict) -> tuple[int, str, str] | None:
        host = headers.get("host", "")
        origin = headers.get("origin")
        if (origin and origin != "null" and (scope["type"] == "websocket" or scope.get("method") in _WRITES)
                and urlsplit(origin).netloc.lower() != host.lower()):
            return 403, "bad_origin", f"requests from {origin} are not allowed (another site)"
        token = self.settings.token
        if token is None:
            name = urlsplit(f"//{host}").hostname or ""
            if not is_loopback(name):
                return 403, "bad_host", (f"Host {host or '(none)'} is not this machine: without a token the server "
                                         "answers only requests to localhost")
            return None
        # the query first: a browser that kept the cookie of an earlier start follows a new ?token= link
        given = query.get("token") or _bearer(headers.get("authorization")) or headers.get("x-mf-token") \
            or _cookie(headers)
        if given is None:
            return 401, "unauthorized", "this server needs a token: Authorization: Bearer TOKEN"
        if not same_secret(given, token):
            return 401, "unauthorized", "wrong token"
        return None


def _bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


def _cookie(headers: dict) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # noqa: BLE001 — a malformed cookie header is no token
        return None
    return jar[COOKIE].value if COOKIE in jar else None


def error_body(kind: str, message: str, hint: str | None = None, **details) -> bytes:
    return orjson.dumps({"ok": False, "error": {"kind": kind, "message": message, "hint": hint, **details}})


async def _refuse(scope, receive, send, status: int, kind: str, message: str) -> None:
    body = error_body(kind, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="mf"'))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):  # refuse the handshake with a real status
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 4000 + status})


async def _set_cookie_and_redirect(scope, send, query: dict, token: str | None) -> None:
    rest = {k: v for k, v in query.items() if k != "token"}
    location = scope["path"] + (f"?{urlencode(rest)}" if rest else "")
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0")]
    if token:
        headers.append((b"set-cookie", f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/".encode("latin-1")))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
