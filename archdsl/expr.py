"""Expression values, scopes and evaluation.

Values are plain Python ints, floats, bools, strings and tuples (lists).
A list that holds lists is a :class:`ListValue`, a tuple that knows its
size, so that every list is bounded (``Limits.max_value_size``) at the cost
of its own length, however much structure it shares.
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
from archdsl.errors import ArchLimitError, ArchNameError, ArchTypeError, Span, did_you_mean

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


class ListValue(tuple):
    """A list value that holds lists, with its :func:`value_size` worked out once, when it was made."""

    size: int


def value_size(value: Value) -> int:
    """The elements of a list value, nested lists' elements included (one shared twice counts twice); else 0."""
    if isinstance(value, ListValue):
        return value.size
    if isinstance(value, tuple):  # a list of scalars (lists of lists are ListValues)
        return len(value) + sum(value_size(item) for item in value if isinstance(item, tuple))
    return 0


def make_list(items: tuple[Value, ...], span: Span | None) -> tuple[Value, ...]:
    """The list value of ``items``; E303 at ``span`` when it would hold more than ``Limits.max_value_size`` elements.

    The size is counted from the items' own sizes, so a list built from a
    list built from ... costs its own length, not the length written out.
    """
    nested = [item for item in items if isinstance(item, tuple)]
    if not nested:
        size = len(items)
    else:
        size = len(items) + sum(value_size(item) for item in nested)
    if size > (most := limits.current().max_value_size):
        raise ArchTypeError(
            f"this list would hold {size:,} elements, more than the limit of {most:,}",
            span,
            "nested lists count every element, each time a list appears; "
            "raise archdsl.Limits(max_value_size=...) if this is intended",
            code="E303",
        )
    if not nested:
        return tuple(items)
    value = ListValue(items)
    value.size = size
    return value


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


def _check_int(value: Value, span: Span | None) -> Value:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > (most := limits.current().max_int):
        raise ArchTypeError(
            f"integer {show(value)} is out of range (|n| <= {limits.int_bound(most)})", span, code="E303"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ArchTypeError("arithmetic produced an infinite or undefined number", span, code="E303")
    return value


SHOW_LIMIT = 200  # characters of a value in a message or a diagram; the rest is cut to `…`


def show(value: Value, limit: int = SHOW_LIMIT) -> str:
    """A value as the language writes it, cut to ``limit`` characters and `…`.

    Written piece by piece, stopping at the limit, so that it costs the same
    for a list of a hundred thousand elements (or nested too deeply for
    recursion) as for a short one.
    """
    parts: list[str] = []
    length = 0
    pending: list[tuple[bool, Any]] = [(False, value)]  # (is literal text, what)
    while pending:
        if length > limit:
            return "".join(parts)[:limit] + "…"
        is_text, item = pending.pop()
        if is_text:
            text = item
        elif isinstance(item, tuple):
            pending.append((True, "]"))
            # Past `limit` items the text is cut anyway: each takes a character at least.
            for index in range(min(len(item), limit + 1) - 1, -1, -1):
                pending.append((False, item[index]))
                if index:
                    pending.append((True, ", "))
            text = "["
        else:
            text = _show_scalar(item)
        parts.append(text)
        length += len(text)
    shown = "".join(parts)
    return shown if len(shown) <= limit else shown[:limit] + "…"


def _show_scalar(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value[:SHOW_LIMIT]}"' if len(value) <= SHOW_LIMIT else f'"{value[:SHOW_LIMIT]}…'
    if isinstance(value, NodeValue):  # the node as written: an id, or a reference not resolved yet
        name = value.node if isinstance(value.node, str) else getattr(value.node, "path", None)
        return name if isinstance(name, str) else "<node>"
    if isinstance(value, int) and value.bit_length() > 200:  # more than 60 digits: only their ends are readable
        sign = "-" if value < 0 else ""
        if value.bit_length() > 14_000:  # past Python's 4,300-digit limit on converting to text
            return f"{sign}<an integer of about {int(value.bit_length() * math.log10(2)) + 1:,} digits>"
        digits = str(abs(value))
        return f"{sign}{digits[:10]}…{digits[-10:]} ({len(digits):,} digits)"
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
    "make_divisible": (2, 3, lambda v, divisor, min_value=None: make_divisible(v, divisor, min_value)),
}
# Functions of a list: len(xs), sum(xs), and index(xs, value), the position of a value (a variant's row).
LIST_FUNCTIONS = ("len", "sum", "index")


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """``v`` rounded to a multiple of ``divisor``, never below ``min_value`` nor more than 10% below ``v``.

    torchvision's ``_make_divisible`` (from the MobileNet reference code), which sets channel counts under
    width multipliers in MobileNetV2/V3 and EfficientNet.
    """
    if divisor <= 0:
        raise ValueError("the divisor must be positive")
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def from_python(value: Any, span: Span | None) -> Value:
    """A Python value given as an override (``num_classes=10``, ``blocks=[2, 2]``), as a language value.

    Raises :class:`ArchTypeError` at ``span``: E309 for a type the language
    has no values of, or a list that holds itself; E303 for a number, string
    or list beyond the limits. Shared lists are converted once each, so a
    list shared many times costs its own length.
    """
    converted: dict[int, Value] = {}
    inside: set[int] = set()

    def convert(item: Any) -> Value:
        if isinstance(item, bool):
            return item
        if isinstance(item, int):
            return _check_int(item, span)
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ArchTypeError(f"{item!r} is not a finite number", span, code="E303")
            return item
        if isinstance(item, str):
            if len(item) > (most := limits.current().max_string):
                raise ArchTypeError(f"this string is longer than {most:,} characters", span, code="E303")
            return item
        if not isinstance(item, (list, tuple)):
            raise ArchTypeError(
                f"an override must be an int, float, bool, string or list, got {type(item).__name__}", span, code="E309"
            )
        key = id(item)
        if key in converted:
            return converted[key]
        if key in inside:
            raise ArchTypeError("this list holds itself", span, code="E309")
        inside.add(key)
        result = make_list(tuple(convert(v) for v in item), span)
        inside.discard(key)
        converted[key] = result
        return result

    try:
        return convert(value)
    except RecursionError:
        raise ArchLimitError("this value nests too deeply to process", span, code="E323") from None


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
        return make_list(tuple(evaluate(item, scope) for item in expr.items), expr.span)
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
    if expr.func in LIST_FUNCTIONS:
        return _list_call(expr, scope)
    if expr.func not in FUNCTIONS:
        known = [*FUNCTIONS, *LIST_FUNCTIONS]
        hint = did_you_mean(expr.func, known) or "functions: " + ", ".join(known)
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


def _list_call(expr: ast.FuncCall, scope: Scope) -> Value:
    """``len(xs)``, ``sum(xs)`` and ``index(xs, value)``."""
    arity = 2 if expr.func == "index" else 1
    if len(expr.args) != arity or any(a.name is not None for a in expr.args):
        wants = "a list and a value" if arity == 2 else "one list"
        raise ArchTypeError(f"`{expr.func}` takes {wants}", expr.span, code="E308")
    value = evaluate(expr.args[0].value, scope)
    if not isinstance(value, tuple):
        raise ArchTypeError(
            f"`{expr.func}` takes a list, got {type_name(value)} `{show(value)}`", expr.args[0].span, code="E304"
        )
    if expr.func == "index":
        wanted = evaluate(expr.args[1].value, scope)
        for position, item in enumerate(value):
            if type(item) is type(wanted) and item == wanted:
                return position
        hint = did_you_mean(wanted, [v for v in value if isinstance(v, str)]) if isinstance(wanted, str) else None
        raise ArchTypeError(
            f"{show(wanted)} is not one of {show(value)}", expr.args[1].span, hint or "give one of them", code="E306"
        )
    if expr.func == "sum":
        return _check_int(sum(_number(item, expr.args[0].span, "`sum`") for item in value), expr.span)
    return len(value)


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
    "ListValue",
    "NeedsShape",
    "NodeValue",
    "Scope",
    "Shape",
    "evaluate",
    "from_python",
    "make_list",
    "show",
    "try_evaluate",
    "type_name",
    "value_size",
]
