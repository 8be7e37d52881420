"""The canonical formatter: ``.arch`` source -> the same program in canonical form.

:func:`format_source` is the one entry point (``archdsl fmt`` uses it). It
works on the concrete syntax tree of the real grammar (every token, with its
position and its text as written) plus the comments the lexer reports, so it
changes layout only: the formatted file parses to the same AST (modulo
spans) and builds the same graph. Formatting is idempotent.

Canonical style
---------------

* Indentation is 4 spaces per level; one statement per line; no trailing
  whitespace; the file ends with exactly one newline (an empty program
  formats to the empty string). Line endings become ``\\n``.
* Spacing: ``name: op(args)``; ``a -> b`` with single spaces around every
  arrow; a space after every comma and none before; keyword arguments as
  ``k=v`` (also ``first(stride=2)``, ``connect=dense``, ``names="..."``) but
  parameters as ``name = default``; single spaces around binary operators
  (``+ - * / // % ** == != < <= > >= and or``), ``if``/``else`` of a ternary,
  ``=`` of ``let``; none after a unary ``-``/``+``, inside brackets, or around
  ``.``; ``input x: [3, 32, 32]``; ``skip a -> b via p as q``.
  The one exception: an attribute of an integer literal is written ``1 .5``
  (``1.5`` would read as a float).
* Trailing commas are dropped (except in a list broken one element per line,
  where every element ends with one), and so are empty parentheses after a
  definition's name (``network n() {`` -> ``network n {``). Everything else
  is kept as written: parentheses in expressions, a bare op with or without
  ``()``, the spelling of numbers (``1_000``, ``1e-3``) and strings, and
  docstrings, verbatim (their inner lines are not re-indented).
* Brackets, parameter lists, ``skip`` statements and backslash continuations
  are joined onto one line; only list literals break (below).
* Chains keep the line breaks their author made between links, always
  written with the arrow starting the continuation line, indented one level
  more than the statement (a break written after an arrow moves before it).
  A chain line longer than :data:`WIDTH` (128) columns, not counting its
  trailing comment, is broken before an arrow, greedily: as many links per
  line as fit. Breaks are never removed, and nothing else is broken but
  lists: a long parameter list or ``assert`` stays on one line. (128 keeps
  the zoo's one-line conv/bn/relu/pool groups of the VGG-BN files, 122
  columns, intact; at 120 those four files would change, at 100 also AlexNet
  and GoogLeNet.)
* List literals ``[...]`` stay on one line when they fit. A list breaks, one
  element per line, when it reaches past :data:`WIDTH` (a comma right after
  it included), or when a comment stays inside it (below). Its elements are
  indented one level more than the line of its ``[``, each followed by a
  comma, the last one too; its ``]`` starts a line indented like the ``[``'s,
  and what followed the ``]`` stays after it. Outer lists break first, and the
  leftmost first: an element that is itself a list stays on one line when it
  fits, so a table keeps one row per line. Otherwise a list written over
  several lines is joined: how a list is laid out depends only on its width
  and its comments, never on the line breaks as written. Blank lines between
  the elements of a broken list are kept, at most one in a row. In a chain,
  the next link continues on the line of a broken list's ``]`` when it fits
  there (a list broken only for a comment counts as written on one line).
* Bodies: ``block name(params) {``, ``if cond {``, ``} else {`` and
  ``} else if cond {`` on one line; an empty body is ``{`` and ``}`` on two
  lines. Blank lines between statements and comments are kept, at most one in
  a row; none right after an opening ``{`` or ``[``, before a closing ``}``
  or ``]``, or at the start of the file. Top-level definitions, with the
  comment lines directly above them, are separated from everything else by
  exactly one blank line; elsewhere at the top level (module docstring, imports, free comments) blank
  lines are kept, at most one in a row.
* Comments are kept, in order, with their text as written (trailing
  whitespace removed). A comment after code stays after the code of that
  line, two spaces before its ``#``; a comment on a line of its own stays on
  a line of its own, indented like the statement that follows it (like the
  body's statements or a list's elements when a ``}`` or ``]`` follows it).
  A comment stays inside a list when it comes right after the list's ``[``
  or one of its commas, or right before its ``]``: the list is broken, and
  the comment stays after its element (after the ``[``) or on a line of its
  own. A comment that cannot stay in place because its line is joined
  (inside other brackets or a parameter list, in the middle of a list's
  element, a chain broken after an arrow) moves to a line of its own just
  above the statement it was in, with the comments of that statement that
  came before it, so that the order of all comments never changes (a comment
  moved for that reason does not hold its list broken). (A comment line
  between a line and its ``->`` continuation line ends the statement: that
  text does not parse, and the formatter never writes it.)
* Multi-line (triple-quoted) strings are copied verbatim, line breaks
  included: their inner lines keep their indentation, trailing whitespace
  and ``\\r\\n``, since the string's value depends on them.

:func:`check` says whether a text is already canonical.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from functools import cache
from itertools import accumulate, pairwise

from lark import Lark, Token, Tree

from archdsl.errors import ArchError, ArchSyntaxError, Span, combine
from archdsl.grammar import build_parser
from archdsl.parse import parse, parse_template

__all__ = ["WIDTH", "check", "format_source"]

WIDTH = 128
"""Chain lines longer than this many columns are broken before an arrow; lists reaching past it, between elements."""

_INDENT = "    "
_CLOSING = ("RPAR", "RSQB")


class _CommentSink:
    """The lexer callback: collects comment tokens of the parse in progress."""

    def __init__(self) -> None:
        self.tokens: list[Token] = []

    def __call__(self, token: Token) -> Token:
        self.tokens.append(token)
        return token


_SINK = _CommentSink()
_LOCK = threading.Lock()


@cache
def _cst_parser() -> Lark:
    """The parser of :mod:`archdsl.grammar`, keeping every token (a concrete syntax tree) and reporting comments."""
    return build_parser(keep_all_tokens=True, lexer_callbacks={"COMMENT": _SINK})


def _parse_cst(text: str) -> tuple[Tree, list[Token]]:
    with _LOCK:
        _SINK.tokens = []
        tree = _cst_parser().parse(text)
        comments, _SINK.tokens = _SINK.tokens, []
    return tree, comments


def _template_errors(tree: Tree, file: str) -> list[ArchError]:
    """The errors of the names templates, strings whose inside the grammar does not see."""
    errors: list[ArchError] = []
    for node in tree.find_data("stage_names"):
        tok = node.children[-1]
        try:
            parse_template(str(tok), Span(file, tok.line, tok.column, tok.end_line, tok.end_column))
        except ArchSyntaxError as err:
            errors.append(err)
    return errors


# ------------------------------------------------------------------ tokens


def _is(node: object, kind: str) -> bool:
    return isinstance(node, Token) and node.type == kind


def _start(tok: Token) -> int:
    """Where a token's text begins (an arrow's token also holds the line breaks before it)."""
    return tok.end_pos - 2 if tok.type == "_ARROW" else tok.start_pos


def _start_line(tok: Token) -> int:
    return tok.end_line if tok.type == "_ARROW" else tok.line


def _tokens(node: Tree | Token | None) -> list[Token]:
    """The real tokens of a subtree, in source order (no line breaks); iterative."""
    out: list[Token] = []
    stack: list[object] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Token):
            if item.type != "_NL":
                out.append(item)
        elif isinstance(item, Tree):
            stack.extend(reversed(item.children))
    return out


def _children(node: Tree) -> list[Tree | Token]:
    return [c for c in node.children if c is not None and not _is(c, "_NL")]


# ------------------------------------------------------------- expressions


def _join(parts: list[tuple[object, str]], tight: bool) -> str:
    """Join rendered children: commas and colons glue left, a trailing comma is dropped.

    ``tight``: no space between other parts (calls, brackets, paths); else one space.
    """
    out: list[str] = []
    space = False
    for i, (node, text) in enumerate(parts):
        if _is(node, "COMMA"):
            following = parts[i + 1][0] if i + 1 < len(parts) else None
            if following is None or isinstance(following, Token) and following.type in _CLOSING:
                continue
            out.append(",")
            space = True
            continue
        if _is(node, "COLON"):
            out.append(":")
            space = True
            continue
        if out and (space or not tight):
            out.append(" ")
        space = False
        out.append(text)
    return "".join(out)


def _tight(node: Tree, parts: list[tuple[object, str]]) -> str:
    return _join(parts, tight=True)


def _spaced(node: Tree, parts: list[tuple[object, str]]) -> str:
    return _join(parts, tight=False)


def _attr(node: Tree, parts: list[tuple[object, str]]) -> str:
    obj = parts[0][0]
    if isinstance(obj, Tree) and obj.data == "int_":
        # `1 .5` is the attribute `5` of the integer 1; `1.5` would be a float.
        return parts[0][1] + " " + _join(parts[1:], tight=True)
    return _join(parts, tight=True)


def _stage(node: Tree, parts: list[tuple[object, str]]) -> str:
    """``stage callee(args) x count, opt, ...``: the argument list is tight, the rest spaced."""
    out = ""
    i = 0
    while i < len(parts):
        item, text = parts[i]
        if _is(item, "LPAR"):
            close = next(j for j in range(i, len(parts)) if _is(parts[j][0], "RPAR"))
            out += _join(parts[i : close + 1], tight=True)
            i = close + 1
            continue
        if _is(item, "COMMA"):
            out += ","
        else:
            out += (" " if out else "") + text
        i += 1
    return out


_RULES = {
    "path": _tight,
    "computed": _tight,
    "label": _tight,
    "call": _tight,
    "funcall": _tight,
    "args": _tight,
    "arg": _tight,
    "kwarg": _tight,
    "decl_opt": _tight,
    "params": _tight,
    "list_": _tight,
    "index": _tight,
    "atom": _tight,
    "unary": _tight,
    "neg": _tight,
    "attr": _attr,
    "stage": _stage,
    "stage_first": _tight,
    "stage_connect": _tight,
    "stage_names": _tight,
    "bare": _tight,
    "ref": _tight,
}


def _token_text(tok: Token) -> str:
    return "->" if tok.type == "_ARROW" else str(tok)


def _render(node: Tree | Token) -> str:
    """The canonical one-line text of a subtree (no statement bodies); iterative, any depth."""
    if isinstance(node, Token):
        return _token_text(node)
    done: dict[int, str] = {}
    stack: list[tuple[Tree, bool]] = [(node, False)]
    while stack:
        tree, ready = stack.pop()
        if not ready:
            stack.append((tree, True))
            stack.extend((c, False) for c in tree.children if isinstance(c, Tree))
            continue
        parts = [(c, done.pop(id(c)) if isinstance(c, Tree) else _token_text(c)) for c in _children(tree)]
        done[id(tree)] = _RULES.get(tree.data, _spaced)(tree, parts)
    return done[id(node)]


# ------------------------------------------------------------------- lines


@dataclass
class _Line:
    """One output line (a multi-line string token keeps its line breaks inside ``text``)."""

    indent: int
    text: str
    tokens: list[Token]
    cont: bool = False  # a chain's continuation line: `-> ...`
    closing: bool = False  # starts with the `}` of a body
    opens: bool = False  # ends with the `{` of a body
    definition: bool = False  # the header of a top-level definition
    blank: bool = False  # a blank line comes before it
    trailing: str | None = None  # its trailing comment
    inner: bool = False  # an element or closing line of a list broken one element per line


@dataclass
class _Comment:
    token: Token
    text: str
    slot: tuple[str, int] = ("end", 0)  # ("before" | "after", line index) or ("end", 0)
    hoisted: bool = False


@dataclass
class _Layout:
    """Lays out a concrete syntax tree as :class:`_Line` objects, in source order."""

    width: int
    lists: dict[int, Tree]  # the non-empty list literals, by their `[` (see _list_opens)
    lines: list[_Line] = field(default_factory=list)

    def add(self, indent: int, text: str, tokens: list[Token], **flags: bool) -> None:
        self.lines.append(_Line(indent, text, tokens, **flags))

    def module(self, tree: Tree) -> None:
        for child in _children(tree):
            if not isinstance(child, Tree):
                continue
            if child.data == "definition":
                self.definition(child)
            else:  # module_doc, import_all, import_some
                self.add(0, _render(child), _tokens(child))

    def definition(self, tree: Tree) -> None:
        kind, name, *rest = _children(tree)
        params = rest[0] if isinstance(rest[0], Tree) and rest[0].data == "params" else None
        lbrace, body, rbrace = rest[-3:]
        params_text = ""
        if params is not None and any(isinstance(c, Tree) for c in params.children):
            params_text = _render(params)
        header = f"{_render(kind)} {name}{params_text} {{"
        self.add(0, header, [*_tokens(kind), name, *_tokens(params), lbrace], opens=True, definition=True)
        self.body(body, 1)
        self.add(0, "}", [rbrace], closing=True)

    def body(self, body: Tree, indent: int) -> None:
        """Statements of a body; ``if`` bodies are expanded with an explicit stack (no recursion)."""
        pending: list[tuple] = [("stmt", s, indent) for s in reversed(_children(body))]
        while pending:
            action, *args = pending.pop()
            if action == "line":
                self.lines.append(args[0])
            elif action == "if":
                pending.extend(reversed(self.if_actions(*args)))
            else:
                stmt, depth = args
                if stmt.data == "if_stmt":
                    pending.extend(reversed(self.if_actions(stmt, depth, "", [])))
                elif stmt.data == "chain":
                    self.chain(stmt, depth)
                else:
                    self.add(depth, _render(stmt), _tokens(stmt))

    def if_actions(self, stmt: Tree, depth: int, prefix: str, prefix_tokens: list[Token]) -> list[tuple]:
        """``[prefix] if cond {``, its body, and what follows (an ``else`` part or ``}``)."""
        if_kw, cond, lbrace, body, rbrace, *other = _children(stmt)
        header = _Line(
            depth,
            f"{prefix}if {_render(cond)} {{",
            [*prefix_tokens, if_kw, *_tokens(cond), lbrace],
            closing=bool(prefix),
            opens=True,
        )
        actions: list[tuple] = [("line", header)]
        actions += [("stmt", s, depth + 1) for s in _children(body)]
        if not other:
            actions.append(("line", _Line(depth, "}", [rbrace], closing=True)))
        elif isinstance(other[1], Tree):  # else if
            actions.append(("if", other[1], depth, "} else ", [rbrace, other[0]]))
        else:
            else_kw, lbrace2, body2, rbrace2 = other
            actions.append(("line", _Line(depth, "} else {", [rbrace, else_kw, lbrace2], closing=True, opens=True)))
            actions += [("stmt", s, depth + 1) for s in _children(body2)]
            actions.append(("line", _Line(depth, "}", [rbrace2], closing=True)))
        return actions

    def chain(self, stmt: Tree, depth: int) -> None:
        """A chain: the author's breaks between links kept, lines over the width broken greedily."""
        items = _children(stmt)
        links = [(_render(link), _tokens(link)) for link in items[0::2]]
        arrows = items[1::2]
        text, tokens = links[0]
        first = True
        for arrow, (link_text, link_tokens) in zip(arrows, links[1:], strict=True):
            broken = _start_line(link_tokens[0]) > tokens[-1].end_line
            indent = depth if first else depth + 1
            if broken or self.end_column(indent, text, tokens) + 4 + len(link_text) > self.width:
                self.add(indent, text, tokens, cont=not first)
                text, tokens, first = "-> " + link_text, [arrow, *link_tokens], False
            else:
                text, tokens = f"{text} -> {link_text}", [*tokens, arrow, *link_tokens]
        self.add(depth if first else depth + 1, text, tokens, cont=not first)

    def end_column(self, indent: int, text: str, tokens: list[Token]) -> int:
        """Where a line ends, once the lists that do not fit on it are broken (on the line of the last ``]``)."""
        end = len(_INDENT) * indent + len(text)
        if end <= self.width:
            return end
        line = _Line(indent, text, tokens)
        last = _break_lists(line, _line_lists(line, self.lists), set(), self.width)[-1]
        return len(_INDENT) * last.indent + len(last.text)


# ---------------------------------------------------------------- comments


class _Index:
    """Real tokens and comments by position: which line holds a token, what precedes a position."""

    def __init__(self, lines: list[_Line], comments: list[Token]) -> None:
        entries = []
        for number, line in enumerate(lines):
            last = len(line.tokens) - 1
            for k, tok in enumerate(line.tokens):
                entries.append((_start(tok), tok, number, k == 0, k == last))
        entries.sort(key=lambda e: e[0])
        self.entries = entries
        self.starts = [e[0] for e in entries]
        spans = [(e[0], e[1].end_pos) for e in entries] + [(c.start_pos, c.end_pos) for c in comments]
        spans.sort()
        self.span_starts = [s for s, _ in spans]
        self.span_ends = [e for _, e in spans]

    def around(self, pos: int) -> tuple[tuple | None, tuple | None]:
        """The token entries just before and just after ``pos``."""
        i = bisect.bisect_left(self.starts, pos)
        before = self.entries[i - 1] if i > 0 else None
        after = self.entries[i] if i < len(self.entries) else None
        return before, after

    def blank_before(self, text: str, pos: int) -> bool:
        """Whether a blank line separates ``pos`` from the token or comment before it."""
        i = bisect.bisect_left(self.span_starts, pos)
        if i == 0:
            return False
        return text.count("\n", self.span_ends[i - 1], pos) >= 2


def _hoist(lines: list[_Line], number: int) -> tuple[str, int]:
    """The slot above the statement that holds line ``number``."""
    while lines[number].cont or lines[number].inner:
        number -= 1
    return ("before", number)


def _place(lines: list[_Line], comment_tokens: list[Token], index: _Index) -> list[_Comment]:
    comments = [_Comment(tok, str(tok).rstrip()) for tok in comment_tokens]
    taken: set[int] = set()
    for comment in comments:
        before, after = index.around(comment.token.start_pos)
        if before is not None and before[1].end_line == comment.token.line:  # after code on its line
            _, tok, number, is_first, is_last = before
            slot = None
            if is_last:
                slot = ("after", number)
            elif is_first and tok.type == "_ARROW" and lines[number].cont:
                slot = ("after", number - 1)  # `a -> # c` broken before the arrow: stays after `a`
            if slot is None or slot[1] in taken:
                comment.slot, comment.hoisted = _hoist(lines, number), True
            else:
                comment.slot = slot
                taken.add(slot[1])
        elif after is None:
            comment.slot = ("end", 0)
        else:
            _, tok, number, is_first, _ = after
            if is_first and not lines[number].cont:
                comment.slot = ("before", number)
            else:
                comment.slot, comment.hoisted = _hoist(lines, number), True

    def key(c: _Comment) -> tuple[float, int]:
        kind, number = c.slot
        return (float("inf"), 0) if kind == "end" else (number, int(kind == "after"))

    # Hoisting must not reorder comments: a comment placed after a later one joins it.
    for i in range(len(comments) - 2, -1, -1):
        here, later = comments[i], comments[i + 1]
        if key(here) > key(later):
            kind, number = later.slot
            here.slot = later.slot if kind == "before" else _hoist(lines, number)
            here.hoisted = True
    return comments


# ------------------------------------------------------------------- lists


@dataclass
class _List:
    """A non-empty list literal on one line: token indices into that line's tokens."""

    open: int
    close: int
    commas: list[int]
    parent: int | None  # the list around it on the same line (its number), if any


_Piece = tuple[int, int, _Line]


def _list_opens(tree: Tree) -> dict[int, Tree]:
    """The non-empty list literals of a tree, by the ``id`` of their ``[`` token."""
    found = {}
    for node in tree.iter_subtrees():
        if node.data == "list_" and any(isinstance(c, Tree) for c in node.children):
            found[id(node.children[0])] = node
    return found


def _line_lists(line: _Line, opens: dict[int, Tree]) -> list[_List]:
    """The non-empty list literals of one line, in order, each with the list around it."""
    if not any(id(tok) in opens for tok in line.tokens):
        return []
    position = {id(tok): k for k, tok in enumerate(line.tokens)}
    found: list[_List] = []
    around: list[int] = []
    for k, tok in enumerate(line.tokens):
        node = opens.get(id(tok))
        if node is None:
            continue
        while around and found[around[-1]].close < k:
            around.pop()
        commas = [position[id(c)] for c in node.children if _is(c, "COMMA")]
        found.append(_List(k, position[id(node.children[-1])], commas, around[-1] if around else None))
        around.append(len(found) - 1)
    return found


def _offsets(text: str, tokens: list[Token]) -> list[int | None]:
    """Where each token starts in the one-line ``text`` (None: not written, as a dropped trailing comma)."""
    out: list[int | None] = []
    cursor = 0
    for tok in tokens:
        while text.startswith(" ", cursor):
            cursor += 1
        word = _token_text(tok)
        if text.startswith(word, cursor):
            out.append(cursor)
            cursor += len(word)
        else:
            out.append(None)
    return out


def _split(line: _Line, lists: list[_List], broken: set[int], offsets: list[int | None]) -> list[_Piece]:
    """``line`` with the ``broken`` lists one element per line: (first token, its offset in ``line.text``, line)."""
    tokens = line.tokens
    heads, ends, closes = set(), set(), set()
    depth_change = [0] * (len(tokens) + 1)
    for k in broken:
        item = lists[k]
        heads.add(item.open + 1)
        ends.update(c + 1 for c in item.commas)
        ends.add(item.close)
        closes.add(item.close)
        depth_change[item.open + 1] += 1
        depth_change[item.close] -= 1
    depth = list(accumulate(depth_change))
    bounds = [0, *sorted(heads | ends), len(tokens)]
    out: list[_Piece] = []
    for i, j in pairwise(bounds):
        written = [k for k in range(i, j) if offsets[k] is not None]
        start, last = offsets[written[0]], written[-1]
        text = line.text[start : offsets[last] + len(_token_text(tokens[last]))]
        if j in ends and not (tokens[j - 1].type == "COMMA" and offsets[j - 1] is not None):
            text += ","  # every element of a broken list ends with a comma
        first = i == 0
        piece = _Line(
            line.indent + depth[i],
            text,
            tokens[i:j],
            cont=line.cont and first,
            closing=line.closing and first or i in closes,
            opens=j in heads or j == len(tokens) and line.opens,
            definition=line.definition and first,
            inner=not first,
        )
        out.append((i, start, piece))
    return out


def _break_lists(line: _Line, lists: list[_List], forced: set[int], width: int) -> list[_Line]:
    """``line`` with its lists broken one element per line: the ``forced`` ones and those that do not fit.

    Outer lists break first: a list breaks when it ends past ``width`` (a comma
    right after it included) while every list around it is broken already; the
    leftmost such list of a line breaks, then the new lines are looked at again.
    """
    broken = set(forced)
    for k in forced:
        parent = lists[k].parent
        while parent is not None and parent not in broken:
            broken.add(parent)
            parent = lists[parent].parent
    offsets = _offsets(line.text, line.tokens)
    while True:
        pieces = _split(line, lists, broken, offsets)
        firsts = [i for i, _, _ in pieces]
        chosen: dict[int, int] = {}
        for k, item in enumerate(lists):
            if k in broken or item.parent is not None and item.parent not in broken:
                continue
            number = bisect.bisect_right(firsts, item.open) - 1
            if number in chosen:
                continue
            _, start, piece = pieces[number]
            end = offsets[item.close] + 1 - start
            end += piece.text[end : end + 1] == ","
            if len(_INDENT) * piece.indent + end > width:
                chosen[number] = k
        if not chosen:
            return [piece for _, _, piece in pieces]
        broken.update(chosen.values())


def _lay_out_lists(
    logical: list[_Line], comment_tokens: list[Token], opens: dict[int, Tree], width: int
) -> tuple[list[_Line], list[_Comment], _Index]:
    """The lines with their lists broken where needed, and the comments placed on them.

    A list breaks when it does not fit, or when a comment stays inside it: a
    comment right after its ``[`` or one of its commas, or right before its
    ``]``. Such a comment that still has to move above its statement (to keep
    the comments in order) does not hold its list open: the lists are laid out
    again without it, so that formatting the result changes nothing.
    """
    per_line = [_line_lists(line, opens) for line in logical]
    if not any(per_line):
        index = _Index(logical, comment_tokens)
        return logical, _place(logical, comment_tokens, index), index
    after_token: dict[int, tuple[int, int]] = {}  # `[` and commas: a comment right after stays in the list
    before_token: dict[int, tuple[int, int]] = {}  # `]`: a comment right before stays in the list
    for number, (line, lists) in enumerate(zip(logical, per_line, strict=True)):
        for k, item in enumerate(lists):
            for t in (item.open, *item.commas):
                after_token[id(line.tokens[t])] = (number, k)
            before_token[id(line.tokens[item.close])] = (number, k)
    source_index = _Index(logical, comment_tokens)
    holds: dict[int, tuple[int, int]] = {}  # comment token id -> the list it stays in
    for tok in comment_tokens:
        before, after = source_index.around(tok.start_pos)
        if before is not None and id(before[1]) in after_token:
            holds[id(tok)] = after_token[id(before[1])]
        elif after is not None and id(after[1]) in before_token:
            holds[id(tok)] = before_token[id(after[1])]
    released: set[int] = set()
    while True:
        forced: dict[int, set[int]] = {}
        for tok_id, (number, k) in holds.items():
            if tok_id not in released:
                forced.setdefault(number, set()).add(k)
        lines: list[_Line] = []
        for number, (line, lists) in enumerate(zip(logical, per_line, strict=True)):
            lines.extend(_break_lists(line, lists, forced.get(number, set()), width) if lists else [line])
        index = _Index(lines, comment_tokens)
        comments = _place(lines, comment_tokens, index)
        moved = {id(c.token) for c in comments if c.hoisted and id(c.token) in holds} - released
        if not moved:
            return lines, comments, index
        released |= moved


# ------------------------------------------------------------------ output


@dataclass
class _Entry:
    indent: int
    text: str
    blank: bool
    trailing: str | None = None
    line: _Line | None = None


def _entries(text: str, lines: list[_Line], comments: list[_Comment], index: _Index) -> list[_Entry]:
    above: dict[int, list[_Comment]] = {}
    at_end: list[_Comment] = []
    for comment in comments:
        kind, number = comment.slot
        if kind == "after":
            lines[number].trailing = comment.text
        elif kind == "before":
            above.setdefault(number, []).append(comment)
        else:
            at_end.append(comment)
    for line in lines:
        line.blank = not line.cont and not line.closing and index.blank_before(text, _start(line.tokens[0]))

    entries: list[_Entry] = []
    for number, line in enumerate(lines):
        group = above.get(number, [])
        indent = line.indent + (1 if line.closing else 0)
        hoisted_seen = False
        for comment in group:
            if comment.hoisted:
                blank = line.blank if not hoisted_seen else False
                hoisted_seen = True
            else:
                blank = index.blank_before(text, comment.token.start_pos)
            entries.append(_Entry(indent, comment.text, blank))
        if hoisted_seen:
            line.blank = False
        entries.append(_Entry(line.indent, line.text, line.blank, line.trailing, line))
    for comment in at_end:
        entries.append(_Entry(0, comment.text, index.blank_before(text, comment.token.start_pos)))

    # Blank-line rules that do not depend on the source.
    for i, entry in enumerate(entries):
        previous = entries[i - 1].line if i > 0 else None
        if i == 0 or (previous is not None and previous.opens) or (entry.line is not None and entry.line.closing):
            entry.blank = False
        elif previous is not None and previous.closing and previous.indent == 0 and not previous.inner:
            entry.blank = True  # after a top-level definition
        if entry.line is not None and entry.line.definition:
            j = i
            while j > 0 and entries[j - 1].line is None and entries[j - 1].indent == 0 and not entries[j].blank:
                j -= 1  # the comment lines directly above belong to the definition
            entries[j].blank = j > 0
    return entries


def format_source(text: str, file: str = "<string>", *, width: int = WIDTH) -> str:
    """The canonical form of the ``.arch`` source ``text`` (the style is described in :mod:`archdsl.fmt`).

    Only layout changes: comments and docstrings are kept, in order, and the
    result parses to the same program (same AST modulo spans, same graph).
    Formatting is idempotent: ``format_source(format_source(t)) ==
    format_source(t)``. ``file`` names the source in error messages;
    ``width`` is the column limit past which chains and lists are broken.

    Raises :class:`~archdsl.errors.ArchSyntaxError` (with every syntax error
    found) when ``text`` does not parse.

    >>> print(format_source('network n(w=8){input x:[3,8,8]\\nc:conv( w,k = 3)->relu # act\\n}'), end="")
    network n(w = 8) {
        input x: [3, 8, 8]
        c: conv(w, k=3) -> relu  # act
    }
    """
    try:
        tree, comment_tokens = _parse_cst(text)
    except Exception:  # the same grammar and postlexer as archdsl.parse: let it report the errors
        parse(text, file)
        raise ArchSyntaxError("the text does not parse", None, code="E101") from None  # pragma: no cover
    if errors := _template_errors(tree, file):
        raise combine(errors, {file: text})
    opens = _list_opens(tree)
    layout = _Layout(width, opens)
    layout.module(tree)
    lines, comments, index = _lay_out_lists(layout.lines, comment_tokens, opens, width)
    out: list[str] = []
    for entry in _entries(text, lines, comments, index):
        if entry.blank and out:
            out.append("")
        line = _INDENT * entry.indent + entry.text
        out.append(line + "  " + entry.trailing if entry.trailing else line)
    return "\n".join(out) + "\n" if out else ""


def check(text: str, file: str = "<string>") -> bool:
    """Whether ``text`` is already in canonical form (raises ArchSyntaxError like :func:`format_source`)."""
    return format_source(text, file) == text
