"""Transfer functions H(s) = num(s) / den(s) driven by an input signal.

H(s) becomes a state-space model in controllable canonical form and is discretized exactly for
an input held over each step, so a first-order lag K / (tau s + 1) gives K (1 - exp(-t / tau))
at every step of a step response, whatever the step.
"""

from __future__ import annotations

from metaforge.errors import BadInput
from metaforge.sim.member import Member, discretize, emit_linear, pack_lines


class TransferMember(Member):
    kind = "transfer-function"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.u = self.definition.inputs[0].name
        self.y = self.definition.outputs[0].name
        self.order = len(self.definition.parameters["denominator"]) - 1
        self.state_names = [f"x{i}" for i in range(self.order)]

    def coefficients(self):
        import numpy as np

        num = np.asarray(self.params["numerator"], dtype=float)
        den = np.asarray(self.params["denominator"], dtype=float)
        if np.any(den[..., 0] == 0):
            raise BadInput(f"{self.loaded.display}: parameters.denominator: the leading coefficient is 0")
        lead = den[..., :1]
        num, den = num / lead, den / lead
        pad = den.shape[-1] - num.shape[-1]
        num = np.concatenate([np.zeros(num.shape[:-1] + (pad,)), num], axis=-1) if pad else num
        return num, den

    def state_space(self):
        """A, B, C, D of the controllable canonical form (one per device when parameters vary)."""
        import numpy as np

        num, den = self.coefficients()
        n = self.order
        shape = np.broadcast_shapes(num.shape[:-1], den.shape[:-1])
        num, den = np.broadcast_to(num, shape + num.shape[-1:]), np.broadcast_to(den, shape + den.shape[-1:])
        a = np.zeros(shape + (n, n))
        if n > 1:
            a[..., :-1, 1:] = np.eye(n - 1)
        a[..., -1, :] = -den[..., :0:-1]
        b = np.zeros(shape + (n, 1))
        b[..., -1, 0] = 1.0
        d = num[..., 0]
        c = (num[..., :0:-1] - den[..., :0:-1] * d[..., None])
        return a, b, c, d

    def states(self):
        return {s: 0.0 for s in self.state_names}

    def emit_init(self, code, given):
        a, _, _, _ = self.state_space()
        return pack_lines(code, self, self.state_names) if a.ndim > 2 or self.order > 2 else []

    def direct_outputs(self):
        import numpy as np

        _, _, _, d = self.state_space()
        return {self.y} if np.any(d != 0) else set()

    def fastest_rate(self):
        import numpy as np

        if not self.order:
            return None
        a, _, _, _ = self.state_space()
        return float(np.abs(np.linalg.eigvals(a)).max())

    def _output(self, code):
        import numpy as np

        _, _, c, d = self.state_space()
        if c.ndim > 1 or np.ndim(d):
            cn, dn = code.bind(c, "C"), code.bind(d, "D")
            terms = [f"{cn}[..., {i}] * {self.v(x)}" for i, x in enumerate(self.state_names)]
            terms.append(f"{dn} * {self.v(self.u)}")
        else:
            terms = [f"{float(c[i])!r} * {self.v(x)}" for i, x in enumerate(self.state_names) if c[i] != 0]
            if d != 0:
                terms.append(f"{float(d)!r} * {self.v(self.u)}")
        return " + ".join(terms) or "0.0"

    def emit_state_outputs(self, code):
        if self.y not in self.direct_outputs():
            code.step.append(f"{self.v(self.y)} = {self._output(code)}")

    def emit_direct_outputs(self, code):
        if self.y in self.direct_outputs():
            code.step.append(f"{self.v(self.y)} = {self._output(code)}")

    def emit_advance(self, code):
        if not self.order:
            return
        a, b, _, _ = self.state_space()
        ad, bd = discretize(a, b, code.namespace["_h"])
        emit_linear(code, self, ad, bd, self.state_names, [self.u])
