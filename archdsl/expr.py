"""Expression values, scopes and evaluation.

Values are plain Python ints, floats, bools, strings and tuples (lists).
Shape reads (``in.channels``) need inferred shapes; before those exist an
evaluation that touches one raises :class:`NeedsShape`, and the caller keeps
the expression as a :class:`Deferred` value to evaluate later.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from archdsl import limits
from archdsl import syntax as ast
from archdsl.errors import ArchNameError, ArchTypeError, Span, did_you_mean

Value = Any  # int | float | bool | str | tuple[Value, ...] | NodeValue
Shape = tuple[int, ...]

SHAPE_ATTRS = ("channels", "height", "width", "features", "shape", "rank")


class NeedsShape(Exception):
    """Raised when an expression reads a shape that is not known yet."""


class FailedValue(Exception):
    """Raised when an expression reads a value whose own definition already failed.

    That failure was reported; whoever catches this stays silent, so one
    mistake gives one diagnostic.
    """


class _Failed:
    def __repr__(self) -> str:
        return "<failed>"


FAILED = _Failed()


@dataclass(frozen=True)
class NodeValue:
    """A graph node used as a value: only its shape attributes can be read."""

    node: object  # a NodeRef (see archdsl.frames); resolved through Scope.shape_of


@dataclass(frozen=True)
class Deferred:
    """An expression kept with its scope until shapes are known."""

    expr: ast.Expr
    scope: Scope


@dataclass
class Scope:
    """Names visible to expressions inside one block instance."""

    values: dict[str, Value]
    where: str  # "block basic" / "network resnet50", for messages
    node_lookup: Callable[[str], object | None] = lambda name: None
    input_ref: object | None = None
    shape_of: Callable[[object, Span], Shape] | None = None  # set once shapes exist

    def child(self, extra: Mapping[str, Value]) -> Scope:
        """The same scope with more values bound (a repeat index, a let)."""
        return Scope({**self.values, **extra}, self.where, self.node_lookup, self.input_ref, self.shape_of)

    def with_shapes(self, shape_of: Callable[[object, Span], Shape]) -> Scope:
        """The same scope, able to read inferred shapes."""
        return Scope(self.values, self.where, self.node_lookup, self.input_ref, shape_of)


def type_name(value: Value) -> str:
    """The language's name for a value's type."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, tuple):
        return "list"
    if isinstance(value, NodeValue):
        return "node"
    return type(value).__name__


def _number(value: Value, span: Span, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArchTypeError(f"{what} needs a number, got {type_name(value)} `{show(value)}`", span, code="E302")
    return value


def _check_int(value: Value, span: Span) -> Value:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > (most := limits.current().max_int):
        bound = f"2**{most.bit_length() - 1}" if most & (most - 1) == 0 else f"{most:,}"
        raise ArchTypeError(f"integer {value} is out of range (|n| <= {bound})", span, code="E303")
    if isinstance(value, float) and not math.isfinite(value):
        raise ArchTypeError("arithmetic produced an infinite or undefined number", span, code="E303")
    return value


def show(value: Value) -> str:
    """A value as the language writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, NodeValue):
        return "<node>"
    return repr(value)


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


FUNCTIONS: dict[str, tuple[int, int, Callable[..., Value]]] = {
    # name: (min args, max args, implementation)
    "floor": (1, 1, lambda x: math.floor(x)),
    "ceil": (1, 1, lambda x: math.ceil(x)),
    "round": (1, 1, lambda x: round(x)),
    "int": (1, 1, lambda x: int(x)),
    "float": (1, 1, lambda x: float(x)),
    "abs": (1, 1, lambda x: abs(x)),
    "min": (1, 64, lambda *xs: min(xs)),
    "max": (1, 64, lambda *xs: max(xs)),
}


def evaluate(expr: ast.Expr, scope: Scope) -> Value:
    """Evaluate an expression; raises ArchError subclasses with the culprit's span."""
    if isinstance(expr, ast.Literal):
        return _check_int(expr.value, expr.span)
    if isinstance(expr, ast.Name):
        return _lookup(expr, scope)
    if isinstance(expr, ast.InputRef):
        if scope.input_ref is None:
            raise ArchNameError(
                f"`in` has no meaning in {scope.where}: a network has named inputs", expr.span, code="E204"
            )
        return NodeValue(scope.input_ref)
    if isinstance(expr, ast.Attr):
        return _attribute(evaluate(expr.obj, scope), expr, scope)
    if isinstance(expr, ast.Index):
        return _index(evaluate(expr.obj, scope), evaluate(expr.index, scope), expr)
    if isinstance(expr, ast.ListExpr):
        return tuple(evaluate(item, scope) for item in expr.items)
    if isinstance(expr, ast.Unary):
        value = evaluate(expr.operand, scope)
        if expr.op == "not":
            return not _truth(value, expr.operand.span)
        return -_number(value, expr.operand.span, "`-`")
    if isinstance(expr, ast.Binary):
        return _binary(expr, scope)
    if isinstance(expr, ast.Ternary):
        cond = _truth(evaluate(expr.cond, scope), expr.cond.span)
        return evaluate(expr.then if cond else expr.other, scope)
    if isinstance(expr, ast.FuncCall):
        return _call(expr, scope)
    raise TypeError(f"unknown expression node {expr!r}")  # pragma: no cover


def _lookup(expr: ast.Name, scope: Scope) -> Value:
    if expr.name in scope.values:
        value = scope.values[expr.name]
        if value is FAILED:
            raise FailedValue(expr.name)
        if isinstance(value, Deferred):
            if scope.shape_of is None:
                raise NeedsShape(expr.name)
            return evaluate(value.expr, value.scope.with_shapes(scope.shape_of))
        return value
    node = scope.node_lookup(expr.name)
    if node is not None:
        return NodeValue(node)
    candidates = list(scope.values)
    hint = did_you_mean(expr.name, candidates)
    raise ArchNameError(f"unknown name `{expr.name}` in {scope.where}", expr.span, hint, code="E203")


def _attribute(value: Value, expr: ast.Attr, scope: Scope) -> Value:
    if not isinstance(value, NodeValue):
        raise ArchTypeError(
            f"{type_name(value)} `{show(value)}` has no attribute `{expr.name}`", expr.span, code="E304"
        )
    if expr.name not in SHAPE_ATTRS:
        hint = did_you_mean(expr.name, SHAPE_ATTRS) or "a node's shape is read as " + ", ".join(
            f"`.{a}`" for a in SHAPE_ATTRS
        )
        raise ArchNameError(f"unknown shape attribute `{expr.name}`", expr.span, hint, code="E205")
    if scope.shape_of is None:
        raise NeedsShape(expr.name)
    shape = scope.shape_of(value.node, expr.span)
    if expr.name == "shape":
        return tuple(shape)
    if expr.name == "rank":
        return len(shape)
    if expr.name == "features":
        return math.prod(shape)
    if expr.name == "channels":
        return shape[0]
    if len(shape) != 3:
        raise ArchTypeError(
            f"`.{expr.name}` needs a [C, H, W] shape, but this one is {list(shape)}", expr.span, code="E305"
        )
    return shape[1] if expr.name == "height" else shape[2]


def _index(value: Value, index: Value, expr: ast.Index) -> Value:
    if not isinstance(value, tuple):
        raise ArchTypeError(f"only lists can be indexed, not {type_name(value)}", expr.obj.span, code="E304")
    if isinstance(index, bool) or not isinstance(index, int):
        raise ArchTypeError(f"a list index must be an int, got {type_name(index)}", expr.index.span, code="E302")
    if not -len(value) <= index < len(value):
        raise ArchTypeError(
            f"index {index} is out of range for a list of length {len(value)}", expr.index.span, code="E306"
        )
    return value[index]


def _truth(value: Value, span: Span) -> bool:
    if not isinstance(value, bool):
        raise ArchTypeError(f"a condition must be a bool, got {type_name(value)} `{show(value)}`", span, code="E302")
    return value


def _binary(expr: ast.Binary, scope: Scope) -> Value:
    if expr.op in ("and", "or"):
        left = _truth(evaluate(expr.left, scope), expr.left.span)
        if (expr.op == "and" and not left) or (expr.op == "or" and left):
            return left
        return _truth(evaluate(expr.right, scope), expr.right.span)
    left = evaluate(expr.left, scope)
    right = evaluate(expr.right, scope)
    if expr.op in _COMPARE:
        if expr.op in ("==", "!="):
            return _COMPARE[expr.op](left, right)
        return _COMPARE[expr.op](
            _number(left, expr.left.span, f"`{expr.op}`"), _number(right, expr.right.span, f"`{expr.op}`")
        )
    if expr.op == "+" and isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > (most := limits.current().max_string):
            raise ArchTypeError(f"this string would be longer than {most:,} characters", expr.span, code="E303")
        return left + right
    a = _number(left, expr.left.span, f"`{expr.op}`")
    b = _number(right, expr.right.span, f"`{expr.op}`")
    if expr.op in ("/", "//", "%") and b == 0:
        raise ArchTypeError("division by zero", expr.right.span, code="E307")
    if expr.op == "**" and (abs(b) > 256 or (abs(a) > 1 and b > 64)):
        raise ArchTypeError(f"exponent {b} is too large", expr.right.span, code="E303")
    try:
        result = _ARITH[expr.op](a, b)
    except ZeroDivisionError:
        raise ArchTypeError(f"`{show(a)} {expr.op} {show(b)}` divides by zero", expr.span, code="E307") from None
    except OverflowError:
        raise ArchTypeError("arithmetic overflowed", expr.span, code="E303") from None
    if isinstance(result, complex):
        raise ArchTypeError(f"`{show(a)} {expr.op} {show(b)}` is not a real number", expr.span, code="E303")
    return _check_int(result, expr.span)


def _call(expr: ast.FuncCall, scope: Scope) -> Value:
    if expr.func not in FUNCTIONS:
        hint = did_you_mean(expr.func, FUNCTIONS) or "functions: " + ", ".join(FUNCTIONS)
        raise ArchNameError(f"unknown function `{expr.func}`", expr.span, hint, code="E206")
    low, high, fn = FUNCTIONS[expr.func]
    if any(a.name is not None for a in expr.args):
        raise ArchTypeError(f"`{expr.func}` takes no keyword arguments", expr.span, code="E308")
    if not low <= len(expr.args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise ArchTypeError(f"`{expr.func}` takes {want} argument(s), got {len(expr.args)}", expr.span, code="E308")
    values = [_number(evaluate(a.value, scope), a.span, f"`{expr.func}`") for a in expr.args]
    try:
        return _check_int(fn(*values), expr.span)
    except (OverflowError, ValueError) as err:
        raise ArchTypeError(f"`{expr.func}` failed: {err}", expr.span, code="E303") from None


def try_evaluate(expr: ast.Expr, scope: Scope) -> Value:
    """Evaluate now, or return a :class:`Deferred` if a shape is needed."""
    try:
        return evaluate(expr, scope)
    except NeedsShape:
        return Deferred(expr, scope)


__all__ = [
    "FAILED",
    "Deferred",
    "FailedValue",
    "NeedsShape",
    "NodeValue",
    "Scope",
    "Shape",
    "evaluate",
    "show",
    "try_evaluate",
    "type_name",
]
