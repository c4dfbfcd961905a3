"""`mf serve`: the twin over HTTP and WebSocket, with the dashboard."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from metaforge.cli.context import context
from metaforge.cli.output import ActorOpt, JsonOpt, say
from metaforge.limits import MAX_REQUEST_BYTES


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port (0 picks a free one).")] = 8765,
    token: Annotated[Optional[str], typer.Option("--token", envvar="MF_SERVE_TOKEN", show_envvar=False,
                                                 help="Require this token on every request (env MF_SERVE_TOKEN).")] = None,
    allow_writes: Annotated[bool, typer.Option("--allow-writes", help="Accept changes (as mf mutate does); read-only without.")] = False,
    url_ttl: Annotated[int, typer.Option("--url-ttl", help="Seconds a signed GLB URL stays valid.")] = 3600,
    allow_origin: Annotated[Optional[list[str]], typer.Option(
        "--allow-origin", help="Another page's origin (scheme://host:port) that may open WebSockets and write; repeatable.")] = None,
    max_body: Annotated[int, typer.Option("--max-body", help="Bytes a request body may hold (413 past it).")] = MAX_REQUEST_BYTES,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Serve the twin: the API (/api/v1, OpenAPI at /docs), live WebSockets and the dashboard at /."""
    import sys

    from metaforge.serve.settings import ServeSettings

    ctx = context(actor)
    root = ctx.repo.root
    settings = ServeSettings(root, host, port, token, allow_writes, ctx.given_actor, url_ttl,
                             allowed_origins=tuple(allow_origin or ()), max_body=max_body).check()
    ctx.close()  # the server opens its own, one a thread
    from metaforge.serve.app import serve as run

    def ready(bound_host: str, bound_port: int) -> None:
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        url = f"http://{shown}:{bound_port}/"
        if json_out:
            import json  # one line: a script reads it as soon as the server listens

            sys.stdout.write(json.dumps({"url": url, "host": bound_host, "port": bound_port,
                                         "writes": allow_writes, "token": bool(token)}) + "\n")
            sys.stdout.flush()
        say(f"mf serve: the twin of {root} at {url} ({'read-write' if allow_writes else 'read-only'}"
            f"{', token required' if token else ''}); Ctrl-C stops")

    run(settings, ready)
