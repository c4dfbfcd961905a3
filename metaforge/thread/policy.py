"""The write policy: what happens to a change that breaks a constraint or that an approval rule
covers, by where the change came from (its source) and who made it (`user:` or `agent:`).

This table is the only place the answer is written; `thread/transaction.py` applies it to every
write, and README.md shows it (a test holds the two together).

The reasoning behind it:
- A person's file (a saved schematic, an edited BOM, a file they accept after a drift) is what was
  made: it lands and what it breaks is said. A tool's file, or any typed command, is checked first
  and refused if it breaks an error-level constraint.
- A change an approval rule covers becomes a proposal whichever way it arrived. Four sources are
  already a decision, not a request for one: the approval itself, a merge replaying what the other
  branch decided, the template a twin starts from (its own constraints are not proposals), and the
  twin's own bookkeeping of a simulation run.
- A device's derived state is an observation of the world: refusing or proposing it would only
  hide the fact, so it lands, and a violation is said.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Source(str, Enum):
    CLI = "command line"          # mf mutate, mf mutate apply, mf device, mf sim register
    TEMPLATE = "template"         # mf init --template: the starting point, its own rules included
    SERVER = "server write"       # mf serve --allow-writes
    INGEST = "file ingest"        # mf ingest PATH
    DRIFT_ACCEPT = "drift accept"  # mf drift resolve --accept-file, mf drift watch --accept
    SIM_RECORD = "simulation record"  # SimulationRun nodes of mf sim run / what-if / sweep / compare
    CALIBRATION = "calibration"   # mf sim calibrate: fitted parameters onto a BehavioralModel
    DEVICE_STATE = "live device state"  # the state aggregator of mf ingest mqtt
    MERGE = "merge replay"        # mf merge --continue --take theirs
    APPROVAL = "approval"         # mf approve: the proposal's changes
    RECORD = "record"             # events that change no entity: mappings, StateLinks, drifts, proposals


REFUSE, WARN = "refuse", "warn"
PROPOSE, LAND = "propose", "land"
ACTOR_KINDS = ("user", "agent")


@dataclass(frozen=True)
class Rule:
    on_violation: str  # REFUSE: nothing lands; WARN: the change lands and the violation is said
    on_approval: str   # PROPOSE: a proposal instead of the change; LAND: the change lands


_CHECKED = Rule(REFUSE, PROPOSE)
_MADE = Rule(WARN, PROPOSE)
_DECIDED = Rule(REFUSE, LAND)
_OBSERVED = Rule(WARN, LAND)

POLICY: dict[tuple[Source, str], Rule] = {
    (Source.CLI, "user"): _CHECKED, (Source.CLI, "agent"): _CHECKED,
    (Source.TEMPLATE, "user"): _DECIDED, (Source.TEMPLATE, "agent"): _DECIDED,
    (Source.SERVER, "user"): _CHECKED, (Source.SERVER, "agent"): _CHECKED,
    (Source.INGEST, "user"): _MADE, (Source.INGEST, "agent"): _CHECKED,
    (Source.DRIFT_ACCEPT, "user"): _MADE, (Source.DRIFT_ACCEPT, "agent"): _CHECKED,
    (Source.SIM_RECORD, "user"): _DECIDED, (Source.SIM_RECORD, "agent"): _DECIDED,
    (Source.CALIBRATION, "user"): _CHECKED, (Source.CALIBRATION, "agent"): _CHECKED,
    (Source.DEVICE_STATE, "user"): _OBSERVED, (Source.DEVICE_STATE, "agent"): _OBSERVED,
    (Source.MERGE, "user"): _DECIDED, (Source.MERGE, "agent"): _DECIDED,
    (Source.APPROVAL, "user"): _DECIDED, (Source.APPROVAL, "agent"): _DECIDED,
}


def rule_of(source: Source, actor: str) -> Rule:
    kind = actor.split(":", 1)[0]
    try:
        return POLICY[(source, kind)]
    except KeyError:
        raise ValueError(f"no write policy for {source.value} by a {kind!r} actor") from None


def as_rows() -> list[dict]:
    """The table, for `mf` docs and the README."""
    return [{"source": s.value, "actor": k, "constraint violation": r.on_violation, "approval rule": r.on_approval}
            for (s, k), r in POLICY.items()]
