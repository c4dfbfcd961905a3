"""Who may ask: the token on every HTTP request and WebSocket handshake, the Host and Origin checks,
and the signed, expiring URLs of the GLB files.

- With a token (required off loopback), a request carries it as `Authorization: Bearer TOKEN`,
  `X-MF-Token: TOKEN`, the `mf_token` cookie, or `?token=TOKEN` (a browser's first page load: the
  server answers with the cookie and the same page without the token in its address).
- Without a token (loopback only), the Host header must name this machine, so a web page whose
  DNS name was re-bound to 127.0.0.1 cannot read the twin through the browser.
- A request a page of another origin made the browser send (Origin, `null` included, or
  Sec-Fetch-Site say so) is refused either way, whatever it carries: the token cookie counts only
  on the server's own pages. Origins given with `--allow-origin` count as the server's own.
- One Host header; a body within `--max-body` (serve/limits.py).
- Compared in constant time: both sides are hashed first, so not even the length leaks.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import orjson

from metaforge.serve.limits import BodyTooLarge, read_body, replay
from metaforge.serve.settings import ServeSettings, is_loopback

COOKIE = "mf_token"


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
    if not hmac.compare_digest(signature(settings.secret, name, when).encode(), sig.encode("utf-8", "replace")):
        return "bad signature (tampered, or signed by another server start)"
    if when < time.time():
        return "this URL has expired: ask the model manifest for a fresh one"
    return None


# ---- the guard in front of everything ---------------------------------------------------------------

_DIGITS = re.compile(r"^[0-9]{1,18}$")  # ASCII digits only ("²".isdigit() is true); 18 of them: over any limit

_LISTS, _LISTS_WS = {"where"}, {"type"}  # the query parameters that may repeat (serve/api.py, serve/ws.py)

# the routes that write (a read-only server refuses them before reading their body)
_WRITE_ROUTES = (("POST", "/api/v1/changes"), ("POST", "/api/v1/entities"), ("PATCH", "/api/v1/entities/"),
                 ("DELETE", "/api/v1/entities/"))


class Guard:
    """ASGI middleware: every HTTP request and WebSocket handshake passes here first: one Host, the
    origin and fetch metadata, the token, a read-only server's refusal of writes, the body's size."""

    def __init__(self, app, settings: ServeSettings):
        self.app, self.settings = app, settings
        self.origins = {o.lower().rstrip("/") for o in settings.allowed_origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        raw = scope.get("headers", [])
        if sum(1 for k, _ in raw if k == b"host") > 1:  # which one would the checks and the app each read?
            return await _refuse(scope, receive, send, 400, "bad_request", "more than one Host header")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
        pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        query = {k: v for k, v in pairs if v}
        repeated = _repeated(scope, pairs)
        if repeated is not None:  # which one would count? (the app would take the last, silently)
            return await _refuse(scope, receive, send, 400, "bad_input", f"query parameter {repeated!r} given twice")
        problem = self._problem(scope, headers, query)
        if problem is not None:
            return await _refuse(scope, receive, send, *problem)
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        if method == "GET" and "token" in query and not path.startswith(("/api/", "/openapi")):
            return await _set_cookie_and_redirect(scope, send, query, self.settings.token)
        if not self.settings.allow_writes and _is_write(method, path):
            return await _refuse(scope, receive, send, 403, "read_only", "this server is read-only",
                                 "start it with `mf serve --allow-writes`")
        if "content-length" in headers or "transfer-encoding" in headers:
            problem = _body_problem(headers.get("content-length"), self.settings.max_body)
            if problem is not None:
                return await _refuse(scope, receive, send, *problem)
            try:
                receive = replay(await read_body(receive, self.settings.max_body), receive)
            except BodyTooLarge:
                return await _refuse(scope, receive, send, 413, "too_large", _too_large(self.settings.max_body))
        return await self.app(scope, receive, send)

    def _problem(self, scope, headers: dict, query: dict) -> tuple[int, str, str] | None:
        host = headers.get("host", "")
        problem = self._cross_site(scope, headers, host)
        if problem is not None:
            return problem
        token = self.settings.token
        if token is None:
            if not is_loopback(_hostname(host)):
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

    def _cross_site(self, scope, headers: dict, host: str) -> tuple[int, str, str] | None:
        """A request a page of another origin made the browser send: refused, whatever it carries
        (the token cookie included). The browser says so in Origin (every WebSocket handshake,
        every write, every cross-origin fetch; `null` from a sandboxed frame or a file) and in
        Sec-Fetch-Site (every request of a current browser, `<script src>` and `<img>` too). Only a
        top-level navigation from elsewhere (a link to the dashboard) may come from another site."""
        origin = headers.get("origin")
        if origin is not None and not self._own(origin, host):
            return 403, "bad_origin", f"requests from {origin} are not allowed (another site)"
        site = headers.get("sec-fetch-site")
        if site in ("cross-site", "same-site") and origin is None and not (
                scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
                and headers.get("sec-fetch-mode") == "navigate" and headers.get("sec-fetch-dest") == "document"):
            return 403, "bad_origin", f"requests from another site's page are not allowed ({site})"
        return None

    def _own(self, origin: str, host: str) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if origin in self.origins:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:  # "http://[::1" and the like: no origin of this server
            return False
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host.lower() \
            and not parts.path and not parts.query


def _repeated(scope, pairs: list[tuple[str, str]]) -> str | None:
    """A query parameter given more than once that takes one value (only `where`, and `type` of
    the event feed, are lists)."""
    lists = _LISTS_WS if scope["type"] == "websocket" else _LISTS
    seen = set()
    for key, _ in pairs:
        if key in seen and key not in lists:
            return key[:40]
        seen.add(key)
    return None


def _hostname(host: str) -> str:
    try:
        return urlsplit(f"//{host}").hostname or ""
    except ValueError:  # a malformed Host ("[::1"): no name of this machine
        return ""


def _is_write(method: str, path: str) -> bool:
    return any(method == m and (path == p or (p.endswith("/") and path.startswith(p) and len(path) > len(p)))
               for m, p in _WRITE_ROUTES)


def _body_problem(length: str | None, limit: int) -> tuple[int, str, str] | None:
    if length is None:
        return None
    if not _DIGITS.match(length.strip()):
        return 400, "bad_request", f"Content-Length {length[:40]!r} is not a number"
    if int(length) > limit:
        return 413, "too_large", _too_large(limit)
    return None


def _too_large(limit: int) -> str:
    return f"the request body is over {limit:,} bytes (mf serve --max-body)"


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


async def _refuse(scope, receive, send, status: int, kind: str, message: str, hint: str | None = None) -> None:
    body = error_body(kind, message, hint)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status in (400, 413) or kind == "read_only":  # a body may follow, unread: this connection ends here
        headers.append((b"connection", b"close"))
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
    location = local_location(scope["path"]) + (f"?{urlencode(rest)}" if rest else "")
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0")]
    if token:
        headers.append((b"set-cookie", f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/".encode("latin-1")))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def local_location(path: str) -> str:
    """A Location on this server for a (decoded) request path: one leading slash (`//evil.com` and
    `/\\evil.com` would send a browser to another host), every byte outside a path's own
    characters percent-encoded (no CR, LF or non-ASCII reaches the header)."""
    return quote("/" + path.lstrip("/\\"), safe="/!$&'()*+,;=:@-._~")
