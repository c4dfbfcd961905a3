"""State machines: discrete states, guarded transitions, a value of each output per state.

    states: {normal: {outputs: {load_factor: 1.0}}, throttling: {...}, shutdown: {...}}
    initial: normal
    transitions:
      - {from: [normal, throttling], to: shutdown, when: temperature >= shutdown_at_C}
      - {from: normal, to: throttling, when: temperature >= throttle_at_C}
      - {from: throttling, to: normal, when: temperature <= recover_at_C}

The guards are checked at every step on that step's inputs; the first listed transition that
holds from the current state is taken and acts from the next step (a controller samples, then
acts). Guards may read `time_in_state` (s). Outputs: the declared ones, `state` (the index of
the current state) and one 0/1 flag per state under its name.
"""

from __future__ import annotations

from metaforge.sim.expr import names_in
from metaforge.sim.member import Member


class MachineMember(Member):
    kind = "state-machine"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        d = self.definition
        self.names = list(d.states)
        self.index = {s: i for i, s in enumerate(self.names)}
        self.discrete = {p.name for p in d.outputs} | {"state", *self.names}
        self.timed = any("time_in_state" in names_in(tr.when) for tr in d.transitions)

    def all_outputs(self) -> list[str]:
        return [p.name for p in self.definition.outputs] + ["state", *self.names]

    def derived(self, traces: dict, wanted: set | None = None) -> dict:
        """The 0/1 flag of each state, from the trace of `state` (not computed per step)."""
        key = f"{self.alias}.state"
        if key not in traces:
            return {}
        return {f"{self.alias}.{s}": (traces[key] == float(i)) * 1.0 for s, i in self.index.items()
                if wanted is None or f"{self.alias}.{s}" in wanted}

    def states(self):
        return {"state": float(self.index[self.definition.initial]), "time_in_state": 0.0}

    def direct_outputs(self):
        return set()

    def _names(self):
        names = {p.name: self.v(p.name) for p in self.inputs}
        names.update({"time_in_state": self.v("time_in_state"), "t": "t"})
        return names

    def emit_state_outputs(self, code):
        st = self.v("state")
        scalar = code.mode == "scalar"
        for port in self.definition.outputs:
            values = []
            for s in self.names:
                v = self.definition.states[s].outputs.get(port.name, port.default)
                values.append(code.expr(v, self.resolver({}, f"states.{s}.outputs.{port.name}"))[0])
            if scalar:
                code.step.append(f"{self.v(port.name)} = ({', '.join(values)},)[int({st})]")
            else:  # nested where: a few comparisons cost less than np.choose
                out = values[0]
                for i in range(1, len(values)):
                    out = f"where({st} == {float(i)}, {values[i]}, {out})"
                code.step.append(f"{self.v(port.name)} = {out}")

    def emit_advance(self, code):
        st, tis, scalar = self.v("state"), self.v("time_in_state"), code.mode == "scalar"
        code.advance.append(f"_nx = {st}")
        for i, tr in reversed(list(enumerate(self.definition.transitions))):  # the first listed wins
            guard, _ = code.expr(tr.when, self.resolver(self._names(), f"transitions[{i}].when"))
            sources = [tr.from_] if isinstance(tr.from_, str) else tr.from_
            target = float(self.index[tr.to])
            if "*" in sources:
                cond = guard
            elif scalar:
                cond = "(" + " or ".join(f"{st} == {float(self.index[s])}" for s in sources) + f") and {guard}"
            else:
                inside = " | ".join(f"({st} == {float(self.index[s])})" for s in sources)
                cond = f"logical_and({inside}, {guard})"
            code.advance.append(f"_nx = ({target} if {cond} else _nx)" if scalar else f"_nx = where({cond}, {target}, _nx)")
        if self.timed and scalar:
            code.advance.append(f"{tis} = 0.0 if _nx != {st} else {tis} + _h")
        elif self.timed:
            code.advance.append(f"{tis} = where(_nx != {st}, 0.0, {tis} + _h)")
        code.advance.append(f"{st} = _nx")
