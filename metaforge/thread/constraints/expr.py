"""The constraint expression language: tokens, parser, AST, and the static (unit) check.

    sum(BOMItem.current where rail == "3V3") <= 0.8 * DesignElement:LDO-3V3.max_current
    DesignElement:MCU.max_temp - TwinModel:DroneFlightController-v2.1.max_temp >= 10K
    unique(DesignElement.pin where kind == "pin")
    count(BOMItem where lifecycle == "obsolete") == 0

Literals: numbers with a unit glued on (`500mA`, `3.3V`, `10K`, `85degC`), strings in quotes,
true, false, null. `Type:name.property` reads one entity (put spaces around a minus after it:
names may contain `-`). Aggregates sum, min, max, avg, count and unique run over the entities
of a type, optionally filtered with `where`, in which bare names are that entity's properties.
Operators: + - * / < <= > >= == != and or not, parentheses; functions abs(x), min(a, b), max(a, b).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from metaforge.thread import units

Dims = tuple[tuple[str, float], ...]


class ExprError(ValueError):
    """A malformed or ill-typed expression (said when the constraint is added)."""


# ---- dimensions --------------------------------------------------------------------------------

def dims_of_unit(unit: str) -> Dims:
    text = units.dimensionality(unit)
    if text == "dimensionless":
        return ()
    out = []
    for part in text.split(" * "):
        name, _, exp = part.partition("^")
        out.append((name, float(exp)))
    return tuple(sorted(out))


def combine(a: Dims, b: Dims, sign: int) -> Dims:
    acc: dict[str, float] = dict(a)
    for name, exp in b:
        acc[name] = acc.get(name, 0.0) + sign * exp
    return tuple(sorted((k, v) for k, v in acc.items() if v))


def dims_name(d: Dims) -> str:
    if not d:
        return "a plain number"
    for name, ref in units.DIMENSIONS.items():
        if dims_of_unit(ref) == d:
            return f"a {name.replace('_', ' ')}"
    return " * ".join(f"{k}^{v:g}" for k, v in d)


# ---- tokens ------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?P<unit>[A-Za-zµΩ°%][A-Za-z0-9µΩ°%]*(?:[/^][A-Za-z0-9µΩ°%]+)*)?
  | (?P<entity>[A-Z][A-Za-z0-9]*:[A-Za-z0-9_][A-Za-z0-9_.\-+/#@]*)
  | (?P<string>"[^"]*"|'[^']*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|[<>+\-*/(),.])
""", re.VERBOSE)

_KEYWORDS = {"and", "or", "not", "where", "true", "false", "null"}
AGGREGATES = {"sum", "min", "max", "avg", "count", "unique"}
FUNCTIONS = {"abs", "min", "max"}


@dataclass
class Tok:
    kind: str
    text: str
    pos: int
    unit: str | None = None


def tokenize(src: str) -> list[Tok]:
    out, pos = [], 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m:
            raise ExprError(f"unexpected '{src[pos]}' at column {pos + 1}")
        kind = m.lastgroup if m.lastgroup != "unit" else "number"
        if kind != "ws":
            if kind == "number":
                out.append(Tok("number", m.group("number"), pos, m.group("unit")))
            elif kind == "ident" and m.group(0) in _KEYWORDS:
                out.append(Tok(m.group(0), m.group(0), pos))
            else:
                out.append(Tok(kind, m.group(0), pos))
        pos = m.end()
    out.append(Tok("end", "", pos))
    return out


# ---- AST -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Num:
    value: float  # in SI base units
    dims: Dims
    unit: str | None  # as written, for display


@dataclass(frozen=True)
class Lit:
    value: Any  # str, bool or None


@dataclass(frozen=True)
class Ref:
    entity: str
    prop: str


@dataclass(frozen=True)
class Prop:
    name: str  # a property of the entity an aggregate is looking at


@dataclass(frozen=True)
class Agg:
    func: str
    type: str
    prop: str | None
    where: Any


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple


@dataclass(frozen=True)
class Unary:
    op: str
    arg: Any


@dataclass(frozen=True)
class Bin:
    op: str
    left: Any
    right: Any


COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


class _Parser:
    def __init__(self, src: str):
        self.src = src
        self.toks = tokenize(src)
        self.i = 0
        self.scope = 0  # >0 inside an aggregate's where: bare names are properties

    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> Tok:
        tok = self.next()
        if tok.text != text:
            raise ExprError(f"expected '{text}' at column {tok.pos + 1}, found {tok.text or 'the end'!r}")
        return tok

    def parse(self):
        node = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise ExprError(f"unexpected {tok.text!r} at column {tok.pos + 1}")
        return node

    def or_(self):
        node = self.and_()
        while self.peek().kind == "or":
            self.next()
            node = Bin("or", node, self.and_())
        return node

    def and_(self):
        node = self.not_()
        while self.peek().kind == "and":
            self.next()
            node = Bin("and", node, self.not_())
        return node

    def not_(self):
        if self.peek().kind == "not":
            self.next()
            return Unary("not", self.not_())
        return self.cmp()

    def cmp(self):
        node = self.add()
        if self.peek().text in COMPARISONS and self.peek().kind == "op":
            op = self.next().text
            node = Bin(op, node, self.add())
            if self.peek().text in COMPARISONS and self.peek().kind == "op":
                raise ExprError(f"chained comparison at column {self.peek().pos + 1}: use 'and'")
        return node

    def add(self):
        node = self.mul()
        while self.peek().kind == "op" and self.peek().text in "+-":
            node = Bin(self.next().text, node, self.mul())
        return node

    def mul(self):
        node = self.unary()
        while self.peek().kind == "op" and self.peek().text in "*/":
            node = Bin(self.next().text, node, self.unary())
        return node

    def unary(self):
        if self.peek().kind == "op" and self.peek().text == "-":
            self.next()
            return Unary("-", self.unary())
        return self.primary()

    def primary(self):
        tok = self.next()
        if tok.kind == "number":
            return _number(tok)
        if tok.kind == "string":
            return Lit(tok.text[1:-1])
        if tok.kind in ("true", "false"):
            return Lit(tok.kind == "true")
        if tok.kind == "null":
            return Lit(None)
        if tok.kind == "entity":
            entity, dot, prop = tok.text.rpartition(".")
            if not dot or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", prop) or ":" not in entity:
                raise ExprError(f"'{tok.text}' at column {tok.pos + 1} needs a property: Type:name.property")
            return Ref(entity, prop)
        if tok.kind == "op" and tok.text == "(":
            node = self.or_()
            self.expect(")")
            return node
        if tok.kind == "ident":
            if self.peek().text == "(":
                return self.call(tok)
            if self.scope:
                return Prop(tok.text)
            raise ExprError(f"unknown name '{tok.text}' at column {tok.pos + 1} (an entity is Type:name.property)")
        raise ExprError(f"unexpected {tok.text or 'end of expression'!r} at column {tok.pos + 1}")

    def call(self, name: Tok):
        self.expect("(")
        func = name.text
        first = self.peek()
        # an aggregate reads `Type.prop` or `Type` (count); a function reads expressions
        if func in AGGREGATES and first.kind == "ident" and first.text[:1].isupper() and \
                self.toks[self.i + 1].text in (".", "where", ")"):
            self.next()
            prop = None
            if self.peek().text == ".":
                self.next()
                ptok = self.next()
                if ptok.kind != "ident":
                    raise ExprError(f"expected a property name after '{first.text}.' at column {ptok.pos + 1}")
                prop = ptok.text
            elif func != "count":
                raise ExprError(f"{func}() needs Type.property, e.g. {func}(BOMItem.current)")
            where = None
            if self.peek().kind == "where":
                self.next()
                self.scope += 1
                where = self.or_()
                self.scope -= 1
            self.expect(")")
            return Agg(func, first.text, prop, where)
        if func not in FUNCTIONS:
            raise ExprError(f"unknown function '{func}' at column {name.pos + 1} "
                            f"(aggregates: {', '.join(sorted(AGGREGATES))}; functions: abs, min, max)")
        args = [self.or_()]
        while self.peek().text == ",":
            self.next()
            args.append(self.or_())
        self.expect(")")
        want = 1 if func == "abs" else 2
        if len(args) != want:
            raise ExprError(f"{func}() takes {want} argument{'s' * (want > 1)}")
        return Call(func, tuple(args))


def _number(tok: Tok) -> Num:
    value = float(tok.text)
    if not tok.unit:
        return Num(value, (), None)
    unit = units.normalize_unit(tok.unit, None)
    try:
        return Num(units.to_base(value, unit), dims_of_unit(unit), unit)
    except units.UnitError as exc:
        raise ExprError(f"{exc} at column {tok.pos + 1}") from None


def parse(src: str):
    if not isinstance(src, str) or not src.strip():
        raise ExprError("the expression is empty")
    return _Parser(src).parse()


# ---- static check: kinds and units ------------------------------------------------------------

ANY = "any"


def kind_of_property(kind: str):
    """A property's schema kind → the expression kind: ("q", dims) | "str" | "bool" | ANY."""
    if kind in units.DIMENSIONS:
        return ("q", dims_of_unit(units.DIMENSIONS[kind]))
    if kind in ("int", "float"):
        return ("q", ())
    if kind == "str" or kind.startswith("enum:"):
        return "str"
    if kind == "bool":
        return "bool"
    return ANY


def check(node, types: dict, scope_type: str | None = None):
    """The kind of `node`; ExprError for an unknown type or property, or units that do not fit."""
    if isinstance(node, Num):
        return ("q", node.dims)
    if isinstance(node, Lit):
        return {str: "str", bool: "bool"}.get(type(node.value), ANY)
    if isinstance(node, Ref):
        type_name = node.entity.split(":", 1)[0]
        return _prop_kind(types, type_name, node.prop)
    if isinstance(node, Prop):
        if node.name in ("id", "name", "type"):
            return "str"
        return _prop_kind(types, scope_type, node.name)
    if isinstance(node, Agg):
        if node.type not in types:
            raise ExprError(f"unknown entity type '{node.type}' in {node.func}()")
        if node.where is not None and check(node.where, types, node.type) not in ("bool", ANY):
            raise ExprError(f"the where of {node.func}({node.type}...) must be a condition")
        if node.func == "count":
            return ("q", ())
        kind = _prop_kind(types, node.type, node.prop)
        if node.func == "unique":
            return "bool"
        if kind == ANY or kind[0] != "q":
            raise ExprError(f"{node.func}() of {node.type}.{node.prop} needs numbers, and it holds text")
        return kind
    if isinstance(node, Call):
        kinds = [check(a, types, scope_type) for a in node.args]
        for k in kinds:
            if k != ANY and k[0] != "q":
                raise ExprError(f"{node.func}() takes numbers")
        if len(kinds) == 2 and ANY not in kinds and kinds[0] != kinds[1]:
            raise ExprError(f"{node.func}() of {dims_name(kinds[0][1])} and {dims_name(kinds[1][1])}")
        return kinds[0]
    if isinstance(node, Unary):
        k = check(node.arg, types, scope_type)
        if node.op == "not":
            if k not in ("bool", ANY):
                raise ExprError("'not' needs a condition")
            return "bool"
        if k != ANY and k[0] != "q":
            raise ExprError("'-' needs a number")
        return k
    if isinstance(node, Bin):
        lk, rk = check(node.left, types, scope_type), check(node.right, types, scope_type)
        op = node.op
        if op in ("and", "or"):
            for k in (lk, rk):
                if k not in ("bool", ANY):
                    raise ExprError(f"'{op}' joins conditions, not values")
            return "bool"
        if op in COMPARISONS:
            if ANY in (lk, rk):
                return "bool"
            if isinstance(lk, tuple) and isinstance(rk, tuple):
                if lk[1] != rk[1]:
                    raise ExprError(f"cannot compare {dims_name(lk[1])} with {dims_name(rk[1])}")
            elif lk != rk:
                raise ExprError(f"cannot compare {_kind_name(lk)} with {_kind_name(rk)}")
            elif op not in ("==", "!=") and lk != "str":
                raise ExprError(f"'{op}' compares numbers")
            return "bool"
        if ANY in (lk, rk):
            return ANY
        if not (isinstance(lk, tuple) and isinstance(rk, tuple)):
            raise ExprError(f"'{op}' needs numbers, not {_kind_name(lk if not isinstance(lk, tuple) else rk)}")
        if op in "+-":
            if lk[1] != rk[1]:
                raise ExprError(f"cannot {'add' if op == '+' else 'subtract'} {dims_name(rk[1])} "
                                f"{'to' if op == '+' else 'from'} {dims_name(lk[1])}")
            return lk
        return ("q", combine(lk[1], rk[1], 1 if op == "*" else -1))
    raise ExprError(f"cannot check {node!r}")


def _prop_kind(types: dict, type_name: str | None, prop: str):
    if type_name not in types:
        raise ExprError(f"unknown entity type '{type_name}'")
    kind = types[type_name].get(prop)
    if kind is None:
        raise ExprError(f"{type_name} has no property '{prop}'")
    return kind_of_property(kind)


def _kind_name(kind) -> str:
    if isinstance(kind, tuple):
        return dims_name(kind[1])
    return {"str": "text", "bool": "a condition"}.get(kind, kind)


def inputs(node, refs: set, aggs: list) -> None:
    """Collect what an expression reads: entity ids it names, and its aggregates."""
    if isinstance(node, Ref):
        refs.add(node.entity)
    elif isinstance(node, Agg):
        aggs.append(node)
        if node.where is not None:
            inputs(node.where, refs, aggs)
    elif isinstance(node, (Bin,)):
        inputs(node.left, refs, aggs)
        inputs(node.right, refs, aggs)
    elif isinstance(node, Unary):
        inputs(node.arg, refs, aggs)
    elif isinstance(node, Call):
        for a in node.args:
            inputs(a, refs, aggs)
