"""Stage 1: text -> typed AST (:class:`archdsl.syntax.Module`).

The cached LALR parser of :mod:`archdsl.grammar` reads the text; a
transformer turns its Lark trees into frozen dataclasses with spans.
"""

from __future__ import annotations

import inspect
import math

from lark import Token, Transformer_NonRecursive, v_args
from lark.exceptions import UnexpectedInput, VisitError

from archdsl import limits
from archdsl import syntax as ast
from archdsl.errors import ArchError, ArchSyntaxError, ArchTypeError, Span, combine
from archdsl.grammar import TooComplex, expression_parser, parser
from archdsl.syntax_errors import blank_line, recoverable, syntax_error

MAX_SYNTAX_ERRORS = 20


def _unquote(raw: str) -> str:
    if raw.startswith('"""'):
        return inspect.cleandoc(raw[3:-3])
    body = raw[1:-1]
    out, i = [], 0
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(escapes.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def int_literal(text: str, span: Span) -> int:
    """The value of the integer literal ``text`` (``1_000``), or E303 when it is beyond ``Limits.max_int``.

    Checked on the digits, before converting: Python refuses to convert more
    than 4,300 digits, and a literal that long is out of range anyway.
    """
    digits = text.replace("_", "").lstrip("0") or "0"
    most = limits.current().max_int
    # A number of d digits is at least 10**(d - 1); max_int has at most bit_length * log10(2) + 1 digits.
    if len(digits) - 1 <= most.bit_length() * math.log10(2):
        try:
            return int(digits)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows, under a raised max_int
            pass
    shown = digits if len(digits) <= 20 else f"{digits[:8]}…{digits[-8:]} ({len(digits):,} digits)"
    raise ArchTypeError(f"integer {shown} is out of range (|n| <= {limits.int_bound(most)})", span, code="E303")


class _ToAst(Transformer_NonRecursive):
    """Lark tree -> frozen dataclasses. Spans come from ``meta`` (propagated positions)."""

    def __init__(self, file: str, line_offset: int = 0, column_offset: int = 0) -> None:
        super().__init__()
        self.file = file
        self.line_offset = line_offset
        self.column_offset = column_offset
        self.errors: list[ArchError] = []  # found in strings the grammar cannot see into (names templates)

    def _span(self, meta_or_tok) -> Span:
        line = meta_or_tok.line
        col = meta_or_tok.column
        end_line = meta_or_tok.end_line
        end_col = meta_or_tok.end_column
        if line == 1:
            col += self.column_offset
        if end_line == 1:
            end_col += self.column_offset
        return Span(self.file, line + self.line_offset, col, end_line + self.line_offset, end_col)

    def _end(self, tok) -> tuple[int, int]:
        return tok.end_line + self.line_offset, tok.end_column

    # -- module level
    @v_args(meta=True)
    def start(self, meta, children):
        doc = None
        if children and isinstance(children[0], ast.Doc):
            doc = children[0].text
            children = children[1:]
        children = [c for c in children if c is not None]
        imports = tuple(c for c in children if isinstance(c, ast.Import))
        defs = tuple(c for c in children if isinstance(c, ast.Definition))
        return ast.Module(self.file, doc, imports, defs)

    def module_doc(self, children):
        (tok,) = children
        return ast.Doc(_unquote(tok), self._span(tok))

    @v_args(meta=True)
    def import_all(self, meta, children):
        span = Span(self.file, meta.line + self.line_offset, meta.column, *self._end(children[0]))
        return ast.Import(_unquote(children[0]), None, span)

    @v_args(meta=True)
    def import_some(self, meta, children):
        names = children[1:]
        span = Span(self.file, meta.line + self.line_offset, meta.column, *self._end(names[-1]))
        return ast.Import(
            _unquote(children[0]), tuple(str(t) for t in names), span, tuple(self._span(t) for t in names)
        )

    @v_args(meta=True)
    def definition(self, meta, children):
        kind, name, params, body = children
        doc = next((s.text for s in body if isinstance(s, ast.Doc)), None)
        return ast.Definition(
            kind=kind,
            name=str(name),
            params=params or (),
            body=tuple(s for s in body if not isinstance(s, ast.Doc)),
            doc=doc,
            span=self._span(meta),
            name_span=self._span(name),
        )

    def kind(self, children):
        return str(children[0])

    def params(self, children):
        return tuple(c for c in children if c is not None)

    @v_args(meta=True)
    def param(self, meta, children):
        name, default = children
        return ast.Param(str(name), default, self._span(meta))

    def body(self, children):
        return tuple(children)

    # -- statements
    @v_args(meta=True)
    def doc_stmt(self, meta, children):
        return ast.Doc(_unquote(children[0]), self._span(meta))

    @v_args(meta=True)
    def input_stmt(self, meta, children):
        return ast.InputDecl(str(children[0]), children[1], self._span(meta))

    @v_args(meta=True)
    def output_stmt(self, meta, children):
        return ast.OutputDecl(tuple(children), self._span(meta))

    @v_args(meta=True)
    def let_stmt(self, meta, children):
        return ast.Let(str(children[0]), children[1], self._span(meta))

    @v_args(meta=True)
    def skip_stmt(self, meta, children):
        label, src, dst, policy, alias = children
        return ast.Skip(
            label=label[0] if label else None,
            src=src,
            dst=dst,
            policy=str(policy) if policy is not None else None,
            alias=alias[0] if alias else None,
            span=self._span(meta),
            policy_span=self._span(policy) if policy is not None else None,
        )

    @v_args(meta=True)
    def if_stmt(self, meta, children):
        cond, then, *rest = children
        other = rest[0] if rest else None
        if isinstance(other, ast.If):
            other = (other,)
        return ast.If(cond, then, other or (), self._span(meta))

    @v_args(meta=True)
    def assert_stmt(self, meta, children):
        cond, message = children
        return ast.Assert(cond, _unquote(message) if message is not None else None, self._span(meta))

    @v_args(meta=True)
    def chain(self, meta, children):
        return ast.Chain(tuple(children), self._span(meta))

    @v_args(meta=True)
    def link(self, meta, children):
        label, target = children
        return ast.Link(
            label=label[0] if label else None,
            target=target,
            span=self._span(meta),
            label_span=label[1] if label else None,
        )

    @v_args(meta=True)
    def label(self, meta, children):
        return (children[0][0], children[0][1])

    @v_args(meta=True)
    def call(self, meta, children):
        name, args = children
        return ast.Call(str(name), args or (), self._span(meta), self._span(name))

    @v_args(meta=True)
    def bare(self, meta, children):
        path, span = children[0]
        return ast.Ref(path, span)

    @v_args(meta=True)
    def stage(self, meta, children):
        name, args, count, *opts = children
        first, connect, names, connect_span = (), None, None, None
        for key, value in opts:
            if key == "first":
                first = value
            elif key == "connect":
                connect, connect_span = value
            else:
                names = value
        call_span = self._span(name)
        call = ast.Call(str(name), args or (), call_span, call_span)
        return ast.Stage(call, count, first, connect, names, self._span(meta), connect_span)

    def stage_first(self, children):
        return ("first", children[0] or ())

    def stage_connect(self, children):
        return ("connect", (str(children[0]), self._span(children[0])))

    def stage_names(self, children):
        tok = children[0]
        span = self._span(tok)
        try:
            return ("names", parse_template(str(tok), span))
        except ArchError as err:  # reported with the file's other syntax errors
            self.errors.append(err)
            return ("names", ast.Template((), span))

    @v_args(meta=True)
    def ref(self, meta, children):
        (item,) = children
        if isinstance(item, Token):
            return ast.Ref("in", self._span(item))
        return ast.Ref(item[0], item[1])

    @v_args(meta=True)
    def path(self, meta, children):
        return (".".join(str(c) for c in children), self._span(meta))

    def args(self, children):
        return tuple(children)

    @v_args(meta=True)
    def arg(self, meta, children):
        return ast.Arg(None, children[0], self._span(meta))

    @v_args(meta=True)
    def kwarg(self, meta, children):
        return ast.Arg(str(children[0]), children[1], self._span(meta))

    # -- expressions
    @v_args(meta=True)
    def ternary(self, meta, children):
        then, cond, other = children
        return ast.Ternary(cond, then, other, self._span(meta))

    def _fold(self, meta, op, children):
        result = children[0]
        for operand in children[1:]:
            result = ast.Binary(op, result, operand, self._span(meta))
        return result

    @v_args(meta=True)
    def or_(self, meta, children):
        return self._fold(meta, "or", children)

    @v_args(meta=True)
    def and_(self, meta, children):
        return self._fold(meta, "and", children)

    @v_args(meta=True)
    def not_(self, meta, children):
        return ast.Unary("not", children[0], self._span(meta))

    @v_args(meta=True)
    def compare(self, meta, children):
        left, op, right = children
        return ast.Binary(str(op), left, right, self._span(meta))

    @v_args(meta=True)
    def binop(self, meta, children):
        result = children[0]
        for op, operand in zip(children[1::2], children[2::2], strict=False):
            span = Span(self.file, result.span.line, result.span.column, operand.span.end_line, operand.span.end_column)
            result = ast.Binary(str(op), result, operand, span)
        return result

    @v_args(meta=True)
    def neg(self, meta, children):
        return ast.Unary("-", children[0], self._span(meta))

    @v_args(meta=True)
    def pow_(self, meta, children):
        return ast.Binary("**", children[0], children[1], self._span(meta))

    @v_args(meta=True)
    def attr(self, meta, children):
        return ast.Attr(children[0], str(children[1]), self._span(meta))

    @v_args(meta=True)
    def index(self, meta, children):
        return ast.Index(children[0], children[1], self._span(meta))

    @v_args(meta=True)
    def funcall(self, meta, children):
        name, args = children
        return ast.FuncCall(str(name), args or (), self._span(meta))

    def int_(self, children):
        tok = children[0]
        span = self._span(tok)
        try:
            return ast.Literal(int_literal(tok, span), span)
        except ArchError as err:  # reported with the file's other errors
            self.errors.append(err)
            return ast.Literal(0, span)

    def float_(self, children):
        tok = children[0]
        return ast.Literal(float(tok.replace("_", "")), self._span(tok))

    def string(self, children):
        tok = children[0]
        return ast.Literal(_unquote(tok), self._span(tok))

    @v_args(meta=True)
    def true(self, meta, children):
        return ast.Literal(True, self._span(meta))

    @v_args(meta=True)
    def false(self, meta, children):
        return ast.Literal(False, self._span(meta))

    def name(self, children):
        tok = children[0]
        return ast.Name(str(tok), self._span(tok))

    def in_(self, children):
        return ast.InputRef(self._span(children[0]))

    @v_args(meta=True)
    def list_(self, meta, children):
        return ast.ListExpr(tuple(c for c in children if c is not None), self._span(meta))


def parse(text: str, file: str = "<string>") -> ast.Module:
    """Parse ``.arch`` source text into a :class:`~archdsl.syntax.Module`.

    Raises :class:`ArchSyntaxError` listing every syntax error found: after an
    error, the offending line is blanked and parsing resumes, unless that
    could only produce echoes of the first error.
    """
    errors: list[ArchError] = []
    current = text
    seen_lines: set[int] = set()
    while True:
        try:
            tree = parser().parse(current)
        except TooComplex as err:
            line, column = err.token.line, err.token.column
            span = Span(file, line, column, line, column + max(1, len(err.token)))
            hint = "split the expression with `let` bindings"
            errors.append(ArchSyntaxError(err.message, span, hint, code="E102"))
            break
        except UnexpectedInput as err:
            error = syntax_error(err, file, current)
            if error.line not in seen_lines:
                errors.append(error)
                seen_lines.add(error.line)
            retry = blank_line(current, error.line or 0) if recoverable(err, current) else None
            if retry is None or len(errors) >= MAX_SYNTAX_ERRORS or retry == current:
                break
            current = retry
            continue
        to_ast = _ToAst(file)
        try:
            module = to_ast.transform(tree)
        except VisitError as err:
            if isinstance(err.orig_exc, ArchError):
                raise err.orig_exc.with_sources({file: text}) from None
            raise  # pragma: no cover - a transformer bug
        if not errors and not to_ast.errors:
            return module
        errors.extend(to_ast.errors[: max(0, MAX_SYNTAX_ERRORS - len(errors))])
        break
    raise combine(errors, {file: text})


def parse_expression(text: str, file: str, line: int, column: int) -> ast.Expr:
    """Parse one expression that starts at ``file:line:column`` (a ``-p`` value on the command line)."""
    return _expression(text, file, [(line, column + k) for k in range(len(text) + 1)])


def _expression(text: str, file: str, places: list[tuple[int, int]]) -> ast.Expr:
    """Parse one expression whose character ``k`` is written at ``places[k]`` (line, column).

    ``places`` holds one place more: where the expression ends. Errors point
    at those places; spans inside the AST assume that the expression is
    written in one piece from ``places[0]`` on (true unless it holds an escape
    sequence, such as ``\\"`` in a string literal of a names template).
    """
    try:
        tree = expression_parser().parse(text)
    except UnexpectedInput as err:
        error = syntax_error(err, file, text)
        span = error.span
        assert span is not None
        line_start = sum(len(row) + 1 for row in text.split("\n")[: span.line - 1])
        offset = min(line_start + span.column - 1, len(text))
        width = span.end_column - span.column if span.end_line == span.line else 1
        message = error.message
        if message == "unexpected end of file":  # of the expression, not of the file
            message, offset, width = "the expression ends too early", len(text.rstrip()), 1
        line, column = places[offset]
        raise ArchSyntaxError(message, Span(file, line, column, line, column + max(1, width)), error.hint) from None
    line, column = places[0]
    to_ast = _ToAst(file, line - 1, column - 1)
    expr = to_ast.transform(tree)
    if to_ast.errors:
        raise to_ast.errors[0]
    return expr


def _string_places(raw: str, span: Span) -> tuple[str, list[tuple[int, int]]]:
    """The value of the string literal ``raw`` written at ``span``, and where each of its characters is written.

    The list holds one place more: where the closing quote is.
    """
    places, line, column = [], span.line, span.column
    for ch in raw:
        places.append((line, column))
        line, column = (line + 1, 1) if ch == "\n" else (line, column + 1)
    value = _unquote(raw)
    if not raw.startswith('"""'):
        out, i = [], 1
        while i < len(raw) - 1:
            out.append(places[i])
            i += 2 if raw[i] == "\\" else 1
        return value, out + [places[-1]]
    # A docstring-like literal loses indentation: find each character of its value in order.
    out, i = [], 3
    for ch in value:
        while i < len(raw) - 3 and raw[i] != ch and not (ch == " " and raw[i] == "\t"):
            i += 1
        out.append(places[min(i, len(raw) - 3)])
        i += 1
    return value, out + [places[len(raw) - 3]]


def _closing_brace(value: str, start: int) -> int | None:
    """Where the ``}`` that closes the ``{`` at ``start`` is; braces nest, and string literals are skipped."""
    depth, i = 0, start
    while i < len(value):
        ch = value[i]
        if ch == '"':
            close = value.find('"', i + 1)
            while close > 0 and value[close - 1] == "\\":
                close = value.find('"', close + 1)
            if close < 0:
                return None
            i = close
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def parse_template(raw: str, span: Span) -> ast.Template:
    """Parse the names template ``raw``, a string literal as written at ``span``, into text and expressions.

    ``{expr}`` holds an expression and ``{{``/``}}`` a literal brace. Raises
    :class:`ArchSyntaxError` pointing into the string: E319 for an unclosed
    ``{``, a lone ``}`` or an empty ``{}``, E101 for an expression that does
    not parse.
    """
    value, places = _string_places(raw, span)

    def error(message: str, start: int, end: int, hint: str) -> ArchSyntaxError:
        (line, column), (end_line, end_column) = places[start], places[end]
        return ArchSyntaxError(message, Span(span.file, line, column, end_line, end_column), hint, code="E319")

    parts: list[str | ast.Expr] = []
    text: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch in "{}" and value.startswith(ch * 2, i):
            text.append(ch)
            i += 2
            continue
        if ch == "}":
            raise error("a `}` without its `{` in the names template", i, i + 1, "write `}}` for a literal `}`")
        if ch != "{":
            text.append(ch)
            i += 1
            continue
        close = _closing_brace(value, i)
        if close is None:
            hint = "close it with `}`, or write `{{` for a literal `{`"
            raise error("unclosed `{` in the names template", i, i + 1, hint)
        if not value[i + 1 : close].strip():
            raise error("empty `{}` in the names template", i, close + 1, "put an expression inside, e.g. `{i}`")
        if text:
            parts.append("".join(text))
            text = []
        parts.append(_expression(value[i + 1 : close], span.file, places[i + 1 : close + 1]))
        i = close + 1
    if text:
        parts.append("".join(text))
    return ast.Template(tuple(parts), span)
