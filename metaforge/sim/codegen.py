"""Writing the step loop: each member adds lines, the engine compiles them into one function.

A member never runs Python per step of its own: it contributes straight-line source (its
outputs, its state update) in which every name is a local variable of the generated function.
The same source runs on floats (one device) or NumPy arrays (many): `mode` only changes how
conditionals are spelled and which functions the names are bound to (see `expr`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from metaforge.sim.expr import ExprError, array_functions, compile_expr, scalar_functions


def var(alias: str, name: str) -> str:
    """The local variable of a member's port or state (`battery.soc` → `battery__soc`)."""
    return f"{alias}__{name}"


def pvar(alias: str, dotted: str) -> str:
    return "P_" + alias + "__" + re.sub(r"[^A-Za-z0-9_]", "_", dotted.replace(".", "__"))


@dataclass
class Code:
    mode: str                                        # "scalar" or "array"
    namespace: dict = field(default_factory=dict)    # globals of the generated function
    setup: list[str] = field(default_factory=list)   # before the loop
    step: list[str] = field(default_factory=list)    # each step: inputs, outputs (in order)
    advance: list[str] = field(default_factory=list) # each step, after the traces: next state
    finish: list[str] = field(default_factory=list)  # after the loop
    _n: int = 0

    def __post_init__(self):
        self.namespace.update(scalar_functions() if self.mode == "scalar" else array_functions())

    def bind(self, value: Any, hint: str = "c") -> str:
        """A global name holding `value` (a table, a matrix, a helper function)."""
        self._n += 1
        name = f"_{hint}{self._n}"
        self.namespace[name] = value
        return name

    def expr(self, text, resolve) -> tuple[str, list[str]]:
        c = compile_expr(text, resolve, self.mode)
        return c.source, c.names

    def function(self, name: str, args: list[str], body: list[str], returns: str) -> Any:
        """Compile a helper function (an ODE's right-hand side) into the namespace."""
        src = f"def {name}({', '.join(args)}):\n" + "".join(f"    {line}\n" for line in body) + f"    return {returns}\n"
        exec(compile(src, f"<{name}>", "exec"), self.namespace)  # noqa: S102 - source built from checked ASTs
        return self.namespace[name]


class Resolver:
    """Maps the names an expression of one member may read to local variables."""

    def __init__(self, alias: str, names: dict[str, str], params: dict[str, Any], where: str, prefix: str = ""):
        self.alias, self.names, self.params, self.where, self.prefix = alias, names, params, where, prefix

    def __call__(self, name: str) -> str:
        if name in self.names:
            return self.names[name]
        if name in self.params:
            return self.prefix + pvar(self.alias, name)
        raise ExprError(f"{self.where}: unknown name '{name}'")
