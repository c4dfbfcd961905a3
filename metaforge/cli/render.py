"""How the library's results look to a person: a change's events, constraint verdicts, an event in
one line, a drift report. Every command group renders through here (and never through another
command's module). Commands import it only when they render, and it imports rich only when
something is drawn: start-up (`mf --help`, `mf show`) does not pay for it."""

from __future__ import annotations

from metaforge.cli.output import console, fmt_value, say

DRIFT_DIRECTION = {"file": "file newer than graph", "graph": "graph newer than file (not projected yet)",
                   "both": "both changed", "missing": "file missing", "unreadable": "file unreadable"}


def escape(text: str) -> str:
    """Text shown as it is, even when it holds [brackets] rich would take for markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def render_result(result) -> None:
    """A change's outcome: the proposal it became, nothing to change, or the events appended (first 20)."""
    from collections import Counter

    from rich.table import Table

    drafts = result.drafts()
    if result.proposal:
        number = result.proposal.split(":", 1)[1]
        say(f"[yellow]needs approval[/]: proposed as {result.proposal} ({len(drafts)} event(s) waiting); "
            f"`mf approve {number}` or `mf reject {number} -m WHY`")
        return
    if not drafts:
        say("nothing to change: " + ", ".join(o.change.describe() for o in result.outcomes))
        return
    verb = "would append" if result.dry_run else "appended"
    first, n = result.first_seq, len(drafts)
    seqs = f"seq {first}" + (f"..{first + n - 1}" if n > 1 else "")
    say(f"[green]✓[/] {verb} {n} event{'s' * (n != 1)} ({seqs}) as {result.actor}")
    table = Table(box=None, pad_edge=False, show_header=False)
    for seq, d in enumerate(drafts[:20], start=first):
        table.add_row(str(seq), d.type, d.entity, f"v{d.version}", event_summary({"payload": d.payload}))
    console().print(table)
    if n > 20:
        counts = Counter(d.type for d in drafts)
        say(f"… and {n - 20} more (" + ", ".join(f"{c} {t}" for t, c in counts.items()) + ")")


def render_verdicts(verdicts, show_passing: bool = False, to_stdout: bool = False) -> None:
    """Constraint verdicts, one a line: failures (and passes when asked) on stderr, or stdout for `mf check`."""
    marks = {"pass": "[green]✓[/]", "fail": "[red]✗[/]", "invalid": "[red]![/]"}
    out = console().print if to_stdout else say
    for v in verdicts:
        if v.status == "pass" and not show_passing:
            continue
        mark = marks[v.status] if v.severity == "error" or v.status == "pass" else "[yellow]⚠[/]"
        out(f"{mark} {v.severity:<7} {escape(v.message)}", soft_wrap=True) if to_stdout else \
            out(f"{mark} {v.severity:<7} {escape(v.message)}")


def event_summary(e: dict) -> str:
    """An event's payload in one short line (`mf log`, `mf proposals`, a change's table)."""
    p = e["payload"]
    if e.get("type") == "state.linked":
        return f"semantic version {p['semantic_version']} ↔ commit {p['git_commit'][:12]} ({len(p['artifacts'])} files)"
    if e.get("type") == "artifact.mapped":
        return f"{p['path']}: {len(p['mappings'])} entities, {p['how']} ({p['adapter']} {p['adapter_version']})"
    if e.get("type") == "drift.detected":
        return f"{p['path']}: {p['direction']}, {len(p['summary'])} item(s)"
    if e.get("type") == "drift.resolved":
        return f"{p['path']}: {p['how']}" + (f" (drift #{p['drift']})" if p.get("drift") else "")
    if "key" in p:
        return f"{p['key']} = {fmt_value(p['value'])}"
    if "rel" in p:
        return f"{p['rel']} → {p['to']}"
    if e.get("type", "").split(".")[0] in ("node", "property", "edge", ""):
        parts = [f"{k} = {fmt_value(v)}" for k, v in (p.get("properties") or p.get("set") or {}).items()]
        parts += [f"−{k}" for k in p.get("unset") or []]
        text = ", ".join(parts)
    else:  # proposals, merge decisions, later layers' events: their payload, briefly
        text = ", ".join(f"{k} = {fmt_value(v) if not isinstance(v, (list, dict)) else len(v)}" for k, v in p.items())
    return text if len(text) < 90 else text[:87] + "…"


def render_drift_report(report, ids: dict | None = None) -> None:
    """Each drifting file with what differs (`mf drift`, the pre-commit hook), then how to resolve it."""
    c = console()
    for d in report.drifts:
        ref = f"#{ids[d.fingerprint]} " if ids and d.fingerprint in ids else ""
        c.print(f"[red]drift[/] {ref}[bold]{escape(d.path)}[/]: {DRIFT_DIRECTION[d.direction]}", soft_wrap=True)
        for line in d.lines():
            c.print(f"  {escape(line)}", soft_wrap=True)
    for rel in report.untracked:
        say(f"[dim]{escape(rel)}: not in the graph (mf ingest {escape(rel)} reads it in)[/]")
    if report.drifts:
        say(f"{len(report.drifts)} of {report.checked} files drift; resolve one with "
            "`mf drift resolve PATH --accept-file` (the file wins) or `--reproject` (the graph wins)")
    elif report.between_files:
        say(f"no file drifts from the graph ({report.checked} checked), but two files disagree:")
    else:
        say(f"[green]✓[/] no drift: {report.checked} files agree with the graph ({report.parsed} read)")
    for d in report.between_files:
        say(f"[yellow]files disagree[/] {escape(d.line())}")
    if report.between_files:
        say(f"{len(report.between_files)} values differ between two files; the first named owns each (its "
            "value is the graph's): change one of them (KiCad: Tools → Update PCB from Schematic)")
