"""Dimensional analysis of a definition's expressions, run by `mf sim register`.

Each name has a dimension: ports and states from their `unit`, parameters from the unit their
name ends with (`capacity_Ah`: charge, `r0_ohm`: resistance, `tau1_s`: time, `throttle_at_C`: a
temperature, `r_activation_J_per_mol`: energy per amount) or from `parameter_units:` in the
definition. A name of no known unit, and a bare number, fit any dimension (so `273.15 + T` and
`3600 * q` pass), except that a number multiplies as a pure number. Sums, differences,
comparisons, `min`/`max`/`clip`/`where` need operands of one dimension; `exp`, `log`, `sin`… a
dimensionless argument; a state's rate is its unit per second; an output's expression has the
port's unit; a connection has the unit of the input it feeds. A mismatch is BadInput naming the
field and both dimensions.
"""

from __future__ import annotations

import ast

from metaforge.errors import BadInput

Dim = tuple  # ((base, exponent), ...) sorted; () is dimensionless; None is "not known"

_SUFFIX_UNITS = [  # longest first
    ("_J_per_mol_K", "J/mol/K"), ("_J_per_mol", "J/mol"), ("_J_per_K", "J/K"), ("_K_per_W", "K/W"),
    ("_V_per_cell", "V"), ("_per_K", "1/K"), ("_mAh", "mA*h"), ("_Ah", "A*h"), ("_Wh", "W*h"),
    ("_mohm", "mohm"), ("_ohm", "ohm"), ("_Hz", "Hz"), ("_rpm", "rpm"), ("_degC", "degC"), ("_kg", "kg"),
    ("_F", "farad"), ("_s", "s"), ("_V", "V"), ("_A", "A"), ("_W", "W"), ("_J", "J"), ("_K", "K"), ("_C", "degC"),
]
_DIMLESS_FUNCS = {"exp", "log", "log10", "sin", "cos", "tanh"}


class DimError(ValueError):
    pass


def of_unit(unit: str | None) -> Dim | None:
    from metaforge.thread import units

    if unit is None:
        return None
    if unit in ("", "1"):
        return ()
    try:
        text = units.dimensionality(units.normalize_unit(unit, "temperature"))
    except units.UnitError:
        raise DimError(f"unknown unit '{unit}'") from None
    if text == "dimensionless":
        return ()
    out = {}
    for part in text.split(" * "):
        base, _, exp = part.partition("^")
        out[base.strip("[]")] = float(exp or 1)
    return tuple(sorted(out.items()))


def of_parameter(dotted: str, declared: dict[str, str]) -> Dim | None:
    if dotted in declared:
        return of_unit(declared[dotted])
    last = dotted.rsplit(".", 1)[-1]
    for suffix, unit in _SUFFIX_UNITS:
        if last.endswith(suffix):
            return of_unit(unit)
    return None


def show(d: Dim | None) -> str:
    if d is None:
        return "any"
    if not d:
        return "dimensionless"
    return " * ".join(f"{b}^{e:g}" if e != 1 else b for b, e in d)


def _mul(a: Dim, b: Dim, sign: float = 1.0) -> Dim:
    out = dict(a)
    for k, v in b:
        out[k] = out.get(k, 0.0) + sign * v
    return tuple(sorted((k, v) for k, v in out.items() if abs(v) > 1e-12))


def _pow(a: Dim, n: float) -> Dim:
    return tuple(sorted((k, v * n) for k, v in a))


class Checker:
    """infer(text) → the dimension of an expression, given `dims(name)` for its names."""

    def __init__(self, dims):
        self.dims = dims

    def infer(self, text: str) -> Dim | None:
        node = ast.parse(str(text).strip(), mode="eval").body
        return self._walk(node)[0]

    # returns (dimension, is a bare number)
    def _walk(self, node) -> tuple[Dim | None, bool]:
        if isinstance(node, ast.Constant):
            return None, True
        if isinstance(node, (ast.Name, ast.Attribute)):
            return self.dims(ast.unparse(node)), False
        if isinstance(node, ast.UnaryOp):
            d, lit = self._walk(node.operand)
            return (() if isinstance(node.op, ast.Not) else d), lit
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                self._walk(v)
            return (), False
        if isinstance(node, ast.Compare):
            items = [node.left, *node.comparators]
            self._same([self._walk(x) for x in items], ast.unparse(node))
            return (), False
        if isinstance(node, ast.IfExp):
            self._walk(node.test)
            return self._same([self._walk(node.body), self._walk(node.orelse)], ast.unparse(node)), False
        if isinstance(node, ast.Call):
            return self._call(node)
        return None, False

    def _same(self, parts, where: str) -> Dim | None:
        known = [d for d, _ in parts if d is not None]
        for d in known[1:]:
            if d != known[0]:
                raise DimError(f"'{where}' mixes {show(known[0])} and {show(d)}")
        return known[0] if known else None

    def _binop(self, node) -> tuple[Dim | None, bool]:
        (a, la), (b, lb) = self._walk(node.left), self._walk(node.right)
        if isinstance(node.op, (ast.Add, ast.Sub, ast.Mod)):
            return self._same([(a, la), (b, lb)] if not (la and lb) else [], ast.unparse(node)), la and lb
        if isinstance(node.op, (ast.Mult, ast.Div)):
            if la and lb:
                return None, True
            a = () if la else a
            b = () if lb else b
            if a is None or b is None:
                return None, False
            return _mul(a, b, 1.0 if isinstance(node.op, ast.Mult) else -1.0), la and lb
        if isinstance(node.op, ast.Pow):
            if b not in (None, ()):
                raise DimError(f"'{ast.unparse(node)}': an exponent must be dimensionless, not {show(b)}")
            if la or a is None:
                return a, la
            if isinstance(node.right, ast.Constant) and isinstance(node.right.value, (int, float)):
                return _pow(a, float(node.right.value)), False
            if a != ():
                raise DimError(f"'{ast.unparse(node)}': {show(a)} to a power that is not a number")
            return (), False
        return None, False

    def _call(self, node) -> tuple[Dim | None, bool]:
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        args = [self._walk(a) for a in node.args]
        text = ast.unparse(node)
        if name in _DIMLESS_FUNCS:
            d = args[0][0] if args else None
            if d not in (None, ()):
                raise DimError(f"'{text}': {name}() of {show(d)} (its argument must be dimensionless)")
            return (), False
        if name == "sqrt":
            d = args[0][0]
            return (None if d is None else _pow(d, 0.5)), False
        if name == "abs":
            return args[0]
        if name in ("min", "max", "clip"):
            return self._same(args, text), False
        if name == "where":
            return self._same(args[1:], text), False
        if name == "interp":
            self._same(args[:2], text)
            return args[2][0], False
        return None, False


def _ode_names(d) -> dict:
    dims = {p.name: of_unit(p.unit) for p in d.inputs}
    for name, s in d.states.items():
        dims[name] = of_unit(s.unit)
    for name in d.events:
        dims[name] = ()
    dims["t"] = of_unit("s")
    return dims


def check_definition(d) -> None:
    """A single model's expressions (differential equations); raises DimError naming the field."""
    if d.model_type != "differential-equation":
        return
    from metaforge.sim.params import flatten

    declared = dict(getattr(d, "parameter_units", {}) or {})
    flat = flatten(d.parameters)
    names = _ode_names(d)

    def dims(name: str) -> Dim | None:
        if name in names:
            return names[name]
        if name in flat or name.split(".", 1)[0] in d.parameters:
            return of_parameter(name, declared)
        return None

    checker = Checker(dims)
    for name, text in d.let.items():
        names[name] = _at(("let", name), lambda: checker.infer(text))
    per_second = of_unit("1/s")
    for name, s in d.states.items():
        rate = _at(("states", name, "rate"), lambda: checker.infer(s.rate))
        want = _mul(names[name], per_second) if names[name] is not None else None
        if rate is not None and want is not None and rate != want:
            raise DimError(f"states.{name}.rate: is {show(rate)}, but a rate of a state in '{s.unit}' is {show(want)}")
    for i, p in enumerate(d.outputs):
        if p.expr is None:
            continue
        got = _at(("outputs", i, "expr"), lambda: checker.infer(p.expr))
        want = of_unit(p.unit)
        if got is not None and want is not None and got != want:
            raise DimError(f"outputs.{i}.expr ({p.name}): is {show(got)}, but the port's unit '{p.unit}' is {show(want)}")
    for name, text in d.events.items():
        _at(("events", name), lambda: checker.infer(text))


def _at(loc: tuple, fn):
    try:
        return fn()
    except DimError as exc:
        if str(exc).split(":", 1)[0].startswith(("states.", "outputs.", "let.", "events.", "connections.")):
            raise
        raise DimError(f"{'.'.join(str(x) for x in loc)}: {exc}") from None


def check_composition(loaded, find) -> None:
    """A composition against its members: members exist and are no compositions, every connection
    feeds an input that exists from names that exist, in the input's unit; no algebraic loop.
    `find(model_name)` gives a member's Loaded or raises BadInput."""
    d = loaded.definition
    where = loaded.display
    members = {}
    for alias, model in d.members.items():
        if model == d.name:
            raise BadInput(f"{where}: members.{alias}: '{model}' is this composition itself (a cycle)")
        try:
            m = find(model)
        except BadInput as exc:
            raise BadInput(f"{where}: members.{alias}: no model '{model}' ({exc.message})") from None
        if m.definition.model_type == "composition":
            raise BadInput(f"{where}: members.{alias}: '{model}' is a composition; a composition's members are "
                           "models (nesting, and the cycles it allows, are refused)")
        members[alias] = m
    from metaforge.sim.params import flatten

    scenario = {p.name: of_unit(p.unit) for p in d.inputs}
    own = flatten(d.parameters)
    mparams = {a: flatten(m.definition.parameters) for a, m in members.items()}

    def dims(name: str) -> Dim | None:
        if name in scenario:
            return scenario[name]
        if name in own:
            return of_parameter(name, dict(getattr(d, "parameter_units", {}) or {}))
        alias, _, rest = name.partition(".")
        if alias in members:
            m = members[alias].definition
            for p in [*m.inputs, *m.outputs]:
                if p.name == rest:
                    return of_unit(p.unit)
            if rest in getattr(m, "events", {}) or rest in getattr(m, "states", {}):
                return () if rest in getattr(m, "events", {}) else of_unit(getattr(m.states[rest], "unit", None))
            if rest in mparams[alias]:
                return of_parameter(rest, dict(getattr(m, "parameter_units", {}) or {}))
            if m.model_type == "state-machine" and rest in m.states:
                return ()
            if m.model_type == "differential-equation" and rest in m.let:
                return None
        raise DimError(f"unknown name '{name}'")

    checker = Checker(dims)
    for target, conn in d.connections.items():
        alias, _, port = target.partition(".")
        spec = next((p for p in members[alias].definition.inputs if p.name == port), None)
        if spec is None:
            raise BadInput(f"{where}: connections.{target}: {alias} ({d.members[alias]}) has no input '{port}' "
                           f"(inputs: {', '.join(members[alias].definition.input_names()) or 'none'})")
        for text in (conn.expr, conn.fallback):
            if text is None:
                continue
            try:
                got = checker.infer(text)
            except DimError as exc:
                raise BadInput(f"{where}: connections.{target}: {exc}") from None
            want = of_unit(spec.unit)
            if got is not None and want is not None and got != want:
                raise BadInput(f"{where}: connections.{target}: '{text}' is {show(got)}, but {target} is in "
                               f"'{spec.unit}' ({show(want)})")
    for name, r in d.results.items():
        for text in ([getattr(r, r.kind)] if r.kind != "margin" else list(r.margin)):
            try:
                checker.infer(text)
            except DimError as exc:
                if "unknown name" in str(exc):
                    raise BadInput(f"{where}: results.{name}: {exc}") from None
                raise BadInput(f"{where}: results.{name}: {exc}") from None
    _algebraic_loops(loaded, members)


def _algebraic_loops(loaded, members) -> None:
    from metaforge.sim.compose import from_composition
    from metaforge.sim.engine import Scenario, _Build

    composed = from_composition(loaded, lambda name, _parent: members[next(a for a, m in loaded.definition.members.items()
                                                                          if m == name)])
    run = _Build(composed, Scenario(1.0, 1.0, curves=False))
    try:
        run.order(run.connections())
    except BadInput as exc:
        raise BadInput(f"{loaded.display}: connections: {exc.message.split(': ', 1)[-1]}") from None


def check_model(loaded) -> None:
    try:
        check_definition(loaded.definition)
    except DimError as exc:
        raise BadInput(f"{loaded.display}: {exc}") from None

