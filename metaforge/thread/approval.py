"""The approval workflow: changes that need a second pair of eyes become proposals.

`.metaforge/config.toml` says which:

    [[approval.rules]]
    types = ["Constraint"]            # any change to a Constraint
    [[approval.rules]]
    types = ["BOMItem"]
    phase_at_least = "DVT"            # once a TwinModel's phase is DVT or later

Such a command, once it passes validation and the constraints, appends one
`proposal.created` event (entity `Proposal:<seq>`) instead of its changes, whichever way it arrived
(typed, read from a file, accepted from a drifted file: `thread/policy.py`). A file read in this
way keeps its mapping in the proposal, so it stays drifted until the proposal is decided. `approve` replays the
changes on the state at approval time, refusing if an entity they touch has moved since the
proposal or a constraint now fails, and appends them with `proposal.approved` in one batch;
`reject` appends `proposal.rejected` with the reason.
"""

from __future__ import annotations

from dataclasses import replace

from metaforge import events as ev
from metaforge.errors import BadInput, Refused, VersionConflict
from metaforge.thread.commands import Change, Planned

PHASES = ["concept", "EVT", "DVT", "PVT", "production", "retired"]
PROPOSAL_CREATED, PROPOSAL_APPROVED, PROPOSAL_REJECTED = ev.PROPOSAL_CREATED, ev.PROPOSAL_APPROVED, ev.PROPOSAL_REJECTED


def rules(config: dict) -> list[dict]:
    found = (config.get("approval") or {}).get("rules") or []
    for i, rule in enumerate(found):
        if not isinstance(rule, dict) or not isinstance(rule.get("types", []), list):
            raise BadInput(f".metaforge/config.toml: approval.rules[{i}]: expected types = [\"Type\", ...]")
        if rule.get("phase_at_least") not in (None, *PHASES):
            raise BadInput(f".metaforge/config.toml: approval.rules[{i}].phase_at_least: one of {', '.join(PHASES)}")
    return found


def rule_for(config: dict, changes: list[Change], state) -> dict | None:
    """The first approval rule the command falls under, or None."""
    found = rules(config)
    if not found:
        return None
    touched = {c.id.split(":", 1)[0] for c in changes} | {c.dst.split(":", 1)[0] for c in changes if c.dst}
    for rule in found:
        types = set(rule.get("types") or [])
        if types and not types & touched:
            continue
        ops = set(rule.get("ops") or [])
        if ops and not ops & {c.op for c in changes}:
            continue
        phase = rule.get("phase_at_least")
        if phase and _current_phase(state) < PHASES.index(phase):
            continue
        return rule
    return None


def _current_phase(state) -> int:
    state.prefetch(state.base.ids_of_type("TwinModel"))
    phases = [PHASES.index(n.props["phase"]) for n in state.nodes.values()
              if n is not None and not n.deleted and n.type == "TwinModel" and n.props.get("phase") in PHASES]
    return max(phases, default=-1)


def describe_rule(rule: dict) -> str:
    text = "changes to " + (", ".join(rule.get("types") or []) or "anything")
    if rule.get("phase_at_least"):
        text += f" once the phase is {rule['phase_at_least']} or later"
    return text


def propose(tx, planned: Planned, rule: dict, records: list[ev.Draft] = ()) -> str:
    """Append the proposal for a planned command instead of the command (in its transaction).
    `records`: what lands with the changes on approval (the mapping of a file read in)."""
    result = planned.result
    changes = [o.change for o in result.outcomes]
    ids = {c.id for c in changes} | {c.dst for c in changes if c.dst}
    found = tx.index.load_nodes(ids)
    base = {i: (found[i].version if i in found else 0) for i in sorted(ids)}
    pid = f"Proposal:{planned.head.seq + 1}"
    payload = {"changes": [change_to_dict(c) for c in changes], "base": base, "rule": describe_rule(rule),
               "events": [{"type": d.type, "entity": d.entity, "version": d.version, "payload": d.payload}
                          for d in result.drafts()],
               "verdicts": [v.as_dict() for v in result.verdicts if v.status != "pass"],
               "source": tx.source.value}
    if records:
        payload["records"] = [{"type": d.type, "entity": d.entity, "version": d.version, "payload": d.payload}
                              for d in records]
        payload["files"] = {d.payload["path"]: d.payload["sha256"] for d in records if d.type == ev.ARTIFACT_MAPPED}
    message = next((c.msg for c in changes if c.msg), None)
    tx.record([ev.Draft(PROPOSAL_CREATED, pid, 1, payload, message, actor=result.actor)])
    result.proposal = pid  # the changes themselves wait for `mf approve`
    return pid


def pending_for_file(repo, rel: str) -> dict | None:
    """The pending proposal that holds a file's content (read in, waiting for approval)."""
    for p in pending(repo):
        if rel in (p.get("files") or {}):
            return p
    return None


def change_to_dict(c: Change) -> dict:
    if c.op in ("link", "unlink"):
        d: dict = {c.op: [c.id, c.rel, c.dst]}
    else:
        d = {c.op: c.id}
    if c.props:
        d["props"] = c.props
    if c.keys:
        d["keys"] = c.keys
    if c.msg:
        d["msg"] = c.msg
    return d


def pending(repo, include_decided: bool = False) -> list[dict]:
    return repo.index.proposals(include_decided)


def _load(repo, pid: str) -> dict:
    pid = pid if pid.startswith("Proposal:") else f"Proposal:{pid}"
    for p in pending(repo, include_decided=True):
        if p["id"] == pid:
            if p["status"] != "pending":
                raise Refused(f"{pid} was already {p['status']} by {p['decided_by']} at {p['decided_at']}")
            return p
    raise BadInput(f"unknown proposal {pid}", "list them with `mf proposals`")


def approve(repo, pid: str, *, actor: str, message: str | None = None):
    """Apply a pending proposal on today's state, or refuse and say what moved."""
    from metaforge.thread.changes_file import change_from_dict
    from metaforge.thread.policy import Source

    with repo.transaction(actor, Source.APPROVAL) as tx:
        p = _load(repo, pid)
        current = tx.index.load_nodes(p["base"].keys())
        moved = [f"{i} is at version {current[i].version if i in current and not current[i].deleted else 0}, "
                 f"was {v} when proposed" for i, v in p["base"].items()
                 if (current[i].version if i in current and not current[i].deleted else 0) != v]
        if moved:
            raise VersionConflict(f"{p['id']}: the state moved underneath it: " + "; ".join(moved),
                                  "reject it and propose the change again on today's state")
        changes = [change_from_dict(dict(d), f"{p['id']} change #{i + 1}") for i, d in enumerate(p["changes"])]
        planned = tx.plan(changes, p.get("msg"), actor=p["proposed_by"])
        drafts = annotate(planned.result.drafts(), f"approved in {p['id']} by {actor}")
        records = [ev.Draft(r["type"], r["entity"], r["version"], r["payload"], actor=p["proposed_by"])
                   for r in p.get("records") or []]
        decided = ev.Draft(PROPOSAL_APPROVED, p["id"], 2, {"events": len(drafts)}, message, actor=actor)
        tx.apply(planned, drafts=drafts, extra=[*records, decided])
        return planned.result


def annotate(drafts: list[ev.Draft], note: str) -> list[ev.Draft]:
    """The same events with a note after their message (who approved them). An approval's own
    step: the transaction lands what it is given and imports nothing of approvals but the rules."""
    return [replace(d, msg=f"{d.msg} ({note})" if d.msg else note) for d in drafts]


def reject(repo, pid: str, *, actor: str, message: str):
    from metaforge.thread.policy import Source

    if not message or not message.strip():
        raise BadInput("say why: mf reject ID -m WHY")
    with repo.transaction(actor, Source.RECORD) as tx:
        p = _load(repo, pid)
        tx.record([ev.Draft(PROPOSAL_REJECTED, p["id"], 2, {}, message)])
        return p
