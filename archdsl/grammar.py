"""The grammar as parsers: ``grammars/arch.lark`` built into LALR parsers, and its postlexer.

:func:`parser` is the cached parser of whole files, :func:`expression_parser`
the cached parser of one expression; :func:`build_parser` and
:func:`build_expression_parser` build variants of them (the formatter keeps
every token; :mod:`archdsl.parse` builds its AST while parsing). This module
holds no AST and no diagnostics, so every other stage may import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

from lark import Lark, Token

from archdsl.limits import current as current_limits
from archdsl.resources import grammar_path

# Tokens after which a line break never ends a statement.
_CONTINUES_AFTER = {"_ARROW", "COMMA", "LBRACE", "EQUAL", "_NL"}

_OPERATORS = {"ADD_OP", "MUL_OP", "_POW", "COMP_OP", "OR", "AND", "IF", "LSQB", "DOT"}
_PREFIX = {"MINUS", "PLUS", "NOT"}


class TooComplex(Exception):
    """A statement past the nesting or size limits (:mod:`archdsl.limits`), at ``token``."""

    def __init__(self, message: str, token: Token) -> None:
        super().__init__(message)
        self.message = message
        self.token = token


class Postlexer:
    """Drop line breaks inside brackets and after ``->``; end every statement with one.

    Also enforces the nesting and size limits of one statement (raising :class:`TooComplex`).
    """

    always_accept = ("_NL", "RBRACE")

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        """The token stream with line breaks kept only where they end a statement."""
        depth = operators = prefix_run = 0
        limits = current_limits()
        last: Token | None = None
        for tok in stream:
            kind = tok.type
            if kind == "_NL":
                if depth == 0 and last is not None and last.type not in _CONTINUES_AFTER:
                    operators = 0
                    last = tok
                    yield tok
                continue
            if kind in ("LPAR", "LSQB"):
                depth += 1
                if depth > limits.max_bracket_depth:
                    raise TooComplex(f"brackets nest deeper than {limits.max_bracket_depth} levels", tok)
            elif kind in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            if kind in ("_ARROW", "COMMA"):
                operators = 0  # each argument / link is its own expression
            elif kind in _OPERATORS:
                operators += 1
                if operators > limits.max_operators:
                    raise TooComplex(f"an expression has more than {limits.max_operators} operators", tok)
            prefix_run = prefix_run + 1 if kind in _PREFIX else 0
            if prefix_run > limits.max_prefix_run:
                raise TooComplex(f"more than {limits.max_prefix_run} prefix operators in a row", tok)
            elif kind == "RBRACE" and depth == 0 and last is not None and last.type not in _CONTINUES_AFTER:
                yield Token.new_borrow_pos("_NL", "\n", tok)
            yield tok
            last = tok
        if last is not None and last.type != "_NL":
            yield Token.new_borrow_pos("_NL", "\n", last)


def build_parser(**options) -> Lark:
    """A Lark parser of ``.arch`` files as :func:`parser`; ``options`` add to Lark's or replace them.

    The formatter adds lexer callbacks; :mod:`archdsl.parse` gives a
    transformer, which builds its AST while parsing.
    """
    settings = {"propagate_positions": True, "maybe_placeholders": True, **options}
    return Lark(
        grammar_path().read_text(encoding="utf-8"), parser="lalr", lexer="contextual", postlex=Postlexer(), **settings
    )


def build_expression_parser(**options) -> Lark:
    """A Lark parser of one expression as :func:`expression_parser`; ``options`` add to Lark's or replace them."""
    settings = {"propagate_positions": True, "maybe_placeholders": True, **options}
    return Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", lexer="contextual", start="expr", **settings)


@cache
def parser() -> Lark:
    """The parser of whole ``.arch`` files (built once)."""
    return build_parser()


@cache
def expression_parser() -> Lark:
    """The parser of one expression, without the postlexer (built once)."""
    return build_expression_parser()
