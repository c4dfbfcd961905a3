"""Composition: several models run as one, each member's inputs wired to expressions of the
scenario's knobs, the composition's parameters and the other members' ports.

A composition definition says it all (members, connections, results, telemetry). `mf sim run
A B` composes by name instead: an input of one model named like an output of another is fed
by it, and every other input becomes a knob of the scenario.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from metaforge.errors import BadInput
from metaforge.sim.definition import Composition, Loaded, Port, Result, Telemetry


@dataclass
class Composed:
    name: str
    members: dict[str, Loaded]                           # alias → definition
    scenario: list[Port]                                 # the knobs, with defaults
    parameters: dict = field(default_factory=dict)       # the composition's own
    connections: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # alias.input → (expr, else)
    results: dict[str, Result] = field(default_factory=dict)
    telemetry: Telemetry = field(default_factory=Telemetry)
    valid_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    source: Loaded | None = None
    omitted: dict[str, Loaded] = field(default_factory=dict)  # members left out (--models): their defaults stand in

    def port_unit(self, dotted: str) -> str | None:
        alias, _, port = dotted.partition(".")
        if alias in self.members:
            for p in [*self.members[alias].definition.inputs, *self.members[alias].definition.outputs]:
                if p.name == port:
                    return p.unit
        for p in self.scenario:
            if p.name == dotted:
                return p.unit
        return None


def driven(composed: Composed, targets: list[str]) -> tuple[Composed, dict[str, str]]:
    """A copy in which each `member.input` of `targets` is fed by a new knob (a measured signal)
    instead of its connection; returns it and target → knob."""
    import copy

    out = copy.copy(composed)
    out.scenario, out.connections = list(composed.scenario), dict(composed.connections)
    knobs = {}
    for target in targets:
        alias, _, port = target.partition(".")
        if alias not in composed.members:
            raise BadInput(f"{composed.name}: telemetry.drive: '{target}' is not member.input")
        spec = next((p for p in composed.members[alias].definition.inputs if p.name == port), None)
        if spec is None:
            raise BadInput(f"{composed.name}: telemetry.drive: {alias} has no input '{port}'")
        knob = f"measured__{alias}__{port}"
        out.scenario.append(spec.model_copy(update={"name": knob, "default": spec.default or 0.0}))
        out.connections[target] = (knob, None)
        knobs[target] = knob
    return out, knobs


def alias_of(name: str) -> str:
    alias = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return alias if re.match(r"^[A-Za-z_]", alias) else "m_" + alias


def from_composition(loaded: Loaded, find: Callable[[str, Loaded], Loaded], only: list[str] | None = None) -> Composed:
    """The members of a composition definition, loaded; `only` keeps some (by model name or alias)."""
    d: Composition = loaded.definition
    members, omitted = {}, {}
    for alias, model in d.members.items():
        if only and alias not in only and model not in only:
            omitted[alias] = find(model, loaded)
            continue
        members[alias] = find(model, loaded)
    if only:
        unknown = [m for m in only if m not in d.members and m not in d.members.values()]
        if unknown:
            raise BadInput(f"--models: {', '.join(unknown)} is not a member of {d.name} "
                           f"(members: {', '.join(d.members.values())})")
    conns = {k: (c.expr, c.fallback) for k, c in d.connections.items() if k.split(".", 1)[0] in members}
    results = {k: r for k, r in d.results.items()}
    return Composed(d.name, members, list(d.inputs), dict(d.parameters), conns, results, d.telemetry,
                    dict(d.valid_range), loaded, omitted)


def from_models(models: list[Loaded]) -> Composed:
    """Models wired by port name; unconnected inputs become the scenario's knobs."""
    members: dict[str, Loaded] = {}
    for m in models:
        if m.definition.model_type == "composition":
            raise BadInput(f"{m.display}: a composition runs alone (`mf sim run {m.definition.name}`)")
        alias = alias_of(m.definition.name)
        if alias in members:
            raise BadInput(f"{m.definition.name} is given twice")
        members[alias] = m
    producers: dict[str, str] = {}
    for alias, m in members.items():
        for p in m.definition.outputs:
            producers.setdefault(p.name, alias)
    scenario: dict[str, Port] = {}
    conns: dict[str, tuple[str, str | None]] = {}
    ranges: dict[str, tuple[float, float]] = {}
    for alias, m in members.items():
        for p in m.definition.inputs:
            source = producers.get(p.name)
            if source is not None and source != alias:
                conns[f"{alias}.{p.name}"] = (f"{source}.{p.name}", None)
                continue
            if p.name not in scenario:
                scenario[p.name] = p.model_copy(update={"default": p.default if p.default is not None else 0.0})
            conns[f"{alias}.{p.name}"] = (p.name, None)
    name = "+".join(m.definition.name for m in models)
    results = {f"{alias}.{p.name}": Result(final=f"{alias}.{p.name}", unit=p.unit)   # where each output ends
               for alias, m in members.items() for p in m.definition.outputs}
    for alias, m in members.items():   # when each event (a cut-off) happened
        for e in getattr(m.definition, "events", {}) or {}:
            results[f"{alias}.{e}_at"] = Result(first=f"{alias}.{e} >= 0.5", description=f"{e}: the time it latched")
    return Composed(name, members, list(scenario.values()), {}, conns, results, Telemetry(), ranges)


def default_of(loaded: Loaded, port: str) -> float | None:
    for p in [*loaded.definition.outputs, *loaded.definition.inputs]:
        if p.name == port:
            return p.default
    return None
