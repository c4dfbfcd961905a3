"""What a running server was started with."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from urllib.parse import urlsplit

from metaforge.errors import BadInput
from metaforge.limits import MAX_REQUEST_BYTES

MAX_BODY = MAX_REQUEST_BYTES  # the default of --max-body (serve/limits.py has the other limits)

MIN_TOKEN = 16


@dataclass
class ServeSettings:
    root: Path
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    allow_writes: bool = False
    actor: str | None = None       # who writes made through the API are recorded as (default: git user)
    url_ttl: int = 3600             # seconds a signed GLB URL stays valid
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))  # signs the URLs; new per start
    poll_s: float = 0.01            # how often the stores are looked at for new samples and events
    allowed_origins: tuple[str, ...] = ()   # other pages' origins that count as the server's own
    max_body: int = MAX_BODY        # bytes a request body may hold (413 past it)

    def check(self) -> "ServeSettings":
        if self.token is not None and len(self.token) < MIN_TOKEN:
            raise BadInput(f"the token is {len(self.token)} characters: use at least {MIN_TOKEN}",
                           "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        if not is_loopback(self.host) and not self.token:
            raise BadInput(f"--host {self.host} lets other machines in: it needs a token",
                           "--token TOKEN or MF_SERVE_TOKEN=TOKEN (clients send Authorization: Bearer TOKEN)")
        if not 0 <= self.port <= 65535:
            raise BadInput(f"--port {self.port}: 0 to 65535 (0 picks a free one)")
        if self.url_ttl <= 0:
            raise BadInput("--url-ttl must be at least 1 second")
        if self.max_body < 1024:
            raise BadInput(f"--max-body {self.max_body}: at least 1024 bytes")
        for origin in self.allowed_origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
                raise BadInput(f"--allow-origin {origin}: an origin is scheme://host[:port], e.g. http://localhost:5173")
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
