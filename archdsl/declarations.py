"""Declarations of a network or block: its parameters, its inputs and its learned tensors.

A network's parameters (``network resnet(depth = 50)``) take their defaults
or the values given when it is built (``-p depth=101``); an override must be
of its default's kind and its errors point at ``-p NAME``.

``input ids: [T], dtype=int, high=V`` declares a network input: its shape
without the batch, and for token ids an integer type and the bound their
values stay below. ``param class_token: [1, 1, D], init=zeros`` declares a
learned tensor that is no layer's weight: a class token, a position
embedding, a layer scale. It is stored with exactly the declared shape, at
its path in the ``state_dict``, and is used like a node.

A mixin of :class:`archdsl.elaborate.Elaborator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archdsl import limits
from archdsl import syntax as ast
from archdsl.binding import Signature, bind
from archdsl.errors import ArchError, ArchNameError, ArchTypeError, Label, Span, did_you_mean, override_span
from archdsl.expr import FAILED, FailedValue, NeedsShape, Scope, evaluate, from_python, show, type_name
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
    """The elaborator's handling of a network's parameters and of ``input`` and ``param`` statements."""

    def _bind_network_params(self, definition: ast.Definition, overrides: Mapping[str, Any], scope: Scope) -> None:
        known = [p.name for p in definition.params]  # in source order, for the hint
        for name in overrides:
            if name not in known:
                hint = did_you_mean(name, known) or (
                    "its parameters are " + ", ".join(f"`{k}`" for k in known) if known else "it takes no parameters"
                )
                self.errors.append(
                    ArchNameError(
                        f"network `{definition.name}` has no parameter `{name}`",
                        definition.name_span,
                        hint,
                        code="E208",
                    )
                )
        for param in definition.params:
            if param.name in overrides:
                try:
                    scope.values[param.name] = _override(param, overrides[param.name], scope)
                except ArchError as err:
                    self.errors.append(err)
                    scope.values[param.name] = FAILED
            elif param.default is not None:
                try:
                    scope.values[param.name] = evaluate(param.default, scope)
                except ArchError as err:
                    self.errors.append(err)
                    scope.values[param.name] = FAILED
                except FailedValue:
                    scope.values[param.name] = FAILED
            else:
                scope.values[param.name] = FAILED
                self.errors.append(
                    ArchNameError(
                        f"network `{definition.name}` needs a value for parameter `{param.name}`",
                        param.span,
                        f"give a default (`{param.name} = ...`) or pass it as an override",
                        code="E209",
                    )
                )

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


def _override(param: ast.Param, given: Any, scope: Scope) -> Any:
    """The value an override gives ``param``: a value of the language, of the same kind as the parameter's default.

    Its errors point at the override (``-p NAME``), with a note at the parameter.
    """
    span = override_span(param.name)
    defined = (Label(param.span, f"the parameter `{param.name}` is defined"),)
    try:
        value = from_python(given, span)
    except ArchError as err:
        raise type(err)(err.message, span, err.hint, code=err.code, labels=defined) from None
    if param.default is None:
        return value
    try:
        default = evaluate(param.default, scope)
    except (ArchError, FailedValue, NeedsShape, RecursionError):
        return value  # the override replaces a default that does not evaluate: nothing to compare with
    want = _kind(default)
    if want is not None and _kind(value) != want:
        raise ArchTypeError(
            f"override `{param.name}` must be {want}, like its default `{show(default)}`, "
            f"got {type_name(value)} `{show(value)}`",
            span,
            f"give {want}, e.g. `-p {param.name}={show(default)}`",
            code="E309",
            labels=defined,
        )
    return value


def _kind(value: Any) -> str | None:
    """What kind of value a parameter takes, judged by its default: ints and floats are both numbers."""
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, tuple):
        return "a list"
    return None
