"""Systems of ordinary differential equations written as expressions.

    states: {soc: {initial: 1.0, rate: "-load_current / (3600 * q_ah)"}, v1: {...}}
    let:    {q_ah: "capacity_Ah * ...", r0: "..."}          # intermediate quantities, in order
    outputs: [{name: terminal_voltage, expr: "..."}]
    events: {depleted: "terminal_voltage <= cells * cutoff_V_per_cell"}   # latched 0 → 1

Non-stiff systems take classic Runge-Kutta 4 steps, split into as many sub-steps as the
Jacobian's fastest eigenvalue needs to stay stable; stiff ones (`stiff: true`) take the
L-stable two-stage Rosenbrock method ROS2 (Verwer et al. 1999), whose step is not limited by
the fast modes. `let` values that do not depend on a state are computed once per step, not per
stage: the inputs are held over the step.
"""

from __future__ import annotations

from metaforge.sim.codegen import Code, pvar
from metaforge.sim.expr import names_in
from metaforge.sim.member import Member


class OdeMember(Member):
    kind = "differential-equation"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        d = self.definition
        self.state_names = list(d.states)
        self.input_names = d.input_names()
        self.events = dict(d.events)
        self.discrete = set(self.events)
        dynamic = set(self.state_names) | {"t"}
        for name, text in d.let.items():  # in order: a let may use the ones before it
            if set(names_in(text)) & dynamic:
                dynamic.add(name)
        self.dynamic_lets = [n for n in d.let if n in dynamic]
        self.static_lets = [n for n in d.let if n not in dynamic]
        # a state whose rate reads no state (coulomb counting) and that no other rate reads is
        # integrated exactly in one line: its rate is constant while the inputs are held
        reads = {n: set(names_in(d.states[n].rate)) for n in self.state_names}
        for n in self.dynamic_lets:
            reads[f"let:{n}"] = set(names_in(d.let[n]))
        self.quadrature = [n for n in self.state_names
                           if not reads[n] & dynamic and not any(n in r for k, r in reads.items() if k != n)]
        state_only = set(self.state_names) | set(self.events) | set(self.params)
        self._direct = {p.name for p in d.outputs
                        if p.name not in self.events and not set(names_in(p.expr or p.name)) <= state_only}
        self._rhs = None

    def states(self):
        from metaforge.sim.params import resolve

        out = {}
        for name, s in self.definition.states.items():
            if isinstance(s.initial, str):
                out[name] = resolve({"_": s.initial, **self.definition.parameters}, None,
                                    f"{self.loaded.display}: states.{name}.initial", self.mode == "array")["_"]
            else:
                out[name] = float(s.initial)
        out.update({e: 0.0 for e in self.events})
        return out

    def direct_outputs(self):
        return set(self._direct)

    def state_unit(self, name):
        s = self.definition.states.get(name)
        return s.unit if s is not None else "1"

    # ---- the right-hand side as a compiled function ------------------------------------------
    def _compile_rhs(self, code: Code, with_static: bool, states: list[str] | None = None):
        """f(t, *states, *inputs[, *static lets]) → rates; parameters read as globals."""
        d = self.definition
        states = self.state_names if states is None else states
        names = states + self.input_names + list(self.events) + ([] if with_static else self.static_lets)
        local = {n: "a_" + n for n in names}  # prefixed: a port may be called like a function
        local["t"] = "t"
        args = ["t"] + [local[n] for n in names]
        body = []
        for name in (list(d.let) if with_static else self.dynamic_lets):
            src, _ = code.expr(d.let[name], self.resolver(local, f"let.{name}", "g_"))
            body.append(f"a_{name} = {src}")
            local[name] = "a_" + name
        rates = [code.expr(d.states[n].rate, self.resolver(local, f"states.{n}.rate", "g_"))[0] for n in states]
        return code.function(f"rhs_{self.alias}", args, body, "(" + ", ".join(rates) + ",)")

    def fastest_rate(self):
        """|eigenvalue| of the Jacobian at the start, by finite differences (inputs at their port
        defaults, parameters averaged over devices): what RK4's sub-steps must keep stable."""
        import numpy as np

        from metaforge.sim.params import flatten

        if self.definition.stiff or not self.state_names:
            return None
        tables = {k for k, v in flatten(self.definition.parameters).items() if isinstance(v, list)}
        probe = Code("scalar")
        for name, value in self.params.items():
            v = np.asarray(value, dtype=float)
            rep = tuple(v.mean(axis=0) if v.ndim == 2 else v) if name in tables else float(v.mean())
            probe.namespace["g_" + pvar(self.alias, name)] = rep
        f = self._compile_rhs(probe, with_static=True)
        init = self.states()
        y = np.array([float(np.mean(init[s])) for s in self.state_names])
        u = [p.default if p.default is not None else 0.0 for p in self.definition.inputs] + [0.0] * len(self.events)
        f0 = np.array(f(0.0, *y, *u), dtype=float)
        jac = np.zeros((len(y), len(y)))
        for j in range(len(y)):
            dy = 1e-6 * max(1.0, abs(y[j]))
            yj = y.copy()
            yj[j] += dy
            jac[:, j] = (np.array(f(0.0, *yj, *u), dtype=float) - f0) / dy
        return float(np.abs(np.linalg.eigvals(jac)).max())

    # ---- per step -----------------------------------------------------------------------------
    def _names(self) -> dict[str, str]:
        names = {n: self.v(n) for n in [*self.state_names, *self.input_names, *self.events, *self.definition.let]}
        names.update({p.name: self.v(p.name) for p in self.outputs})
        names["t"] = "t"
        return names

    def _emit_output(self, code, i, p):
        src, _ = code.expr(p.expr or p.name, self.resolver(self._names(), f"outputs[{i}].expr"))
        if src != self.v(p.name):
            code.step.append(f"{self.v(p.name)} = {src}")

    def emit_state_outputs(self, code):
        for i, p in enumerate(self.outputs):
            if p.name not in self._direct and p.name not in self.events:
                self._emit_output(code, i, p)

    def emit_direct_outputs(self, code):
        d, names = self.definition, self._names()
        for name in d.let:  # the outputs, the events and the step all read them
            src, _ = code.expr(d.let[name], self.resolver(names, f"let.{name}"))
            code.step.append(f"{self.v(name)} = {src}")
        for i, p in enumerate(self.outputs):
            if p.name in self._direct:
                self._emit_output(code, i, p)

    def emit_advance(self, code):
        names = self._names()
        if self.state_names:
            (self._emit_stiff if self.definition.stiff else self._emit_explicit)(code)
        for name, s in self.definition.states.items():   # a bounded state stays in its range
            if s.range is not None:
                code.advance.append(f"{self.v(name)} = clip({self.v(name)}, {float(s.range[0])!r}, {float(s.range[1])!r})")
        if getattr(self, "hold_events", False):   # a fit driven by measured data: no protection trips
            return
        for name, text in self.events.items():  # latched from the step it becomes true
            src, _ = code.expr(text, self.resolver(names, f"events.{name}"))
            ev = self.v(name)
            code.advance.append(f"{ev} = (1.0 if {src} else {ev})" if code.mode == "scalar"
                                else f"{ev} = where({src}, 1.0, {ev})")

    def _emit_stiff(self, code):
        from metaforge.sim.stiff import ros2

        own = Code("array")   # ROS2 works on arrays, even for one device
        for name, value in self.params.items():
            own.namespace["g_" + pvar(self.alias, name)] = value
        fn = code.bind(self._compile_rhs(own, with_static=False), "f")
        ys = ", ".join(self.v(s) for s in self.state_names)
        extra = "".join(f"{self.v(n)}, " for n in self.input_names + list(self.events) + self.static_lets)
        code.advance.append(f"{ys}, = {code.bind(ros2, 'ros2')}({fn}, t, _h, ({ys},), ({extra}))")

    def _emit_explicit(self, code):
        names = self._names()
        for n in self.quadrature:
            src, _ = code.expr(self.definition.states[n].rate, self.resolver(names, f"states.{n}.rate"))
            code.advance.append(f"{self.v(n)} = {self.v(n)} + _h * {src}")
        rest = [n for n in self.state_names if n not in self.quadrature]
        if not rest:
            return
        fn = code.bind(self._compile_rhs(code, with_static=False, states=rest), "f")
        extra = [self.v(n) for n in self.input_names + list(self.events) + self.static_lets]
        sub = max(1, int(-(-code.namespace["_h"] * (self.fastest_rate() or 0.0) // 2.0)))  # RK4: stable to |λ|h ≈ 2.8
        self._emit_rk4(code, fn, [self.v(s) for s in rest], extra, sub)

    def _emit_rk4(self, code, fn, ys, extra, sub):
        h = "_hs" if sub > 1 else "_h"
        tail = "".join(f", {e}" for e in extra)

        def call(tt, args):
            return f"{fn}({tt}, {', '.join(args)}{tail})"

        k = [[f"_k{i}_{j}" for j in range(len(ys))] for i in range(4)]
        lines = [f"{', '.join(k[0])}, = {call('_t', ys)}"]
        for i, frac in ((1, "0.5 * "), (2, "0.5 * "), (3, "")):
            moved = [f"{y} + {frac}{h} * {a}" for y, a in zip(ys, k[i - 1])]
            lines.append(f"{', '.join(k[i])}, = {call(f'_t + {frac}{h}', moved)}")
        for j, y in enumerate(ys):
            lines.append(f"{y} = {y} + {h} / 6.0 * ({k[0][j]} + 2.0 * {k[1][j]} + 2.0 * {k[2][j]} + {k[3][j]})")
        code.advance.append("_t = t")
        if sub == 1:
            code.advance.extend(lines)
            return
        code.namespace["_hs"] = code.namespace["_h"] / sub
        code.advance.append(f"for _sub in range({sub}):")
        code.advance.extend("    " + line for line in lines)
        code.advance.append("    _t = _t + _hs")
