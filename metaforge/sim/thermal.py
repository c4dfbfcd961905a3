"""Thermal R-C networks of any size: nodes with heat capacities, resistances between them and to
ambient, heat inputs. C dT/dt = -G T + g T_ambient + Q is linear, so one step is exact: the
matrix exponential of the network over the step, computed once per run (see member.discretize).
"""

from __future__ import annotations

from metaforge.sim.member import Member, discretize, emit_linear, pack_lines


class ThermalMember(Member):
    kind = "thermal-rc"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        d = self.definition
        self.nodes = list(d.parameters["nodes"])
        self.ambient = "ambient_temperature" if "ambient_temperature" in d.input_names() else None
        self.heat = dict(d.heat_inputs)
        self.inputs_used = sorted(set(self.heat.values()), key=d.input_names().index) + (
            [self.ambient] if self.ambient else [])
        self.node_of = {p.name: p.node or p.name.removesuffix("_temperature") for p in d.outputs}

    def matrices(self):
        """A (k×k) and B (k×inputs) of dT/dt = A T + B u, one per device when parameters vary."""
        import numpy as np

        p = self.params
        caps = [np.asarray(p[f"nodes.{n}.capacitance_J_per_K"], dtype=float) for n in self.nodes]
        shape = np.broadcast_shapes(*(c.shape for c in caps),
                                    *(np.shape(v) for k, v in p.items() if k.startswith("resistances_K_per_W.")))
        k, idx = len(self.nodes), {n: i for i, n in enumerate(self.nodes)}
        g = np.zeros(shape + (k, k))
        g_amb = np.zeros(shape + (k,))
        for key, r in p.items():
            if not key.startswith("resistances_K_per_W."):
                continue
            a, _, b = key.split(".", 1)[1].partition("-")
            cond = 1.0 / np.asarray(r, dtype=float)
            i = idx[a]
            g[..., i, i] += cond
            if b == "ambient":
                g_amb[..., i] += cond
            else:
                j = idx[b]
                g[..., j, j] += cond
                g[..., i, j] -= cond
                g[..., j, i] -= cond
        inv_c = 1.0 / np.stack(np.broadcast_arrays(*caps), axis=-1)            # (..., k)
        a_mat = -g * inv_c[..., :, None]
        b_mat = np.zeros(shape + (k, len(self.inputs_used)))
        for col, name in enumerate(self.inputs_used):
            if name == self.ambient:
                b_mat[..., :, col] = g_amb * inv_c
            for node, source in self.heat.items():
                if source == name:
                    b_mat[..., idx[node], col] += inv_c[..., idx[node]]
        return a_mat, b_mat

    def states(self):
        nodes = self.definition.parameters["nodes"]
        return {n: nodes[n].get("initial_C") if isinstance(nodes[n], dict) else None for n in self.nodes}

    def state_unit(self, name):
        return "degC"

    def direct_outputs(self):
        return set()

    def fastest_rate(self):
        import numpy as np

        a, _ = self.matrices()
        return float(np.abs(np.linalg.eigvals(a)).max())

    def emit_init(self, code, given):
        if self.ambient is None:
            start = "25.0"
        else:
            start = self.v(self.ambient)
        zero = "" if code.mode == "scalar" else f" + {code.bind(__import__('numpy').zeros(self.n), 'z')}"
        lines = [f"{self.v(n)} = {start}{zero}" for n, init in self.states().items() if init is None and n not in given]
        if code.mode == "array":  # a device with no sample of a node's temperature starts at ambient
            lines += [f"{self.v(n)} = where({self.v(n)} != {self.v(n)}, {start}, {self.v(n)})" for n in given]
        return lines + pack_lines(code, self, self.nodes)

    def emit_state_outputs(self, code):
        for port, node in self.node_of.items():
            code.step.append(f"{self.v(port)} = {self.v(node)}")

    def emit_advance(self, code):
        a, b = self.matrices()
        ad, bd = discretize(a, b, code.namespace["_h"])
        emit_linear(code, self, ad, bd, self.nodes, self.inputs_used)
