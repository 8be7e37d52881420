"""Declarations of a network or block: its inputs and its learned parameters.

``input ids: [T], dtype=int, high=V`` declares a network input: its shape
without the batch, and for token ids an integer type and the bound their
values stay below. ``param class_token: [1, 1, D], init=zeros`` declares a
learned tensor that is no layer's weight: a class token, a position
embedding, a layer scale. It is stored with exactly the declared shape, at
its path in the ``state_dict``, and is used like a node.

A mixin of :class:`archdsl.elaborate.Elaborator`.
"""

from __future__ import annotations

from archdsl import limits
from archdsl import syntax as ast
from archdsl.binding import Signature, bind
from archdsl.errors import ArchNameError, ArchTypeError, Span, did_you_mean
from archdsl.expr import Scope, evaluate, show, type_name
from archdsl.frames import Frame

DTYPES = ("float", "int")

# init kind -> its parameters and their defaults (None: required), as torch.nn.init takes them
INITS: dict[str, tuple[tuple[str, float | None], ...]] = {
    "zeros": (),
    "ones": (),
    "constant": (("value", None),),
    "normal": (("std", 1.0), ("mean", 0.0)),
    "trunc_normal": (("std", 1.0), ("mean", 0.0), ("a", -2.0), ("b", 2.0)),
    "uniform": (("low", 0.0), ("high", 1.0)),
}
INIT_USAGE = (
    "zeros, ones, constant(value), normal(std=1, mean=0), "
    "trunc_normal(std=1, mean=0, a=-2, b=2), uniform(low=0, high=1)"
)


class Declarations:
    """The elaborator's handling of ``input`` and ``param`` statements."""

    def _input(self, stmt: ast.InputDecl, definition: ast.Definition, frame: Frame, scope: Scope) -> str:
        if definition.kind != "network":
            raise ArchNameError(
                "a block cannot declare inputs",
                stmt.span,
                "a block's input is `in`; declare inputs in the network",
                code="E213",
            )
        shape = self._shape(stmt.shape, scope, "an input shape")
        options = _options("input", ("dtype", "high"), stmt.options, stmt.span)
        dtype = _dtype(options["dtype"]) if "dtype" in options else "float"
        high = None
        if "high" in options:
            high = evaluate(options["high"].value, scope)
            if isinstance(high, bool) or not isinstance(high, int) or high < 1:
                raise ArchTypeError(
                    f"`high` is the bound token ids stay below, an int of at least 1, got {show(high)}",
                    options["high"].value.span,
                    code="E301",
                )
            if dtype != "int":
                raise ArchTypeError(
                    "`high` bounds integer inputs", options["high"].span, "add `dtype=int` before it", code="E301"
                )
        elif dtype == "int":
            raise ArchTypeError(
                f"the integer input `{stmt.name}` needs `high=`, the bound its values stay below",
                stmt.span,
                f"e.g. `input {stmt.name}: {show(shape)}, dtype=int, high=vocab` (the embedding's rows)",
                code="E315",
            )
        args = {"shape": shape, "dtype": dtype, "high": high} if dtype == "int" else {"shape": shape}
        node = self._add_node(frame, stmt.name, stmt.span, op="input", args=args)
        frame.names[stmt.name] = node
        return node

    def _param(self, stmt: ast.ParamDecl, frame: Frame, scope: Scope) -> None:
        path = self._path_text(stmt.path, scope)
        shape = self._shape(stmt.shape, scope, "a parameter's shape")
        options = _options("param", ("init",), stmt.options, stmt.span)
        init = _init(options["init"].value, scope) if "init" in options else ("zeros", ())
        node = self._add_node(
            frame, path, stmt.span, op="param", args={"shape": shape, "init": init}, label_span=stmt.path_span
        )
        frame.names[path] = node

    def _shape(self, expr: ast.Expr, scope: Scope, what: str) -> tuple[int, ...]:
        shape = self._concrete(expr, scope, what)
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)
        most = limits.current().max_rank
        if (
            not isinstance(shape, tuple)
            or not 1 <= len(shape) <= most
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
        ):
            raise ArchTypeError(
                f"{what} is a list of 1 to {most} ints without the batch ([F], [T, D], [C, H, W], ...), "
                f"got {show(shape)}",
                expr.span,
                code="E310",
            )
        if any(v < 1 for v in shape):
            raise ArchTypeError(f"sizes in {what} must be positive, got {show(shape)}", expr.span, code="E311")
        return shape


def _options(statement: str, known: tuple[str, ...], given: tuple[ast.Arg, ...], span: Span) -> dict[str, ast.Arg]:
    usage = f"`{statement}` takes " + ", ".join(f"`{k}=`" for k in known)
    signature = Signature(f"`{statement}`", known, frozenset(), "option", "needs", usage)
    return bind(signature, given, span)


def _word(expr: ast.Expr) -> str | None:
    """A bare word (``int``) or a string (``"int"``) as the option's text."""
    if isinstance(expr, ast.Name):
        return expr.name
    if isinstance(expr, ast.Literal) and isinstance(expr.value, str):
        return expr.value
    return None


def _dtype(arg: ast.Arg) -> str:
    word = _word(arg.value)
    if word not in DTYPES:
        hint = (did_you_mean(word, DTYPES) if word else None) or "`dtype=float` (the default) or `dtype=int`"
        raise ArchTypeError(
            f"an input's `dtype` is `float` or `int`, got `{word or '...'}`", arg.value.span, hint, code="E301"
        )
    return word


def _init(expr: ast.Expr, scope: Scope) -> tuple[str, tuple[tuple[str, float], ...]]:
    """``zeros`` or ``normal(std=0.02)``: the init's kind and its arguments (name, value), checked."""
    if isinstance(expr, ast.FuncCall):
        kind, args, span = expr.func, expr.args, expr.span
    else:
        kind, args, span = _word(expr), (), expr.span
    if kind not in INITS:
        hint = (did_you_mean(kind, list(INITS)) if kind else None) or f"inits: {INIT_USAGE}"
        raise ArchNameError(f"unknown init `{kind or '...'}`", span, hint, code="E231")
    params = INITS[kind]
    usage = f"{kind}(" + ", ".join(n if d is None else f"{n}={d:g}" for n, d in params) + ")"
    signature = Signature(
        f"init `{kind}`",
        tuple(n for n, _ in params),
        frozenset(n for n, d in params if d is None),
        "argument",
        "needs",
        usage,
    )
    values: dict[str, float] = {name: default for name, default in params if default is not None}
    for name, arg in bind(signature, args, span).items():
        value = evaluate(arg.value, scope)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ArchTypeError(
                f"`{name}` of init `{kind}` must be a number, got {type_name(value)} `{show(value)}`",
                arg.span,
                code="E301",
            )
        values[name] = float(value)
    if kind in ("normal", "trunc_normal") and values["std"] < 0:
        raise ArchTypeError(f"`std` must be at least 0, got {values['std']:g}", span, code="E301")
    if kind == "trunc_normal" and values["a"] >= values["b"]:
        raise ArchTypeError(f"`a` must be below `b`, got a={values['a']:g}, b={values['b']:g}", span, code="E301")
    return kind, tuple(values.items())
