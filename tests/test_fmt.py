"""The canonical formatter (:mod:`archdsl.fmt`).

The contract, for every text that parses:

* the zoo is canonical: ``format_source(text) == text`` for every file;
* idempotence: ``format_source(format_source(t)) == format_source(t)``;
* comments survive: the same multiset of comment texts, in the same order;
* meaning is kept: the same AST modulo spans, and -- when the program builds --
  the same graph (node ids in order, op/args/shape/params/groups, edges with
  kind and position, graph attributes); when it does not build, the same
  error codes;
* text that does not parse raises :class:`archdsl.ArchSyntaxError`, nothing else.

Checked on the zoo (as is, with its layout scrambled, with comments inserted
everywhere, and laid out at a narrow width), on hand-written cases of every
style rule, and on generated programs (hypothesis, derandomized).
"""

from __future__ import annotations

import dataclasses
import random
import re
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark

import archdsl
from archdsl.fmt import WIDTH, check, format_source
from archdsl.grammar import Postlexer
from archdsl.resources import grammar_path, zoo_dir

ZOO_FILES = sorted(zoo_dir().rglob("*.arch"))
FIXTURES = Path(__file__).parent / "fixtures" / "fmt"

# ---------------------------------------------------------------- helpers


@cache
def _comment_lexer() -> tuple[Lark, list]:
    found: list = []
    parser = Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        postlex=Postlexer(),
        lexer_callbacks={"COMMENT": found.append},
    )
    return parser, found


def comments(text: str) -> list[str]:
    """The comments of a program, in order, as the lexer sees them (trailing whitespace removed)."""
    parser, found = _comment_lexer()
    found.clear()
    parser.parse(text)
    return [str(tok).rstrip() for tok in found]


def strip_spans(node):
    """An AST as nested tuples without its spans (values tagged with their type: ``1 != true``)."""
    if dataclasses.is_dataclass(node):
        fields = dataclasses.fields(node)
        kept = tuple((f.name, strip_spans(getattr(node, f.name))) for f in fields if "span" not in f.name)
        return (type(node).__name__, kept)
    if isinstance(node, tuple):
        return tuple(strip_spans(item) for item in node)
    return (type(node).__name__, node)


def graph_signature(g) -> tuple:
    """What a graph means: everything but spans and the source files."""
    nodes = [
        (
            node,
            data["op"],
            data["args"],
            data["shape"],
            data["input_shapes"],
            data["params"],
            data["macs"],
            data["role"],
            tuple((gr.path, gr.kind, gr.name, gr.repeat) for gr in data["groups"]),
        )
        for node, data in g.nodes(data=True)
    ]
    edges = [(u, v, data["kind"], data.get("position")) for u, v, data in g.edges(data=True)]
    keys = ("name", "doc", "inputs", "outputs", "params", "total_params", "total_macs")
    return nodes, edges, {key: g.graph.get(key) for key in keys}


def build(text: str):
    """The graph's signature, or the sorted error codes when it does not build."""
    try:
        return graph_signature(archdsl.graph(text))
    except archdsl.ArchError as err:
        return sorted(d.code for d in err.diagnostics)


def assert_same_program(original: str, formatted: str, *, graphs: bool = True) -> None:
    """``formatted`` keeps the comments and the meaning of ``original``."""
    assert comments(formatted) == comments(original)
    assert strip_spans(archdsl.parse(formatted)) == strip_spans(archdsl.parse(original))
    if graphs and "network" in original:
        assert build(formatted) == build(original)


def assert_canonical(text: str, formatted: str, *, graphs: bool = True, **kwargs) -> None:
    """Idempotence, canonical whitespace, and the same program."""
    assert format_source(formatted, **kwargs) == formatted
    assert formatted == "" or formatted.endswith("\n") and not formatted.endswith("\n\n")
    in_string, blank = False, False
    for line in formatted.split("\n")[:-1]:
        opens_or_closes = line.count('"""') % 2 == 1
        if not in_string and not opens_or_closes:  # multi-line strings are verbatim
            assert line == line.rstrip(), repr(line)
            assert not (blank and not line), "two blank lines in a row"
        blank = not line and not in_string and not opens_or_closes
        in_string ^= opens_or_closes
    assert_same_program(text, formatted, graphs=graphs)


# ---------------------------------------------------------------- the zoo


def _zoo_id(path: Path) -> str:
    return path.relative_to(zoo_dir()).as_posix()


@pytest.mark.parametrize("path", ZOO_FILES, ids=_zoo_id)
def test_zoo_is_canonical(path):
    text = path.read_text(encoding="utf-8")
    assert format_source(text, str(path)) == text, f"run `archdsl fmt {_zoo_id(path)}`"
    assert check(text)


def _code_and_strings(line: str) -> list[tuple[bool, str]]:
    """A code line in pieces: (is_string, text); a trailing comment counts as a string."""
    pieces, i, start = [], 0, 0
    while i < len(line):
        if line[i] == '"':
            end = line.index('"', i + 1) + 1
            pieces += [(False, line[start:i]), (True, line[i:end])]
            i = start = end
        elif line[i] == "#":
            break
        else:
            i += 1
    return [*pieces, (False, line[start:i]), (True, line[i:])]


def scramble(text: str, seed: int, *, comment: bool = False) -> str:
    """``text`` with its layout scrambled; with ``comment``, comments added everywhere (also inside brackets).

    Without comments the result formats back to ``format_source(text)`` exactly.
    """
    rng = random.Random(seed)
    numbered = iter(range(1, 10_000))

    def pick(*choices: str) -> str:
        return rng.choice(choices)

    def note() -> str:
        return f"# z{next(numbered)}" + pick("", ' -> { } "quoted" # x', "   ")

    out: list[str] = []
    in_doc = False
    for line in text.split("\n"):
        if in_doc or line.lstrip().startswith('"""') or line.lstrip().startswith("#"):
            in_doc ^= line.count('"""') % 2 == 1
            out.append(line)
            continue
        if not line.strip():
            out.append(pick("", "  ", "\n", "\t\n  "))
            continue
        if comment and not line.lstrip().startswith("->") and rng.random() < 0.3:
            out.append(pick("", "  ", "\t") + note())
        line = re.sub(r"^(block|network) (\w+) \{", lambda m: f"{m[1]} {m[2]}{pick('', '()', ' ( ) ')} {{", line)
        body = line.lstrip()
        depth, pieces = 0, [pick("", " ", "\t", "        ")]
        for is_string, piece in _code_and_strings(body):
            if is_string:
                pieces.append(piece)
                continue
            i = 0
            while i < len(piece):
                if piece.startswith(", ", i):
                    inner = [",\n" + pick("", "   "), f",  {note()}\n  "] if depth else []
                    pieces.append(pick(",", " , ", ",\t", ",  ", *(inner if comment else inner[:1])))
                    i += 2
                elif piece.startswith(" -> ", i):
                    pieces.append(pick(" -> ", "->", "  ->\t"))
                    i += 4
                elif piece[i] == "=" and piece[i - 1] not in "=!<>" and piece[i + 1 : i + 2] != "=":
                    pieces.append(pick("=", " = ", " ="))
                    i += 1
                elif piece[i] in "([":
                    depth += 1
                    pieces.append(piece[i] + pick("", " "))
                    i += 1
                elif piece[i] in ")]":
                    depth -= 1
                    pieces.append(pick("", " ") + piece[i])
                    i += 1
                elif piece.startswith(": ", i):
                    pieces.append(pick(": ", " : ", ":"))
                    i += 2
                else:
                    pieces.append(piece[i])
                    i += 1
        line = "".join(pieces)
        if comment and "#" not in body and rng.random() < 0.4:
            line += pick(" ", "   ") + note()
        out.append(line + pick("", " ", "\t"))
    return "\n".join(out)


@cache
def zoo_build(path: Path):
    return build(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", ZOO_FILES, ids=_zoo_id)
def test_zoo_scrambled_formats_back(path):
    text = path.read_text(encoding="utf-8")
    canonical = format_source(text)
    for seed in range(3):
        scrambled = scramble(text, seed)
        assert scrambled != text
        assert format_source(scrambled) == canonical, f"seed {seed}"


@pytest.mark.parametrize("path", ZOO_FILES, ids=_zoo_id)
def test_zoo_keeps_comments_and_meaning(path):
    """Zoo files with comments in every position, and laid out at a narrow width: same graph, same AST."""
    text = path.read_text(encoding="utf-8")
    commented = scramble(text, 7, comment=True)
    assert len(comments(commented)) > len(comments(text))
    for source, width in ((commented, WIDTH), (text, 40)):
        formatted = format_source(source, width=width)
        assert_canonical(source, formatted, graphs=False, width=width)
        if path.parent == zoo_dir():  # libraries have no network: their AST is compared above
            assert build(formatted) == zoo_build(path)


# ---------------------------------------------------------------- style rules


def fmt(text: str, **kwargs) -> str:
    out = format_source(text, **kwargs)
    assert_canonical(text, out, **kwargs)
    return out


def test_spacing_and_punctuation():
    messy = (
        "network n( a=1,b = [1,2,], ){input x:[3 ,8,8]\n"
        "c1 :conv( a*2,k = 3 ,pad=1, )->bn:batchnorm()->relu\n"
        "let v=-a+ +2**-a//(3 %2)\n"
        "let w=a if a>=1 and not a==2 or true else 0\n"
        's:stage relu x a,names="r{i}" , connect=chain\n'
        "t :stage c(k=1)x(2) ,first( k=2, )\n"
        "skip  x->relu   via  projection as  sc\n"
        "output  relu ,s\n"
        'assert a>0 ,"positive"\n'
        "}"
    )
    assert fmt(messy) == (
        "network n(a = 1, b = [1, 2]) {\n"
        "    input x: [3, 8, 8]\n"
        "    c1: conv(a * 2, k=3, pad=1) -> bn: batchnorm() -> relu\n"
        "    let v = -a + +2 ** -a // (3 % 2)\n"
        "    let w = a if a >= 1 and not a == 2 or true else 0\n"
        '    s: stage relu x a, names="r{i}", connect=chain\n'
        "    t: stage c(k=1) x (2), first(k=2)\n"
        "    skip x -> relu via projection as sc\n"
        "    output relu, s\n"
        '    assert a > 0, "positive"\n'
        "}\n"
    )


def test_literals_and_parentheses_are_kept_as_written():
    text = (
        'block b(p = 1_000, q = 1e-3, r = 0.5_0, s = 007, t = 3E2, u = "a\\"b") {\n'
        "    let v = ((p + 1)) * (q) - xs[0].channels + in.shape[1]\n"
        "    let w = 1 .5 + 1.5\n"
        "    relu() -> relu\n"
        "}\n"
    )
    assert fmt(text) == text
    # `1 . 5` is the attribute `5` of the integer 1: written `1 .5`, never `1.5` (a float)
    assert fmt("block b {\n  let v = 1 . 5\n  let w = a . 0 . 1\n}\n") == (
        "block b {\n    let v = 1 .5\n    let w = a.0.1\n}\n"
    )


def test_imports_docstrings_and_blank_lines():
    text = (
        '\n\n"""Module doc."""\n'
        'import "lib/resnet.arch"\n\n\n\n'
        'from "lib/densenet.arch" import dense_layer ,  transition\n'
        "block a {\n"
        '\n    """Block doc.\n\n       Indented   \n    """\n\n\n'
        "    relu\n\n\n    sigmoid\n\n"
        "}\n"
        "network n() {\n    input x: [3, 8, 8]\n    a\n}"
    )
    assert fmt(text) == (
        '"""Module doc."""\n'
        'import "lib/resnet.arch"\n\n'
        'from "lib/densenet.arch" import dense_layer, transition\n\n'
        "block a {\n"
        '    """Block doc.\n\n       Indented   \n    """\n\n'
        "    relu\n\n    sigmoid\n"
        "}\n\n"
        "network n {\n    input x: [3, 8, 8]\n    a\n}\n"
    )


def test_if_else_bodies():
    text = (
        "block b(p, q) {\n"
        "  if p { relu } else if q { sigmoid } else { tanh }\n"
        "  if p {\n  } else {\n     # nothing\n  }\n"
        "}\n"
        "block e {}"
    )
    assert fmt(text) == (
        "block b(p, q) {\n"
        "    if p {\n        relu\n    } else if q {\n        sigmoid\n    } else {\n        tanh\n    }\n"
        "    if p {\n    } else {\n        # nothing\n    }\n"
        "}\n\n"
        "block e {\n}\n"
    )


def test_chains_keep_their_breaks_and_break_when_too_long():
    text = (
        "network n {\n"
        "    input x: [3, 8, 8]\n"
        "    a: conv(4, k=1) ->\n"
        "            b: relu -> c: relu\n"
        "      -> d: relu\n"
        "}\n"
    )
    assert fmt(text) == (
        "network n {\n"
        "    input x: [3, 8, 8]\n"
        "    a: conv(4, k=1)\n"
        "        -> b: relu -> c: relu\n"
        "        -> d: relu\n"
        "}\n"
    )
    long = "network n {\n    input x: [3, 8, 8]\n    " + " -> ".join(f"r{i}: relu" for i in range(30)) + "\n}\n"
    out = fmt(long)
    lines = out.splitlines()[2:-1]
    assert all(len(line) <= WIDTH for line in lines)
    assert all(line.startswith("        -> ") for line in lines[1:])
    for line, following in zip(lines, lines[1:], strict=False):  # greedy: the next link would not have fit
        assert len(line) + len(" -> ") + len(following.strip()[3:].split(" -> ")[0]) > WIDTH
    narrow = fmt(long, width=40)
    assert all(len(line) <= 40 for line in narrow.splitlines())
    assert fmt(narrow) == narrow  # kept breaks: no rejoining at the default width


def test_backslash_and_bracket_continuations_are_joined():
    text = "network n {\n    input x: \\\n  [3,\n 8, 8]\n    conv(4,\n\n k=1) -> \\\n relu\n    skip x\n  -> relu\n}\n"
    assert fmt(text) == (
        "network n {\n    input x: [3, 8, 8]\n    conv(4, k=1)\n        -> relu\n    skip x -> relu\n}\n"
    )


def test_comments_stay_in_place():
    text = (
        "# file\n\n"
        '"""Doc."""  # after the docstring\n'
        "# before the block\n"
        "block b(c) {  # after the brace\n"
        "    # before a statement\n"
        "    conv(c, k=1)  # trailing\n"
        "        -> relu  # on the continuation\n\n"
        "    # before the closing brace\n"
        "}  # after the brace\n"
        "# at the end\n"
    )
    assert fmt(text) == (
        "# file\n\n"
        '"""Doc."""  # after the docstring\n\n'
        "# before the block\n"
        "block b(c) {  # after the brace\n"
        "    # before a statement\n"
        "    conv(c, k=1)  # trailing\n"
        "        -> relu  # on the continuation\n\n"
        "    # before the closing brace\n"
        "}  # after the brace\n\n"
        "# at the end\n"
    )


def test_comments_in_joined_lines_move_above_their_statement_in_order():
    text = (
        "network n(a = 1,  # one\n"
        "          b = 2   # two\n"
        "          ) {  # three\n"
        "    input x: [3, 8, 8]\n"
        "    conv(4,  # four\n"
        "         k=1)  # five\n"
        "        ->  # six\n"
        "        # seven\n"
        "        relu  # eight\n"
        "    if (a > 0 and  # nine\n"
        "       b > 0) {\n"
        "        relu\n"
        "    }\n"
        "}\n"
    )
    assert fmt(text) == (
        "# one\n"
        "# two\n"
        "network n(a = 1, b = 2) {  # three\n"
        "    input x: [3, 8, 8]\n"
        "    # four\n"
        "    # five\n"
        "    # six\n"
        "    # seven\n"
        "    conv(4, k=1)\n"
        "        -> relu  # eight\n"
        "    # nine\n"
        "    if (a > 0 and b > 0) {\n"
        "        relu\n"
        "    }\n"
        "}\n"
    )
    # a comment after an arrow that ends its line stays after the link before it
    assert fmt("network n {\n    input x: [3]\n    linear(2) ->  # c\n      relu\n}\n") == (
        "network n {\n    input x: [3]\n    linear(2)  # c\n        -> relu\n}\n"
    )


def test_whitespace_line_endings_and_empty_files():
    assert fmt("") == ""
    assert fmt("\n\n  \n") == ""
    assert fmt("# only a comment") == "# only a comment\n"
    crlf = "network n {\r\n\tinput x: [3]   \r\n\r\n\r\n\tlinear(2)  # c  \r\n}\r\n\r\n"
    assert fmt(crlf) == "network n {\n    input x: [3]\n\n    linear(2)  # c\n}\n"


def test_syntax_errors_raise_arch_syntax_error():
    bad = [
        "network n {",
        "network n {\n    input x: [3]\n    a: linear(2)\n    # a comment line ends the chain\n    -> relu\n}\n",
        "block b {\n    if p {\n    }\n    else {\n    }\n}\n",
        '"""unterminated',
        "let = 3",
        "block b {\n    let a = " + "(" * 60 + "1" + ")" * 60 + "\n}\n",
        "\x00",
    ]
    for text in bad:
        with pytest.raises(archdsl.ArchSyntaxError):
            format_source(text)
        with pytest.raises(archdsl.ArchSyntaxError):
            check(text)


def test_deep_and_long_inputs_do_not_recurse():
    nested = "block b(p) {\n" + "if p {\nrelu\n" * 1200 + "}\n" * 1200 + "}\n"
    out = format_source(nested)
    assert out.count("\n") == 1 + 3 * 1200 + 1
    assert "\n" + "    " * 1201 + "relu\n" in out
    elifs = (
        "block b(p) {\n if p {\n relu\n }" + "".join(f" else if p == {i} {{\n relu\n }}" for i in range(800)) + "\n}\n"
    )
    assert format_source(format_source(elifs)) == format_source(elifs)
    expr = " + ".join(["(" * 40 + "-" * 40 + "1" + ")" * 40] * 60)
    deep = f"block b {{\n    let a = {expr}\n}}\n"
    assert fmt(deep) == deep


def test_lists_break_one_element_per_line():
    table = (
        "network t {\n"
        "    let rows = [\n"
        "        [3, 16],  # C1\n"
        "        [5, 24],\n"
        "    ]\n"
        "    input x: [3, 8, 8]\n"
        "    conv(rows[0][1], k=1)\n"
        "}\n"
    )
    assert fmt(table) == table  # a comment inside keeps the table one row per line
    joined = fmt(table.replace("  # C1", ""))  # without it, it fits: joined
    assert "    let rows = [[3, 16], [5, 24]]\n" in joined
    assert (
        fmt(table.replace("[\n        [3, 16],  # C1\n        [5, 24],\n    ]", "[[3, 16],  # C1\n [5, 24]]")) == table
    )

    # the width: a list ending at column WIDTH stays on its line, one column more breaks it
    def let(value: str) -> str:
        return f"block b {{\n    let a = {value}\n}}\n"

    room = WIDTH - len("    let a = [1, ]")
    fits = let(f"[1, {'p' * room}]")
    assert max(map(len, fits.splitlines())) == WIDTH
    assert fmt(fits) == fits
    assert fmt(let(f"[1, {'p' * (room + 1)}]")) == let(f"[\n        1,\n        {'p' * (room + 1)},\n    ]")
    # a row counts the comma after it; the outer list breaks first, each row only when it does not fit
    room = WIDTH - len("        [1, ],")
    assert fmt(let(f"[[1, {'p' * room}], [1, {'q' * (room + 1)}]]")) == let(
        f"[\n        [1, {'p' * room}],\n        [\n            1,\n            {'q' * (room + 1)},\n        ],\n    ]"
    )

    # a comment that must move above its statement (comments keep their order) does not hold its list open
    moved = "network n {\n    input x: [3, 8, 8]\n    conv(2, pad=[1,  # b\n 1],  # a\n k=3)\n}\n"
    assert fmt(moved) == "network n {\n    input x: [3, 8, 8]\n    # b\n    # a\n    conv(2, pad=[1, 1], k=3)\n}\n"
    # inside an element, and in an empty list, a comment moves above the statement too
    assert fmt(let("[1 +  # c\n 2, [  # d\n]]")) == "block b {\n    # c\n    # d\n    let a = [1 + 2, []]\n}\n"
    # a comment before the comma after an element moves; right before `]`, it stays
    assert fmt(let("[1, 2  # c\n , 3]")) == "block b {\n    # c\n    let a = [1, 2, 3]\n}\n"
    assert fmt(let("[1, 2  # c\n ]")) == let("[\n        1,\n        2,  # c\n    ]")


@pytest.mark.parametrize("source", sorted(FIXTURES.glob("*.arch")), ids=lambda path: path.stem)
def test_golden_files(source):
    """``NAME.arch`` in tests/fixtures/fmt formats to ``NAME.expected``, which is canonical."""
    messy = source.read_text(encoding="utf-8")
    expected = source.with_suffix(".expected").read_text(encoding="utf-8")
    assert fmt(messy) == expected
    assert fmt(expected) == expected


# ---------------------------------------------------------------- generated programs


def hypothesis_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class _Writer:
    """Draws the layout of a generated program: spacing, line breaks, blank lines and numbered comments."""

    def __init__(self, draw) -> None:
        self.draw = draw
        self.count = 0
        self.labels: list[str] = []

    def pick(self, *choices: str) -> str:
        return self.draw(st.sampled_from(choices))

    def chance(self, p: float) -> bool:
        return self.draw(st.floats(0, 1)) < p

    def comment(self) -> str:
        self.count += 1
        return f"# c{self.count}" + self.pick("", "", "   ", ' -> { } "q" # #', "\t")

    def ws(self) -> str:  # required whitespace
        return self.pick(" ", " ", "  ", "\t", " \\\n   ")

    def opt(self) -> str:  # optional whitespace
        return self.pick("", "", " ", "  ")

    def inner(self) -> str:  # whitespace inside brackets: may break the line, with a comment
        space = self.pick("", "", " ", "\n      ", "\n", "  #\n  ", " #\n")
        return space.replace("#", self.comment()) if "#" in space else space

    def indent(self) -> str:
        return self.pick("", "  ", "    ", "    ", "\t", "        ")

    def end(self) -> str:  # the end of a statement line, with trailing comments and blank lines
        tail = self.pick("", "", "  ", "  #", " #")
        if "#" in tail:
            tail = tail.replace("#", self.comment())
        gap = self.pick("\n", "\n", "\n", "\n\n", "\n  \n\n", "\n\t\n")
        if self.chance(0.2):
            gap += self.indent() + self.comment() + "\n"
        return tail + gap

    def arrow(self) -> str:
        return self.pick(
            " -> ",
            " -> ",
            "->",
            "  ->\t",
            " ->\n        ",
            "\n        -> ",
            "\n\n    -> ",
            " \\\n -> ",
            "  #\n    -> ",
            " -> #\n      ",
            " ->\n  #\n     ",
        ).replace("#", self.comment())

    def args(self, *items: tuple[str | None, str]) -> str:
        parts = [(f"{k}{self.opt()}={self.opt()}{v}" if k else v) for k, v in items]
        text = "(" + self.inner() + parts[0]
        for part in parts[1:]:
            text += "," + self.inner() + part
        trailing = "," if self.chance(0.2) else ""
        return text + trailing + self.inner() + ")"

    def listing(self, items: list[str]) -> str:
        """A list literal: on one line, or over several with comments after ``[``, after items and between them.

        Now and then one comment comes before an item's comma: it moves above the statement, and so do the
        comments of the statement before it.
        """
        if self.chance(0.4):
            return "[" + self.opt() + f",{self.opt()}".join(items) + "]"
        moved = self.draw(st.integers(0, len(items) - 1)) if items and self.chance(0.1) else None
        text = "[" + self.pick("", "", "  #", "\n").replace("#", self.comment()) + "\n"
        for k, item in enumerate(items):
            if self.chance(0.15):
                text += self.pick("", "\n") + self.indent() + self.comment() + "\n"
            text += self.indent() + item
            comma = "," if k < len(items) - 1 else self.pick("", ",")
            if k == moved:
                text += f"  {self.comment()}\n{self.indent()}{comma}\n"
            elif self.chance(0.4):
                text += comma + self.pick("  ", " ", "") + self.comment() + self.pick("\n", "\n\n")
            else:
                text += comma + self.pick("\n", "\n", "\n\n", " ")
        if self.chance(0.2):
            text += self.indent() + self.comment() + "\n"
        return text + self.indent() + "]"

    def table(self) -> str:
        """A list of rows of numbers (``let v3 = [`` rows with comments ``]``), some rows wider than the width."""
        rows = []
        for _ in range(self.draw(st.integers(1, 5))):
            rows.append(self.listing([self.number(n) for n in range(1, self.draw(st.integers(1, 14)))]))
        return self.listing(rows)

    def number(self, value: int) -> str:
        return self.pick(str(value), str(value), f"0{value}", f"{value}_0 // 10", f"({value})", f"{value} * 1")

    def label(self) -> str:
        name = f"l{len(self.labels)}"
        self.labels.append(name)
        return name

    def unreferenced_label(self) -> str:
        """A label no merge reads: integer and computed path segments (``m0.1``, ``m1.( 2 + 1 )``, ``3``)."""
        self.extras = getattr(self, "extras", 0) + 1
        n = self.extras
        return self.pick(f"m{n}.{n}", f"m{n}.({self.opt()}{n}{self.opt()}+{self.opt()}1{self.opt()})", f"{100 + n}")

    def op(self, channels: bool) -> str:
        if channels:
            kind = self.pick("conv", "conv", "bn", "relu", "pool", "drop", "ident")
        else:
            kind = self.pick("linear", "linear", "relu", "drop", "ident")
        if kind == "conv":
            pad = self.pick("1", "1", "list")
            pad = self.listing(["1", "1"]) if pad == "list" else pad
            return "conv" + self.args((None, self.number(4)), ("k", "3"), ("pad", pad))
        if kind == "linear":
            return "linear" + self.args((None, self.number(6)))
        if kind == "bn":
            return self.pick("batchnorm", "batchnorm()", "batchnorm" + self.args(("eps", "1e-5")))
        if kind == "pool":
            return self.pick("maxpool(1)", "avgpool(3, stride=1, pad=1)", "maxpool" + self.args((None, "1")))
        if kind == "drop":
            return "dropout" + self.args(("p", self.pick("0.5", "5e-1", "2_5e-2", "0.2_5")))
        return self.pick("relu", "relu()", "identity", "sigmoid", "tanh()")

    def chain(self, channels: bool, starts: list[str]) -> str:
        links = []
        if starts and self.chance(0.3):
            links.append(self.pick(*starts))
        for _ in range(self.draw(st.integers(1, 4))):
            op = self.op(channels)
            if self.chance(0.6):
                label = self.label() if self.chance(0.8) else self.unreferenced_label()
                links.append(f"{label}{self.opt()}:{self.ws()}{op}")
            else:
                links.append(op)
        text = links[0]
        for link in links[1:]:
            text += self.arrow() + link
        return text

    def statement(self, channels: bool, in_block: bool) -> str:
        kind = self.pick("chain", "chain", "chain", "let", "assert", "if", "merge", "skip", "stage")
        refs = (["in"] if in_block else ["x"]) + self.labels
        if kind == "let":
            name = f"v{self.count}"
            value = self.table() if self.chance(0.4) else self.number(3)
            return f"let{self.ws()}{name}{self.opt()}={self.opt()}{value}"
        if kind == "assert":
            return f'assert{self.ws()}1{self.opt()}<{self.opt()}2{self.opt()},{self.opt()}"fine"'
        if kind == "if":
            then = self.chain(channels, refs)
            other = self.chain(channels, refs)
            close = self.pick("}", "\n" + self.indent() + "}", self.end() + self.indent() + "}")
            first = f"if{self.ws()}flag{self.opt()}{{{self.end()}{self.indent()}{then}{self.end()}{self.indent()}"
            return first + f"{close}{self.opt()}else{self.opt()}{{{self.opt()}{other}{self.opt()}}}"
        if kind == "merge" and len(self.labels) >= 2:
            a, b = self.draw(st.lists(st.sampled_from(self.labels), min_size=2, max_size=2, unique=True))
            op = self.pick("add", "concat", "concat")
            return f"{self.label()}:{self.ws()}{op}{self.args((None, a), (None, b))}"
        if kind == "skip" and self.labels:
            src, dst = self.pick(*refs), self.pick(*self.labels)
            policy = self.pick("", f"{self.ws()}via{self.ws()}projection", f"{self.ws()}via{self.ws()}identity")
            return f"skip{self.ws()}{src}{self.arrow()}{dst}{policy}"
        if kind == "stage" and channels and not in_block:
            count = self.number(2)
            opts = self.pick("", f",{self.opt()}first(k=1)", f',{self.opt()}names{self.opt()}={self.opt()}"r{{i}}"')
            call = f"unit{self.args((None, '4'))}"
            return f"{self.label()}:{self.ws()}stage{self.ws()}{call}{self.ws()}x{self.ws()}{count}{opts}"
        return self.chain(channels, refs)

    def body(self, channels: bool, in_block: bool, first: str = "") -> str:
        text = self.pick("", "\n", self.end()) + first
        for _ in range(self.draw(st.integers(1, 5))):
            text += self.indent() + self.statement(channels, in_block) + self.end()
        return text

    def program(self) -> str:
        channels = self.chance(0.7)
        text = self.pick("", '"""Generated."""\n', "# head\n\n").replace("# head", self.comment())
        if channels:
            doc = self.pick("", '    """A unit."""\n', '    """A unit.\n\n       Indented.\n    """\n')
            unit = self.body(True, True, doc)
            self.labels = []
            params = self.args(("c", "4"), ("k", "3"), ("flag", "false"))
            text += f"block{self.ws()}unit{params}{self.opt()}{{{unit}}}{self.end()}"
        shape = self.listing(["3", "6", "6"] if channels else ["5"])
        params = self.args(("flag", self.pick("true", "false")), ("width", "4"))
        body = self.body(channels, False, f"{self.indent()}input{self.ws()}x{self.opt()}:{self.opt()}{shape}\n")
        text += f"network{self.ws()}net{params}{self.opt()}{{{body}}}" + self.end()
        if self.chance(0.3):
            text += self.comment() + self.pick("", "\n")
        return text


@st.composite
def programs(draw) -> str:
    """Networks (and a block) of random ops, chains, merges, skips, stages, ifs; random layout and comments."""
    return _Writer(draw).program()


ATOMS = st.sampled_from(
    ["0", "1", "1_000", "007", "2.5", "1e-3", "3E2", "1_0.2_5", "true", "false", '"s"', '""', "p", "q", "i",
     "in", "in.channels", "xs[0]", "1 .5", "a.0.1", '"""t"""']
)  # fmt: skip


def _compose(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    sp = st.sampled_from(["", " ", "  "])
    binary = st.sampled_from(["+", "-", "*", "/", "//", "%", "**"])
    compare = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    return st.one_of(
        st.tuples(children, sp, binary, sp, children).map("".join),
        st.tuples(children, compare, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(children, st.sampled_from(["and", "or"]), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        children.map(lambda c: f"(not {c})"),
        st.tuples(st.sampled_from(["-", "+", "- ", "--"]), children).map("".join),
        st.tuples(sp, children, sp).map(lambda t: f"({''.join(t)})"),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]"),
        children.map(lambda c: f"({c}).height"),
        st.tuples(st.sampled_from(["max", "floor", "f"]), children, children).map(lambda t: f"{t[0]}({t[1]},{t[2]})"),
        st.lists(children, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    )


EXPRESSIONS = st.recursive(ATOMS, _compose, max_leaves=10)


@st.composite
def expression_programs(draw) -> str:
    """Every expression form, in every place that holds one (parsed, not built)."""
    e = [draw(EXPRESSIONS) for _ in range(6)]
    return (
        f"block b(p, q = {e[0]}) {{\n"
        f"    let a = {e[1]}\n"
        f'    assert {e[2]}, "m"\n'
        f"    c: conv({e[3]}, k={e[4]}) -> s: stage relu x {e[5]}\n"
        "}\n"
    )


@hypothesis_settings(120)
@given(programs())
def test_generated_programs(text):
    try:
        formatted = format_source(text)
    except archdsl.ArchSyntaxError:  # pragma: no cover - the generator writes valid programs
        pytest.fail(f"generated program does not parse:\n{text}")
    assert_canonical(text, formatted)
    narrow = format_source(text, width=30)
    assert_canonical(text, narrow, width=30)


@hypothesis_settings(150)
@given(expression_programs())
def test_generated_expressions(text):
    try:
        formatted = format_source(text)
    except archdsl.ArchSyntaxError:
        return  # a few generated combinations are not valid syntax
    assert_canonical(text, formatted)
