"""Syntax errors: what the parser expected, where, and how to recover to find more of them.

Used by :func:`archdsl.parse.parse`: an error becomes a located
:class:`ArchSyntaxError`; after it, the offending line is blanked and
parsing resumes, unless only echoes of the first error could follow.
"""

from __future__ import annotations

import re

from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from archdsl.errors import ArchSyntaxError, Span
from archdsl.grammar import parser

_FRIENDLY = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "_NL": "a line break",
    "COMP_OP": "a comparison",
    "ADD_OP": "`+` or `-`",
    "MUL_OP": "`*`, `/`, `//` or `%`",
    "$END": "the end of the file",
}


def describe(terminal: str) -> str:
    """How a hint names a terminal of the grammar: `)`, a name, ..."""
    if terminal in _FRIENDLY:
        return _FRIENDLY[terminal]
    try:
        pattern = parser().get_terminal(terminal).pattern
    except KeyError:
        return terminal
    if pattern.type == "str":
        return f"`{pattern.value}`"
    return terminal.lower()


def _open_brackets(text: str, end: int) -> list[tuple[str, int]]:
    """Brackets still open at offset ``end`` (outside strings and comments), with their offsets."""
    stack: list[tuple[str, int]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    i = 0
    while i < end:
        ch = text[i]
        if ch == "#":
            newline = text.find("\n", i)
            i = end if newline < 0 else newline
            continue
        if ch == '"':
            quote = '"""' if text.startswith('"""', i) else '"'
            close = text.find(quote, i + len(quote))
            i = end if close < 0 else close + len(quote)
            continue
        if ch in "([{":
            stack.append((ch, i))
        elif ch in pairs and stack and stack[-1][0] == pairs[ch]:
            stack.pop()
        i += 1
    return stack


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _offset(err: UnexpectedInput, text: str) -> int:
    if isinstance(err, UnexpectedCharacters):
        return err.pos_in_stream
    token = getattr(err, "token", None)
    if token is None or token.type == "$END" or token.start_pos is None:
        return len(text)
    return token.start_pos


def syntax_error(err: UnexpectedInput, file: str, text: str) -> ArchSyntaxError:
    """The located error for a failed parse of ``text``: what was found, and what was expected."""
    offset = _offset(err, text)
    if isinstance(err, UnexpectedToken) and err.token.type == "$END" and err.line not in (None, -1):
        line, column = err.line, err.column
    else:
        line, column = _line_col(text, min(offset, len(text)))
    width = 1
    if isinstance(err, UnexpectedCharacters):
        char = text[offset] if offset < len(text) else ""
        if char == '"':
            return _unterminated_string(text, offset, file)
        message = f"unexpected character `{char}`"
        expected = err.allowed or set()
    else:
        token = err.token if isinstance(err, UnexpectedToken) else None
        if token is None or token.type == "$END":
            message = "unexpected end of file"
            expected = getattr(err, "expected", None) or set()
            unclosed = [(ch, pos) for ch, pos in _open_brackets(text, len(text)) if ch == "{"]
            if unclosed and "RBRACE" in expected:
                where = Span(file, *_line_col(text, unclosed[-1][1]), 0, 0)
                hint = f"expected `}}` to close the `{{` at {file}:{where.line}:{where.column}"
                return ArchSyntaxError(message, Span(file, line, column, line, column + 1), hint, code="E101")
        else:
            shown = "line break" if token.type == "_NL" else f"`{token.value}`"
            message = f"unexpected {shown}"
            expected = err.accepts or err.expected or set()
            if token.type != "_NL" and token.value:
                width = max(1, len(token.value.split("\n")[0]))
    # Operators can continue almost any expression; listing them buries the
    # punctuation the user most likely forgot.
    closers = {t for t in expected if t in ("COMMA", "RPAR", "RSQB", "_NL", "RBRACE", "COLON")}
    choices = sorted({describe(t) for t in (closers or expected) if not t.startswith("__IGNORE")})
    hint = None
    if isinstance(err, UnexpectedToken) and err.token.type == "X":
        hint = _forgotten_stage(text, offset)
    if choices and hint is None:
        shown = ", ".join(choices[:8]) + (", ..." if len(choices) > 8 else "")
        hint = f"expected {shown}"
    return ArchSyntaxError(message, Span(file, line, column, line, column + width), hint, code="E101")


def _forgotten_stage(text: str, offset: int) -> str | None:
    """The hint for `x N` after a call that lacks the `stage` keyword (`layer1: b(8) x 2`), or None.

    It writes the link again with `stage` in place, from the text of the line.
    """
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    link = text[line_start:offset].rsplit("->", 1)[-1].strip()
    repeat = text[offset : len(text) if line_end < 0 else line_end].split("#", 1)[0].strip()
    written = re.fullmatch(r"(?:([A-Za-z_][\w.]*)\s*:\s*)?([A-Za-z_]\w*(?:\(.*\))?)", link)
    if written is None:
        return None
    label, call = written.groups()
    if label is None and not call.endswith(")"):
        return None  # a bare name: nothing says that a block was meant
    if label is None:
        return f"to repeat a block, make it a stage, which needs a name: `NAME: stage {call} {repeat}`"
    return f"to repeat a block, write `{label}: stage {call} {repeat}`"


def _unterminated_string(text: str, offset: int, file: str) -> ArchSyntaxError:
    # `"""doc` lexes as the empty string `""` followed by a lone `"`.
    if offset >= 2 and text[offset - 2 : offset + 1] == '"""':
        line, column = _line_col(text, offset - 2)
        return ArchSyntaxError(
            "unterminated string", Span(file, line, column, line, column + 3), 'close it with `"""`', code="E101"
        )
    line, column = _line_col(text, offset)
    return ArchSyntaxError(
        "unterminated string",
        Span(file, line, column, line, column + 1),
        'close it with `"` on the same line',
        code="E101",
    )


def recoverable(err: UnexpectedInput, text: str) -> bool:
    """Whether blanking the error's line can reveal further, independent errors."""
    offset = _offset(err, text)
    if offset >= len(text):
        return False  # at the end of the file nothing is left to check
    line_start = text.rfind("\n", 0, offset) + 1
    # A bracket left open on an earlier line swallows what follows: later
    # errors would only be echoes of this one.
    return not any(ch in "([" and pos < line_start for ch, pos in _open_brackets(text, offset))


def blank_line(text: str, line: int) -> str | None:
    """The text with one line blanked, or None when that cannot help recovery."""
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return None
    target = lines[line - 1]
    if not target.strip() or any(ch in target for ch in "{}") or '"""' in target:
        return None
    lines[line - 1] = " " * len(target)
    return "\n".join(lines)
