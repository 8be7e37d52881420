"""Stage 1: text -> typed AST (:class:`archdsl.syntax.Module`).

The LALR parser of :mod:`archdsl.grammar` reads the text and builds frozen
dataclasses with spans as it reduces (:class:`_Builder`): no Lark tree is
made, so none has to be walked again.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading

from lark import Lark, Token
from lark.exceptions import UnexpectedInput

from archdsl import limits
from archdsl import syntax as ast
from archdsl.errors import ArchError, ArchSyntaxError, ArchTypeError, Span, combine
from archdsl.grammar import TooComplex, build_expression_parser, build_parser
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


class _Piece:
    """What a grammar rule built, and the extent of the text it covers (its first to its last token).

    The extent includes punctuation that the value's own span may leave
    out: the parentheses around ``(a + b)``, which Lark calls its container.
    """

    __slots__ = ("value", "line", "column", "end_line", "end_column", "span")

    def __init__(self, value, first, last, span: Span | None = None) -> None:
        self.value = value
        self.line = first.line
        self.column = first.column
        self.end_line = last.end_line
        self.end_column = last.end_column
        self.span = span  # the Span of this extent, once made: a rule with this piece alone shares it


class _Empty:
    """What a grammar rule built from no text at all (an empty body): it has no extent."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value


def _ends(children) -> tuple:
    """The first and the last child that take up text (a token or a :class:`_Piece`), or ``(None, None)``."""
    if not children:
        return None, None
    first, last = children[0], children[-1]
    if first is None or first.__class__ is _Empty:
        first = next((c for c in children if c is not None and c.__class__ is not _Empty), None)
        if first is None:
            return None, None
    if last is None or last.__class__ is _Empty:
        last = next(c for c in reversed(children) if c is not None and c.__class__ is not _Empty)
    return first, last


def _values(children) -> list:
    """The values the sub-rules of a rule built, in order (tokens and absent optional parts left out)."""
    return [c.value for c in children if isinstance(c, (_Piece, _Empty))]


class _Builder:
    """Builds the typed AST while the LALR parser reduces, one method per grammar rule.

    The parser (:func:`_ast_parser`) keeps every token, so a rule's children
    are its tokens and what its sub-rules built (:class:`_Piece`), with
    ``None`` for each symbol of an absent ``[...]`` part; a rule's extent runs
    from its first child to its last, as Lark's ``propagate_positions`` would
    put it, without building a parse tree and walking it again.

    One builder serves one cached parser; the file, the offsets and the errors
    of the parse in progress are per thread (:meth:`begin`).
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def begin(self, file: str, line_offset: int = 0, column_offset: int = 0) -> list[ArchError]:
        """Set up for one parse; returns the list that gathers errors found inside strings and literals."""
        state = self._local
        state.where = (file, line_offset, column_offset)
        state.made = (None, None, None, None)  # the children, ends and span that _extent worked out last
        state.errors = []
        return state.errors

    # -- positions
    def _piece(self, value, children) -> _Piece | _Empty:
        made = self._local.made
        if made[0] is children:  # _extent has just worked this rule out
            return _Piece(value, made[1], made[2], made[3])
        if len(children) == 1 and children[0] is not None and children[0].__class__ is not _Empty:
            first = last = children[0]  # the common case, without a call
        else:
            first, last = _ends(children)
            if first is None:
                return _Empty(value)
        return _Piece(value, first, last, first.span if first is last and first.__class__ is _Piece else None)

    def _span(self, where) -> Span:
        """The span of a token or a piece; an expression's first line is written from its column offset on."""
        return self._placed(where.line, where.column, where.end_line, where.end_column)

    def _placed(self, line: int, column: int, end_line: int, end_column: int) -> Span:
        """A span of the text being parsed, moved to where that text stands in its file."""
        file, line_offset, column_offset = self._local.where
        if line == 1:
            column += column_offset
        if end_line == 1:
            end_column += column_offset
        return Span(file, line + line_offset, column, end_line + line_offset, end_column)

    def _extent(self, children) -> Span:
        """The span from the first child to the last (shared with that child when it is the only one)."""
        first, last = _ends(children)
        if first is last and first.__class__ is _Piece and first.span is not None:
            span = first.span
        else:
            span = self._placed(first.line, first.column, last.end_line, last.end_column)
        self._local.made = (children, first, last, span)
        return span

    # -- module level
    def start(self, children):
        values = _values(children)
        doc = values[0].text if values and isinstance(values[0], ast.Doc) else None
        imports = tuple(v for v in values if isinstance(v, ast.Import))
        defs = tuple(v for v in values if isinstance(v, ast.Definition))
        return ast.Module(self._local.where[0], doc, imports, defs)

    def module_doc(self, children):
        tok = children[0]
        return self._piece(ast.Doc(_unquote(tok), self._span(tok)), children)

    def import_all(self, children):
        keyword, tok = children[0], children[1]
        span = self._span(_Piece(None, keyword, tok))
        return self._piece(ast.Import(_unquote(tok), None, span), children)

    def import_some(self, children):
        keyword, tok = children[0], children[1]
        names = [c for c in children[3:] if isinstance(c, Token) and c.type == "NAME"]
        span = self._span(_Piece(None, keyword, names[-1]))
        spans = tuple(self._span(t) for t in names)
        return self._piece(ast.Import(_unquote(tok), tuple(str(t) for t in names), span, spans), children)

    def definition(self, children):
        kind, name, params, body = children[0].value, children[1], children[2], children[4].value
        doc = next((s.text for s in body if isinstance(s, ast.Doc)), None)
        value = ast.Definition(
            kind=kind,
            name=str(name),
            params=params.value if params is not None else (),
            body=tuple(s for s in body if not isinstance(s, ast.Doc)),
            doc=doc,
            span=self._extent(children),
            name_span=self._span(name),
        )
        return self._piece(value, children)

    def kind(self, children):
        return self._piece(str(children[0]), children)

    def params(self, children):
        return self._piece(tuple(_values(children)), children)

    def param(self, children):
        name, default = children[0], children[2]
        value = ast.Param(str(name), default.value if default is not None else None, self._extent(children))
        return self._piece(value, children)

    def body(self, children):
        return self._piece(tuple(_values(children)), children)

    # -- statements
    def doc_stmt(self, children):
        return self._piece(ast.Doc(_unquote(children[0]), self._extent(children)), children)

    def input_stmt(self, children):
        options = tuple(v for v in _values(children[4:]) if isinstance(v, ast.Arg))
        value = ast.InputDecl(str(children[1]), children[3].value, self._extent(children), options)
        return self._piece(value, children)

    def param_stmt(self, children):
        path, path_span = children[1].value
        options = tuple(v for v in _values(children[4:]) if isinstance(v, ast.Arg))
        value = ast.ParamDecl(path, children[3].value, options, self._extent(children), path_span)
        return self._piece(value, children)

    def decl_opt(self, children):
        return self._piece(ast.Arg(str(children[0]), children[2].value, self._extent(children)), children)

    def output_stmt(self, children):
        training = any(isinstance(c, Token) and c.type == "WHEN" for c in children)
        return self._piece(ast.OutputDecl(tuple(_values(children)), self._extent(children), training), children)

    def let_stmt(self, children):
        return self._piece(ast.Let(str(children[1]), children[3].value, self._extent(children)), children)

    def skip_stmt(self, children):
        label, src, dst, policy, alias = children[0], children[2], children[4], children[6], children[8]
        value = ast.Skip(
            label=label.value[0] if label is not None else None,
            src=src.value,
            dst=dst.value,
            policy=str(policy) if policy is not None else None,
            alias=alias.value[0] if alias is not None else None,
            span=self._extent(children),
            policy_span=self._span(policy) if policy is not None else None,
        )
        return self._piece(value, children)

    def if_stmt(self, children):
        cond, then, *rest = _values(children)
        other = rest[0] if rest else ()
        if isinstance(other, ast.If):
            other = (other,)
        return self._piece(ast.If(cond, then, other, self._extent(children)), children)

    def assert_stmt(self, children):
        message = children[3]
        value = ast.Assert(
            children[1].value, _unquote(message) if message is not None else None, self._extent(children)
        )
        return self._piece(value, children)

    def chain(self, children):
        return self._piece(ast.Chain(tuple(_values(children)), self._extent(children)), children)

    def link(self, children):
        label, target = children[0], children[1].value
        value = ast.Link(
            label=label.value[0] if label is not None else None,
            target=target,
            span=self._extent(children),
            label_span=label.value[1] if label is not None else None,
        )
        return self._piece(value, children)

    def label(self, children):
        return self._piece(children[0].value, children)

    def call(self, children):
        name, args = children[0], children[2]
        value = ast.Call(str(name), args.value if args is not None else (), self._extent(children), self._span(name))
        return self._piece(value, children)

    def bare(self, children):
        path, span = children[0].value
        return self._piece(ast.Ref(path, span), children)

    def stage(self, children):
        name = children[1]
        x = next(i for i, c in enumerate(children) if isinstance(c, Token) and c.type == "X")
        args = next((c.value for c in children[2:x] if isinstance(c, (_Piece, _Empty))), ())
        count, *opts = _values(children[x + 1 :])
        first, connect, names, connect_span = (), None, None, None
        for key, option in opts:
            if key == "first":
                first = option
            elif key == "connect":
                connect, connect_span = option
            else:
                names = option
        call_span = self._span(name)
        call = ast.Call(str(name), args, call_span, call_span)
        value = ast.Stage(call, count, first, connect, names, self._extent(children), connect_span)
        return self._piece(value, children)

    def stage_first(self, children):
        args = children[2]
        return self._piece(("first", args.value if args is not None else ()), children)

    def stage_connect(self, children):
        tok = children[2]
        return self._piece(("connect", (str(tok), self._span(tok))), children)

    def stage_names(self, children):
        tok = children[2]
        span = self._span(tok)
        try:
            template = parse_template(str(tok), span)
        except ArchError as err:  # reported with the file's other syntax errors
            self._local.errors.append(err)
            template = ast.Template((), span)
        return self._piece(("names", template), children)

    def ref(self, children):
        item = children[0]
        if isinstance(item, Token):
            return self._piece(ast.Ref("in", self._span(item)), children)
        path, span = item.value
        return self._piece(ast.Ref(path, span), children)

    def path(self, children):
        if len(children) == 1 and isinstance(children[0], Token):
            return self._piece((str(children[0]), self._extent(children)), children)
        parts: list[str | ast.Expr] = []
        for child in children:
            piece = child.value if isinstance(child, _Piece) else str(child)
            if isinstance(piece, str) and parts and isinstance(parts[-1], str):
                parts[-1] += piece
            else:
                parts.append(piece)
        span = self._extent(children)
        if len(parts) == 1 and isinstance(parts[0], str):  # no computed segment: the path is its text
            return self._piece((parts[0], span), children)
        return self._piece((ast.Template(tuple(parts), span), span), children)

    def computed(self, children):
        return self._piece(children[1].value, children)

    def args(self, children):
        return self._piece(tuple(_values(children)), children)

    def arg(self, children):
        return self._piece(ast.Arg(None, children[0].value, self._extent(children)), children)

    def kwarg(self, children):
        return self._piece(ast.Arg(str(children[0]), children[2].value, self._extent(children)), children)

    # -- expressions
    def ternary(self, children):
        then, cond, other = children[0].value, children[2].value, children[4].value
        return self._piece(ast.Ternary(cond, then, other, self._extent(children)), children)

    def _binary(self, op, children):
        value = ast.Binary(op, children[0].value, children[2].value, self._extent(children))
        return self._piece(value, children)

    def or_(self, children):
        return self._binary("or", children)

    def and_(self, children):
        return self._binary("and", children)

    def not_(self, children):
        return self._piece(ast.Unary("not", children[1].value, self._extent(children)), children)

    def compare(self, children):
        return self._binary(str(children[1]), children)

    def binop(self, children):
        left, right = children[0].value, children[2].value
        span = Span(self._local.where[0], left.span.line, left.span.column, right.span.end_line, right.span.end_column)
        return self._piece(ast.Binary(str(children[1]), left, right, span), children)

    def neg(self, children):
        return self._piece(ast.Unary("-", children[1].value, self._extent(children)), children)

    def unary(self, children):  # `+x`: x itself, written wider
        return self._piece(children[1].value, children)

    def atom(self, children):  # `(x)`: x itself, written wider
        return self._piece(children[1].value, children)

    def pow_(self, children):
        return self._binary("**", children)

    def attr(self, children):
        value = ast.Attr(children[0].value, str(children[2]), self._extent(children))
        return self._piece(value, children)

    def index(self, children):
        value = ast.Index(children[0].value, children[2].value, self._extent(children))
        return self._piece(value, children)

    def funcall(self, children):
        name, args = children[0], children[2]
        value = ast.FuncCall(str(name), args.value if args is not None else (), self._extent(children))
        return self._piece(value, children)

    def int_(self, children):
        tok = children[0]
        span = self._span(tok)
        try:
            value = int_literal(tok, span)
        except ArchError as err:  # reported with the file's other errors
            self._local.errors.append(err)
            value = 0
        return self._piece(ast.Literal(value, span), children)

    def float_(self, children):
        tok = children[0]
        return self._piece(ast.Literal(float(tok.replace("_", "")), self._span(tok)), children)

    def string(self, children):
        tok = children[0]
        return self._piece(ast.Literal(_unquote(tok), self._span(tok)), children)

    def true(self, children):
        return self._piece(ast.Literal(True, self._extent(children)), children)

    def false(self, children):
        return self._piece(ast.Literal(False, self._extent(children)), children)

    def name(self, children):
        tok = children[0]
        return self._piece(ast.Name(str(tok), self._span(tok)), children)

    def in_(self, children):
        return self._piece(ast.InputRef(self._span(children[0])), children)

    def list_(self, children):
        return self._piece(ast.ListExpr(tuple(_values(children)), self._extent(children)), children)


_FILE_BUILDER = _Builder()
_EXPRESSION_BUILDER = _Builder()


@functools.cache
def _ast_parser() -> Lark:
    """The parser of whole files, building the AST as it goes (built once)."""
    return build_parser(transformer=_FILE_BUILDER, keep_all_tokens=True, propagate_positions=False)


@functools.cache
def _ast_expression_parser() -> Lark:
    """The parser of one expression, building its AST as it goes (built once)."""
    return build_expression_parser(transformer=_EXPRESSION_BUILDER, keep_all_tokens=True, propagate_positions=False)


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
        found = _FILE_BUILDER.begin(file)
        try:
            module = _ast_parser().parse(current)
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
        if not errors and not found:
            return module
        errors.extend(found[: max(0, MAX_SYNTAX_ERRORS - len(errors))])
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
    line, column = places[0]
    found = _EXPRESSION_BUILDER.begin(file, line - 1, column - 1)
    try:
        piece = _ast_expression_parser().parse(text)
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
    if found:
        raise found[0]
    return piece.value


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
