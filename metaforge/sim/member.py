"""What every model kind gives the engine: its ports, its states, and the lines of its step.

A member is one model inside a run, under an alias (`battery`). Per step the engine emits, in
order: the outputs that depend on state only (`emit_state_outputs`), the inputs (connections),
the outputs that need this step's inputs (`emit_direct_outputs`), the traces, and then the
state update over one step with the inputs held (`emit_advance`).
"""

from __future__ import annotations

from typing import Any

from metaforge.sim.codegen import Code, Resolver, pvar, var


class Member:
    kind = ""

    def __init__(self, alias: str, loaded, params: dict[str, Any], mode: str, n: int):
        self.alias, self.loaded, self.params, self.mode, self.n = alias, loaded, params, mode, n
        self.definition = loaded.definition
        self.inputs = list(self.definition.inputs)
        self.outputs = list(self.definition.outputs)
        self.discrete: set[str] = set()   # outputs that hold their value between steps

    # ---- what the engine asks -----------------------------------------------------------
    def states(self) -> dict[str, Any]:
        """State name → initial value (a number, or None: set from the first step's inputs)."""
        return {}

    def state_unit(self, name: str) -> str:
        """The unit of a state (a temperature must stay above absolute zero)."""
        return ""

    def direct_outputs(self) -> set[str]:
        return {p.name for p in self.outputs}

    def fastest_rate(self) -> float | None:
        """The largest |eigenvalue| (1/s) the step must resolve, or None."""
        return None

    def emit_setup(self, code: Code) -> None:
        for name, value in self.params.items():
            code.namespace["g_" + pvar(self.alias, name)] = value
            code.setup.append(f"{pvar(self.alias, name)} = g_{pvar(self.alias, name)}")

    def emit_init(self, code: Code, given: set[str]) -> list[str]:
        """Lines run once after the first step's inputs are known (states set from inputs)."""
        return []

    def emit_state_outputs(self, code: Code) -> None:
        pass

    def emit_direct_outputs(self, code: Code) -> None:
        pass

    def emit_advance(self, code: Code) -> None:
        pass

    # ---- helpers --------------------------------------------------------------------------
    def v(self, name: str) -> str:
        return var(self.alias, name)

    def resolver(self, names: dict[str, str], where: str, prefix: str = "") -> Resolver:
        """Names of this member's expressions; parameters as locals, or as globals (prefix "g_")."""
        return Resolver(self.alias, names, self.params, f"{self.loaded.display}: {where}", prefix)

    def port_names(self) -> dict[str, str]:
        return {p.name: self.v(p.name) for p in [*self.inputs, *self.outputs]}


def emit_linear(code: Code, member: Member, ad, bd, states: list[str], inputs: list[str]) -> None:
    """x ← Ad x + Bd u, exact for inputs held over the step. Ad, Bd are shared or one per device."""
    import numpy as np

    ad, bd = np.asarray(ad), np.asarray(bd)
    xs = [member.v(s) for s in states]
    us = [member.v(u) for u in inputs]
    if ad.ndim == 2 and (code.mode == "scalar" or len(xs) <= 2):  # straight-line: no NumPy call per step
        for i, x in enumerate(xs):
            terms = [f"{float(ad[i, j])!r} * {xs[j]}" for j in range(len(xs)) if ad[i, j] != 0]
            terms += [f"{float(bd[i, j])!r} * {us[j]}" for j in range(len(us)) if bd[i, j] != 0]
            code.advance.append(f"_n_{x} = {' + '.join(terms) or '0.0'}")
        code.advance.append(", ".join(xs) + " = " + ", ".join(f"_n_{x}" for x in xs))
        return
    a_name, b_name = code.bind(ad, "A"), code.bind(bd, "B")
    u_buf = code.bind(np.zeros((len(us), member.n)), "U")
    xs_name = f"_xs_{member.alias}"   # the states live as rows of one array (see pack_lines)
    for j, u in enumerate(us):
        code.advance.append(f"{u_buf}[{j}] = {u}")
    if ad.ndim == 2:
        code.advance.append(f"{xs_name} = {a_name} @ {xs_name} + {b_name} @ {u_buf}")
    else:  # (n, k, k): one network per device (a sweep over its parameters)
        code.namespace["einsum"] = np.einsum
        code.advance.append(f"{xs_name} = einsum('nij,jn->in', {a_name}, {xs_name}) + einsum('nij,jn->in', {b_name}, {u_buf})")
    code.advance.append(", ".join(xs) + f" = {xs_name}" if len(xs) > 1 else f"{xs[0]} = {xs_name}[0]")


def pack_lines(code: Code, member: "Member", states: list[str]) -> list[str]:
    """Before the loop, in array mode: the states of a linear member as rows of one array, so a
    step is one matrix product and no copies."""
    if code.mode == "scalar":
        return []
    import numpy as np

    code.namespace.setdefault("_stack", lambda *rows: np.array(np.broadcast_arrays(*rows), dtype=float))
    xs = [member.v(s) for s in states]
    line = f"_xs_{member.alias} = _stack({', '.join(xs)})"
    return [line, ", ".join(xs) + f" = _xs_{member.alias}" if len(xs) > 1 else f"{xs[0]} = _xs_{member.alias}[0]"]


def expm(m):
    """exp(M) for small matrices (…, k, k): scaling and squaring of a Taylor series, NumPy only
    (scipy.linalg costs 0.3 s to import, more than a whole what-if may take)."""
    import numpy as np

    m = np.asarray(m, dtype=float)
    norm = np.abs(m).sum(axis=-1).max() if m.size else 0.0
    s = max(0, int(np.ceil(np.log2(norm / 0.5))) if norm > 0.5 else 0)
    a = m / (2.0 ** s)
    eye = np.broadcast_to(np.eye(m.shape[-1]), m.shape)
    out, term = eye.copy(), eye.copy()
    for i in range(1, 20):
        term = term @ a / i
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


def discretize(a, b, h: float):
    """(Ad, Bd) of x' = A x + B u with u held over h: the exponential of the augmented matrix."""
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    k, m = a.shape[-1], b.shape[-1]
    aug = np.zeros(a.shape[:-2] + (k + m, k + m))
    aug[..., :k, :k] = a * h
    aug[..., :k, k:] = b * h
    e = expm(aug)
    return e[..., :k, :k], e[..., :k, k:]
