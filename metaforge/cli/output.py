"""One place for output: data to stdout (JSON or rich), messages and progress to stderr; and the
options and key=value arguments every command group shares."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Annotated, Any

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Write JSON to stdout (only JSON) for scripts and CI.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would change; write nothing.")]
MessageOpt = Annotated[str | None, typer.Option("--message", "-m", help="Why: the decision rationale, kept in the event.")]
ExpectOpt = Annotated[int | None, typer.Option("--expect-version", help="Refuse unless the entity is at this version (optimistic concurrency).")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="user:<name> or agent:<code> (default: MF_ACTOR, else user:<git user.name>).")]


def parse_pairs(pairs: list[str] | None) -> dict:
    """key=value arguments (`mf mutate set`, `mf device register --policy`) as properties; key:=JSON for typed values."""
    from metaforge.errors import BadInput

    props = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(f"'{pair}' is not key=value")
        if key.endswith(":"):
            from metaforge.limits import MAX_DEPTH, refuse_constant

            key = key[:-1]
            try:
                value = json.loads(value, parse_constant=refuse_constant)
            except ValueError as exc:
                raise BadInput(f"'{key}:=': not JSON ({exc})") from None
            except RecursionError:
                raise BadInput(f"'{key}:=': nested deeper than {MAX_DEPTH} levels (MAX_DEPTH)") from None
        props[key] = value
    return props


_console = None
_err = None


def _safe_console(**options):
    """A rich Console that escapes control characters in every piece of text it draws (`\x1b` for
    ESC): values, messages, ids and actors come from people, files and devices, and must not drive
    the terminal. Its own styling is applied after, so colours still work."""
    from rich.console import Console
    from rich.segment import Segment

    from metaforge.limits import printable

    class SafeConsole(Console):
        def _render_buffer(self, buffer):
            return super()._render_buffer(Segment(printable(text), style, control) if not control else
                                          Segment(text, style, control) for text, style, control in buffer)

    return SafeConsole(**options)


def console():
    global _console
    if _console is None:
        _console = _safe_console(soft_wrap=False, highlight=False)
    return _console


def err_console():
    global _err
    if _err is None:
        _err = _safe_console(stderr=True, highlight=False, soft_wrap=True)
    return _err


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def say(message: str) -> None:
    """A message for a person, on stderr."""
    err_console().print(message)


def warn(message: str) -> None:
    err_console().print(f"[yellow]warning:[/] {message}", markup=True)


def fmt_value(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"value", "unit"}:
        from metaforge.thread.units import format_quantity

        return format_quantity(value)
    if isinstance(value, list):
        return ", ".join(fmt_value(v) for v in value)
    if isinstance(value, (dict, bool)) or value is None:
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@contextmanager
def progress_bar(description: str, enabled: bool = True):
    """Yields update(done, total); draws a bar on stderr only for a person at a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console(), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, done))

        yield update
