"""The typer app: global options, the command groups, and the one place errors become exit codes."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from metaforge import __version__
from metaforge.cli import (admin, artifacts, diff, drift, init, knowledge, merge, mutate, read, review, serve, sim,
                          state, telemetry)

def _new_app() -> typer.Typer:
    return typer.Typer(
        name="mf",
        help="mf keeps the digital twin of a hardware product inside its git repository: an append-only "
             "event log of every design decision, a graph index to query it, and the link to the files.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain help, like git's: rich help costs 0.1 s of start-up
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"mf {__version__}\n")
        raise typer.Exit()


def _main(
    directory: Annotated[Optional[str], typer.Option("-C", help="Run as if mf was started in this directory.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False,
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    from metaforge.cli.context import begin

    state.cwd, state.debug = directory, debug
    begin(directory)


REGISTRARS = [init.register, lambda a: a.add_typer(mutate.app, name="mutate"), read.register, review.register,
              diff.register, merge.register, knowledge.register, telemetry.register,
              lambda a: artifacts.register(a, telemetry.ingest_app), drift.register, serve.register, sim.register, admin.register]


def _build(registrars) -> typer.Typer:
    built = _new_app()
    built.callback()(_main)
    for register in registrars:
        register(built)
    return built


app = _build(REGISTRARS)


def _names(registrar) -> set[str]:
    probe = typer.Typer()
    registrar(probe)
    return ({c.name or c.callback.__name__.replace("_", "-") for c in probe.registered_commands}
            | {g.name for g in probe.registered_groups})


# which registrar makes each top-level command: a command line builds only its own group, since
# typer turns every registered command into click objects on each run (50 commands: +0.1 s)
_OWNER = {name: registrar for registrar in REGISTRARS for name in _names(registrar)}


def _command_for(args: list[str]):
    rest = list(args)
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] == "-C" else rest[1:]
    owner = _OWNER.get(rest[0]) if rest and not any(a in ("--help", "-h") for a in args[:1]) else None
    return typer.main.get_command(_build([owner]) if owner else app)


def run(args: list[str]) -> int:
    """Run one command line; return the exit code (0 ok, 1 findings, 2 bad input, 3 internal).

    The index is disposable: if SQLite finds it damaged while the command reads it, it is moved
    aside and rebuilt from the log, and the command runs again (once: also when another process
    rebuilt it meanwhile), unless it had already appended (then its events are in the log and in
    the rebuilt index: it is done)."""
    from metaforge.cli.context import end

    try:
        return _run(args)
    except _IndexDamaged as damaged:
        end()
        from metaforge.errors import MetaforgeError

        try:
            notice, appended = _recover_index(damaged)
        except MetaforgeError as exc:  # the log, which the index is rebuilt from, is damaged too
            return _fail(exc, args)
        if notice is not None:
            sys.stderr.write(f"mf: warning: {notice}\n")
        if appended:
            sys.stderr.write(f"mf: the change was appended (up to seq {appended}); the index is rebuilt with it\n")
            return 0
        try:
            return _run(args)
        except _IndexDamaged as again:
            return _fail(again.error, args)
        finally:
            end()
    finally:
        end()  # the command's repository is closed, whatever happened


class _IndexDamaged(Exception):
    def __init__(self, error: Exception, appended_before: int):
        self.error, self.appended_before = error, appended_before


def _recover_index(damaged: _IndexDamaged) -> tuple[str | None, int]:
    from metaforge.repo import Repo

    try:
        repo = Repo.find(state.cwd)
    except Exception:
        return None, 0
    try:
        notice = repo.index.recover(repo.log)
    finally:
        repo.close()
    appended = _last_appended()
    return notice, appended if appended > damaged.appended_before else 0


def _last_appended() -> int:
    """The seq of this process's last append (0 if the write gate was never loaded: nothing appended)."""
    transaction = sys.modules.get("metaforge.thread.transaction")
    return transaction.last_appended() if transaction else 0


def _fail(exc: Exception, args: list[str]) -> int:
    from metaforge.errors import MetaforgeError

    code = exc.exit_code if isinstance(exc, MetaforgeError) else 3
    _report(exc, args, code)
    return code


def _run(args: list[str]) -> int:
    from metaforge.errors import MetaforgeError
    from metaforge.store.index import is_damage

    command = _command_for(args)
    appended = _last_appended()
    try:
        rv = command.main(args=args, prog_name="mf", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors: typer has printed nothing yet
        import io

        from metaforge.limits import printable

        shown = io.StringIO()
        exc.show(file=shown) if hasattr(exc, "show") else shown.write(f"mf: {exc.format_message()}\n")
        sys.stderr.write(printable(shown.getvalue()))  # it may quote what was typed
        return 2
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("mf: interrupted\n")
        return 130
    except MetaforgeError as exc:
        _report(exc, args, exc.exit_code)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except OSError as exc:  # one the library did not name itself: the path and the cause, exit 1
        from metaforge.errors import StorageError

        return _fail(StorageError.of(exc), args)
    except Exception as exc:  # an internal error: one line, the traceback with --debug
        if is_damage(exc) or is_damage(exc.__cause__):
            raise _IndexDamaged(exc, appended) from exc
        _report(exc, args, 3)
        return 3


def _report(exc: Exception, args: list[str], code: int) -> None:
    from metaforge.cli.output import emit_json
    from metaforge.errors import MetaforgeError

    if state.debug or "--debug" in args:
        import traceback

        traceback.print_exception(exc)  # also outside an except block (a retried command)
    if isinstance(exc, MetaforgeError):
        line = f"mf: error: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
        err = {"kind": exc.kind, "message": exc.message, "hint": exc.hint, "exit_code": code, **exc.details}
    else:
        line = f"mf: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"
        err = {"kind": "internal", "message": f"{type(exc).__name__}: {exc}", "hint": None, "exit_code": code}
    from metaforge.limits import printable

    sys.stderr.write(printable(line, keep_layout=False) + "\n")  # one line, whatever the input held
    if "--json" in args:
        emit_json({"ok": False, "error": err})
