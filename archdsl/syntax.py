"""The typed AST: frozen dataclasses, each carrying the span that produced it.

Nothing past :mod:`archdsl.parse` sees a Lark tree; everything sees these.
"""

from __future__ import annotations

from dataclasses import dataclass

from archdsl.errors import Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Literal:
    """An int, float, bool or string literal."""

    value: int | float | bool | str
    span: Span


@dataclass(frozen=True)
class Name:
    """A parameter, a ``let`` variable or the repeat index ``i``."""

    name: str
    span: Span


@dataclass(frozen=True)
class InputRef:
    """The keyword ``in``: the block's input (its shape, in expressions)."""

    span: Span


@dataclass(frozen=True)
class Attr:
    """``obj.name``, e.g. ``in.channels``."""

    obj: Expr
    name: str
    span: Span


@dataclass(frozen=True)
class Index:
    """``obj[index]``."""

    obj: Expr
    index: Expr
    span: Span


@dataclass(frozen=True)
class ListExpr:
    """``[a, b, c]``."""

    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Unary:
    """``-x`` or ``not x``."""

    op: str
    operand: Expr
    span: Span


@dataclass(frozen=True)
class Binary:
    """``left op right`` for arithmetic, comparison and boolean operators."""

    op: str
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Ternary:
    """``then if cond else other``."""

    cond: Expr
    then: Expr
    other: Expr
    span: Span


@dataclass(frozen=True)
class FuncCall:
    """A call of a built-in function in an expression: ``floor(c * 0.5)``."""

    func: str
    args: tuple[Arg, ...]
    span: Span


Expr = Literal | Name | InputRef | Attr | Index | ListExpr | Unary | Binary | Ternary | FuncCall


@dataclass(frozen=True)
class Arg:
    """A positional (``name is None``) or keyword argument."""

    name: str | None
    value: Expr
    span: Span


# ----------------------------------------------------------------- statements


@dataclass(frozen=True)
class Ref:
    """A reference to a node of the enclosing scope (``in`` or a dotted path, maybe computed: see :data:`Path`)."""

    path: Path
    span: Span


@dataclass(frozen=True)
class Call:
    """``callee(args)``: an op or a block applied once."""

    callee: str
    args: tuple[Arg, ...]
    span: Span
    callee_span: Span


@dataclass(frozen=True)
class Template:
    """Text with computed parts, in order: a names template ``"denselayer{i + 1}"`` (the expressions
    between braces), or a path with computed segments ``block.(e + 1)``.

    ``span`` is the whole string literal or path; each expression has its own span inside it.
    """

    parts: tuple[str | Expr, ...]
    span: Span


# A module path as written: its text (``layer1.0``), or a Template when a segment is computed.
Path = str | Template


@dataclass(frozen=True)
class Stage:
    """``stage callee(args) x count, first(...), connect=..., names="..."``."""

    call: Call
    count: Expr
    first: tuple[Arg, ...]
    connect: str | None
    names: Template | None
    span: Span
    connect_span: Span | None = None


@dataclass(frozen=True)
class Link:
    """One element of a chain: an optionally labelled call, stage or reference."""

    label: Path | None
    target: Call | Stage | Ref
    span: Span
    label_span: Span | None = None


@dataclass(frozen=True)
class Chain:
    """``a -> b -> c``."""

    links: tuple[Link, ...]
    span: Span


@dataclass(frozen=True)
class Skip:
    """``skip src -> dst via policy as name``: sum dst with a shortcut of src."""

    label: Path | None
    src: Ref
    dst: Ref
    policy: str | None
    alias: Path | None
    span: Span
    policy_span: Span | None = None


@dataclass(frozen=True)
class InputDecl:
    """``input name: [c, h, w]``, or with options: ``input ids: [T], dtype=int, high=V``."""

    name: str
    shape: Expr
    span: Span
    options: tuple[Arg, ...] = ()


@dataclass(frozen=True)
class ParamDecl:
    """``param path: [dims], init=normal(std=0.02)``: a learned tensor that is no layer's weight."""

    path: Path
    shape: Expr
    options: tuple[Arg, ...]
    span: Span
    path_span: Span


@dataclass(frozen=True)
class OutputDecl:
    """``output a, b``, or ``output a, aux when training``: the outputs in training mode only."""

    refs: tuple[Ref, ...]
    span: Span
    training: bool = False


@dataclass(frozen=True)
class Let:
    """``let name = expr``."""

    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Doc:
    """A docstring statement."""

    text: str
    span: Span


@dataclass(frozen=True)
class If:
    """``if cond { ... } else { ... }``: structure chosen by parameters (never by shapes)."""

    cond: Expr
    then: tuple[Statement, ...]
    other: tuple[Statement, ...]
    span: Span


@dataclass(frozen=True)
class Assert:
    """``assert cond, "message"``: a check on parameters with the author's own message."""

    cond: Expr
    message: str | None
    span: Span


Statement = Chain | Skip | InputDecl | ParamDecl | OutputDecl | Let | Doc | If | Assert

# ---------------------------------------------------------------- definitions


@dataclass(frozen=True)
class Param:
    """A parameter of a block or network, with an optional default."""

    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class Definition:
    """A ``block`` or ``network`` definition."""

    kind: str
    name: str
    params: tuple[Param, ...]
    body: tuple[Statement, ...]
    doc: str | None
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Import:
    """``import "file.arch"`` (names is None) or ``from "file.arch" import a, b``."""

    path: str
    names: tuple[str, ...] | None
    span: Span
    name_spans: tuple[Span, ...] = ()


@dataclass(frozen=True)
class Module:
    """One parsed ``.arch`` file."""

    file: str
    doc: str | None
    imports: tuple[Import, ...]
    definitions: tuple[Definition, ...]
