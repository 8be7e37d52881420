"""Robustness: ``archdsl.graph(text)`` returns a graph or raises ``ArchError``, whatever the text.

The contract under test, for *any* input:

* :func:`archdsl.graph` either returns a ``networkx.DiGraph`` or raises an
  :class:`archdsl.ArchError` -- never a raw lark, networkx or torch exception,
  ``OSError``, ``ValueError``, ``RecursionError``, ``KeyError``, ``TypeError``, ...
* every diagnostic of that error whose span is not None points inside the
  text of the file it names (``1 <= line <= number of lines + 1``, columns
  >= 1, the end not before the start), and the error renders (``str(err)``).

Inputs come from:

1. programs generated from the real grammar (``grammars/arch.lark``) with
   :func:`hypothesis.extra.lark.from_lark` (bounded in size, see
   BoundedLarkStrategy), with hand-written strategies for the terminals so
   that most programs parse and reach elaboration: whole modules, network
   bodies mixing generated and well-formed statements, and expressions
   with edge-case numbers placed in every position that evaluates one;
2. token soup and random text; one-line strings, which ``graph`` reads as
   paths or zoo names;
3. random mutations of the zoo (token deletion, duplication, swaps, insertion,
   renaming, truncation, splicing, random bytes, extreme numbers, line edits),
   as source text (run from the repository root and from an empty folder) and
   as files on disk, a network importing a mutated library;
4. invalid UTF-8 files, and arbitrary bytes in a file;
5. pathologically deep or long programs (RecursionError, quadratic time).

The runs are derandomized (reproducible in CI) and take about a minute. For a
longer fuzzing session with random seeds::

    ARCHDSL_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/test_robustness.py

Crashes found and not fixed yet are listed in KNOWN_CRASHES, each with its
minimal input and a strict-xfail regression test; the fuzz tests tolerate
those (only those) unless ``ARCHDSL_FUZZ_STRICT=1``.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import LarkStrategy, from_lark
from lark import Lark
from lark.grammar import NonTerminal

import archdsl
from archdsl.ops import user_ops
from archdsl.resources import grammar_path, zoo_dir

# ---------------------------------------------------------------- settings

_FUZZ = os.environ.get("ARCHDSL_FUZZ_EXAMPLES")
FUZZ_EXAMPLES = int(_FUZZ) if _FUZZ else None


def fuzz_settings(default_examples: int) -> settings:
    """Derandomized ``default_examples`` by default; ``ARCHDSL_FUZZ_EXAMPLES`` random ones when set."""
    return settings(
        max_examples=FUZZ_EXAMPLES or default_examples,
        deadline=None,
        derandomize=FUZZ_EXAMPLES is None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


# ---------------------------------------------------------------- the contract


def _line_count(text: str) -> int:
    # lark counts "\n"; str.splitlines also splits at \r, \f, \x1c, \u2028, ...
    return max(text.count("\n") + 1, len(text.splitlines()))


def check_error(err: archdsl.ArchError, texts: dict[str, str]) -> None:
    """Every located diagnostic of ``err`` points inside the text of its file; the error renders."""
    assert isinstance(err, archdsl.ArchError)
    assert err.diagnostics, "an ArchError without diagnostics"
    for diag in err.diagnostics:
        assert isinstance(diag, archdsl.Diagnostic), diag
        assert isinstance(diag.code, str) and diag.code, diag
        assert isinstance(diag.message, str), diag
        spans = [diag.span] + [label.span for label in diag.labels]
        for span in spans:
            if span is None:
                continue
            assert isinstance(span, archdsl.Span), span
            text = texts.get(span.file, err.sources.get(span.file))
            assert text is not None, (
                f"[{diag.code}] {diag.message!r}: span file {span.file!r} is neither an input "
                f"nor one of the error's sources {sorted(err.sources)}"
            )
            lines = _line_count(text)
            assert 1 <= span.line <= lines + 1, (
                f"[{diag.code}] {diag.message!r}: span {span} starts at line {span.line}, "
                f"but {span.file} has {lines} line(s)"
            )
            assert span.end_line <= lines + 1, f"[{diag.code}] {diag.message!r}: span {span!r} ends past the text"
            assert span.column >= 1, f"[{diag.code}] {diag.message!r}: span {span!r} has column < 1"
            assert (span.end_line, span.end_column) >= (span.line, span.column), (
                f"[{diag.code}] {diag.message!r}: span {span!r} ends before it starts"
            )
        diag.to_dict()
    rendered = str(err)
    assert isinstance(rendered, str) and rendered


@dataclass(frozen=True)
class KnownCrash:
    """A crash this file found: the exception, the archdsl function it escaped from, a minimal input."""

    exception: type[BaseException]
    file: str  # relative to the repository root, e.g. "archdsl/expr.py"
    function: str
    text: str
    reason: str

    def matches(self, exc: BaseException) -> bool:
        return type(exc) is self.exception and raised_in(exc) == (self.file, self.function)


# Crashes found by this file that archdsl has not fixed yet, each with its minimal input. Each one
# has a strict-xfail regression test (test_known_crash) that flips when the bug is fixed: then
# delete its entry. So that the fuzz tests keep looking for *other* bugs meanwhile, they tolerate
# a crash with the same signature (exception type and the archdsl function it escaped from);
# ARCHDSL_FUZZ_STRICT=1 makes them fail on known crashes too.
KNOWN_CRASHES: dict[str, KnownCrash] = {}
STRICT = os.environ.get("ARCHDSL_FUZZ_STRICT", "") not in ("", "0")
_PACKAGE_ROOT = Path(archdsl.__file__).resolve().parent.parent


def raised_in(exc: BaseException) -> tuple[str, str] | None:
    """(file, function) of the innermost archdsl frame of ``exc``'s traceback."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(_PACKAGE_ROOT / "archdsl"):
            found = (path.relative_to(_PACKAGE_ROOT).as_posix(), frame.name)
    return found


def check_graph(source, texts: dict[str, str] | None = None, *, tolerate_known: bool = True, **kwargs):
    """``archdsl.graph(source)`` returns a DiGraph or raises a well-located ArchError.

    Any other exception propagates unchanged (so hypothesis shows and shrinks it), except a
    known crash (see KNOWN_CRASHES), which is returned. Returns the graph or the ArchError.
    """
    if texts is None:
        assert isinstance(source, str)
        texts = {"<string>": source}
    try:
        try:
            result = archdsl.graph(source, **kwargs)
        except archdsl.ArchError as err:
            check_error(err, texts)
            return err
    except Exception as exc:
        known = next((name for name, crash in KNOWN_CRASHES.items() if crash.matches(exc)), None)
        if known is None or STRICT or not tolerate_known:
            raise
        note(f"known crash {known}: {type(exc).__name__}: {exc}")
        return exc
    assert isinstance(result, nx.DiGraph)
    return result


def as_source_text(text: str) -> str:
    """Make sure ``graph`` reads ``text`` as source text, not as a path or zoo name."""
    return text if ("\n" in text or "{" in text) else text + "\n"


def reached_elaboration(outcome) -> bool:
    """True when the program got past parsing (a graph, or errors that are not syntax errors)."""
    if isinstance(outcome, nx.DiGraph):
        return True
    if not isinstance(outcome, archdsl.ArchError):  # a known crash
        return raised_in(outcome)[0] != "archdsl/parse.py"
    return not any(d.code.startswith("E1") for d in outcome.diagnostics)


# ---------------------------------------------------------------- 1. grammar-based generation

ARCH_OPS = sorted(
    {
        "conv",
        "relu",
        "linear",
        "add",
        "concat",
        "batchnorm",
        "maxpool",
        "avgpool",
        "adaptive_avgpool",
        "flatten",
        "identity",
        "dropout",
        "mul",
        "gate",
        "sigmoid",
        "softmax",
    }
    | set(user_ops())
)
NODE_NAMES = ["a", "b", "c", "x1", "y", "z1", "blk", "blk2", "net", "head", "layer1", "conv1", "bn1", "relu1", "i"]
ARG_NAMES = ["k", "stride", "pad", "bias", "groups", "p", "dim", "planes", "width", "num_classes", "growth"]
FUNCTIONS = ["floor", "ceil", "round", "int", "float", "abs", "min", "max"]
ATTRS = ["channels", "height", "width", "features", "shape", "rank"]
POLICIES = ["identity", "projection", "zeropad", "zeropad_shortcut"]
CONNECTS = ["chain", "dense"]
ZOO_BLOCKS = ["basic", "bottleneck", "imagenet_stem", "classifier_head", "dense_layer", "transition", "resnet18"]


def _grammar_keywords() -> list[str]:
    text = grammar_path().read_text(encoding="utf-8")
    return sorted(set(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', text)) | {"in"})


KEYWORDS = _grammar_keywords()  # "network", "stage", "x", "in", ...

# Names: mostly ops (callees) and node names (labels, references); keywords only in the token soup.
NAME = st.one_of(
    st.sampled_from(ARCH_OPS),
    st.sampled_from(ARCH_OPS),
    st.sampled_from(ARCH_OPS),
    st.sampled_from(NODE_NAMES),
    st.sampled_from(NODE_NAMES),
    st.sampled_from(ARG_NAMES),
    st.sampled_from(FUNCTIONS + ATTRS + POLICIES + CONNECTS + ZOO_BLOCKS),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in KEYWORDS),
)
INT = st.one_of(
    st.sampled_from(["0", "1", "2", "3", "4", "8", "16"]),
    st.integers(0, 64).map(str),
    st.sampled_from(["1_0", "007", "1000", "10001", str(2**62), str(2**62 + 1), "1" + "0" * 30]),
)
FLOAT = st.sampled_from(["0.5", "1.5", "2.0", "0.0", "1e3", "1e-3", "1e400", "1_0.2_5", "3E2"])
STRING = st.one_of(
    st.sampled_from(['"lib/resnet.arch"', '"lib/densenet.arch"']),  # imports that resolve (via the zoo)
    st.sampled_from(
        [
            '"missing.arch"',
            '"../pyproject.toml"',
            '"/etc/passwd"',
            '"architectures/resnet18.arch"',
            '"lib"',
            '"{i}"',
            '"denselayer{i+1}"',
            '"b{i}.{i}"',
            '"{i"',
            '"{}"',
            '"{1/0}"',
            '"{(}"',
            '"{foo}"',
            '"{i == 0}"',
            '"x y"',
            '""',
            '"a doc string"',
            '"esc\\"aped\\n"',
            '"""a\n   doc string"""',
            '"""{i}"""',
            '"' + "x" * 256 + '"',
            '"a\x00b.arch"',
            '"\ud800.arch"',
        ]
    ),
)


def _spaced(*values: str) -> st.SearchStrategy[str]:
    return st.sampled_from([f" {v} " for v in values])


# Strategies for the regex terminals; string terminals ("network", "{", ...) get " value ".
TERMINALS: dict[str, st.SearchStrategy[str]] = {
    "NAME": NAME.map(lambda s: f" {s} "),
    "INT": INT.map(lambda s: f" {s} "),
    "FLOAT": FLOAT.map(lambda s: f" {s} "),
    "STRING": STRING.map(lambda s: f" {s} "),
    "IN": _spaced("in"),
    "_ARROW": st.sampled_from([" -> ", " -> ", "\n    -> "]),
    "COMP_OP": _spaced("==", "!=", "<=", ">=", "<", ">"),
    "ADD_OP": _spaced("+", "-"),
    "_POW": _spaced("**"),
    "MUL_OP": _spaced("*", "/", "//", "%"),
    "_NL": st.sampled_from(["\n", "\n", "\n", "\n\n", "\r\n", "  # a comment\n"]),
    # Ignored terminals, inserted between any two symbols by from_lark.
    "COMMENT": st.sampled_from([" ", " ", " ", "\t", " \\\n "]),
}


# Expressions: edge-case numbers, and names bound in EXPRESSION_NETWORK (or shape attributes).
TERMINAL_VARIANTS: dict[str, dict[str, st.SearchStrategy[str]]] = {
    "program": {},
    "expression": {
        "NAME": _spaced("p", "p", "q", "s", "l", "b", "i", "undefined", *FUNCTIONS, *ATTRS),
        "INT": _spaced(
            "0",
            "1",
            "2",
            "3",
            "7",
            "62",
            "63",
            "64",
            "65",
            "256",
            "257",
            "10000",
            "10001",
            str(2**62),
            str(2**62 + 1),
            "1" + "0" * 30,
        ),
        "FLOAT": _spaced("0.0", "0.5", "1.5", "2.5", "1e-300", "1e300", "1e308", "1e400", "5e-324"),
        "STRING": _spaced('"s"', '""', '"{i}"'),
        "COMMENT": st.just(" "),  # no line continuations: the expression may end up inside a string
    },
}


@functools.cache
def generation_grammar() -> Lark:
    """The package's grammar, without the postlexer (from_lark cannot use one)."""
    return Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr")


@functools.cache
def explicit_terminals(start: str, variant: str = "program") -> dict[str, st.SearchStrategy[str]]:
    lark = generation_grammar()
    terminals, _, ignore_names = lark.grammar.compile([start], ())
    explicit = {}
    chosen = {**TERMINALS, **TERMINAL_VARIANTS[variant]}
    for terminal in terminals:
        name, pattern = terminal.name, terminal.pattern
        if name in chosen:
            explicit[name] = chosen[name]
        elif name in ignore_names:
            explicit[name] = chosen["COMMENT"]
        elif pattern.type == "str":
            explicit[name] = st.just(f" {pattern.value} ")
        else:  # a regex terminal added to the grammar since this test was written
            explicit[name] = st.from_regex(pattern.to_regexp(), fullmatch=True).map(lambda s: f" {s} ")
    return explicit


class BoundedLarkStrategy(LarkStrategy):
    """``from_lark``, except that after ``budget`` rules each rule takes a shortest derivation.

    The expression grammar is recursive at every precedence level, so plain
    ``from_lark`` draws huge expressions (most of the time goes into drawing
    them, or into overruns); a budget of rule expansions per string keeps
    programs small and generation fast, and the grammar is still followed.
    """

    def __init__(self, grammar: Lark, start: str, explicit, budget: int) -> None:
        super().__init__(grammar, start, explicit, st.characters(codec="utf-8"))
        self.budget = budget
        self._used = 0
        _, rules, _ = grammar.grammar.compile([start], ())
        expansions: dict[str, list[tuple]] = {}
        for rule in rules:
            expansions.setdefault(rule.origin.name, []).append(tuple(rule.expansion))
        # height: rule expansions needed to reach terminals, not counting unit rules (`?sum: product`), so
        # that a bare literal is as short as a call without arguments. Unit rules form no cycle (LALR).
        height: dict[str, float] = dict.fromkeys(expansions, float("inf"))

        def cost(option: tuple) -> float:
            if len(option) == 1 and isinstance(option[0], NonTerminal):
                return height[option[0].name]
            return 1 + max((height[s.name] if isinstance(s, NonTerminal) else 0 for s in option), default=0)

        changed = True
        while changed:
            changed = False
            for name, options in expansions.items():
                best = min(cost(option) for option in options)
                if best < height[name]:
                    height[name], changed = best, True
        self._terminating = {
            name: st.sampled_from([option for option in options if cost(option) == height[name]])
            for name, options in expansions.items()
        }

    def do_draw(self, data) -> str:
        self._used = 0
        return super().do_draw(data)

    def draw_symbol(self, data, symbol, draw_state) -> None:
        if not isinstance(symbol, NonTerminal):
            return super().draw_symbol(data, symbol, draw_state)
        self._used += 1
        saved = self.nonterminal_strategies
        if self._used > self.budget:
            self.nonterminal_strategies = self._terminating
        try:
            super().draw_symbol(data, symbol, draw_state)
        finally:
            self.nonterminal_strategies = saved


@functools.cache
def grammar_strategy(start: str, budget: int | None = 60, variant: str = "program") -> st.SearchStrategy[str]:
    """Strings derived from rule ``start`` of the real grammar (``budget=None``: plain ``from_lark``)."""
    explicit = explicit_terminals(start, variant)
    if budget is None:
        return from_lark(generation_grammar(), start=start, explicit=explicit)
    return BoundedLarkStrategy(generation_grammar(), start, explicit, budget)


@st.composite
def whole_programs(draw) -> str:
    """Any module the grammar allows (imports, blocks and networks, in any order)."""
    return as_source_text(draw(grammar_strategy("start", 200)))


# Statements for the bodies of generated networks and blocks: grammar-generated ones, mixed with
# well-formed ones so that a good share of programs builds real graphs (shape inference, skips,
# stages, merges) before a generated statement perturbs them.
def _statement_rules() -> list[str]:
    """The grammar's statement rules (``let_stmt``, ``skip_stmt``, ...), chains weighted up."""
    _, rules, _ = generation_grammar().grammar.compile(["start"], ())
    stmts = sorted({r.origin.name for r in rules if r.origin.name.endswith("_stmt")})
    return ["chain", "chain", "chain", "link", "body", *stmts]


GENERATED_STATEMENT_RULES = _statement_rules()
WELL_FORMED_STATEMENTS = [
    "conv(8, k=3, pad=1)",
    "c1: conv(8, k=3, stride=2, pad=1, bias=false) -> bn1: batchnorm -> r1: relu",
    "conv(p * 4, k=1)",
    "c2: conv(in.channels * 2, k=1, groups=2)",
    "batchnorm",
    "relu",
    "r: relu",
    "sigmoid",
    "maxpool(2, stride=2)",
    "avgpool(2, stride=2, pad=1)",
    "adaptive_avgpool(1) -> flatten",
    "flatten",
    "linear(10)",
    "fc: linear(num_classes)",
    "dropout(0.5)",
    "identity",
    "softmax",
    "blk",
    "blk(4)",
    "blk2(p=2)",
    "head",
    "basic(8, stride=2)",
    "bottleneck(2)",
    "dense_layer(4)",
    "transition(0.5)",
    "layer1: stage blk(4) x 2",
    "layer2: stage blk2 x 2, first(stride=2)",
    'dense: stage blk(2) x 3, connect=dense, names="d{i}"',
    "layer3: stage relu x 2",
    "skip in -> r via projection",
    "skip x -> r via zeropad as shortcut",
    "sk: skip r1 -> bn1",
    "a: add(x, r)",
    "m: mul(r, r1)",
    "cat: concat(x, c1, r)",
    "g: gate(r, r1, x)",
    "output r",
    "output r, r1",
    "let w = in.channels",
    "let q2 = p * 2 if p > 1 else 1",
    "x -> conv(4, k=1)",
    "r1 -> r",
    "if p > 2 {\n        relu\n    } else {\n        sigmoid\n    }",
    'assert p > 0, "p must be positive"',
    "if in.channels > 2 {\n        c3: conv(2, k=1)\n    }",
]
STATEMENT = st.one_of(
    st.sampled_from(WELL_FORMED_STATEMENTS),
    st.sampled_from(WELL_FORMED_STATEMENTS),
    st.sampled_from(GENERATED_STATEMENT_RULES).flatmap(grammar_strategy),
)


@st.composite
def bodies(draw) -> str:
    return "".join(f"    {stmt}\n" for stmt in draw(st.lists(STATEMENT, min_size=1, max_size=8)))


@st.composite
def network_programs(draw) -> str:
    """A network with a declared input whose body (and helper blocks' bodies) mix generated statements in."""
    header = draw(
        st.sampled_from(
            [
                "",
                "",
                'import "lib/resnet.arch"\n',
                'from "lib/densenet.arch" import dense_layer, transition\n',
            ]
        )
    )
    parts = [header]
    for name in draw(st.lists(st.sampled_from(["blk", "blk2", "head"]), max_size=2, unique=True)):
        params = draw(st.sampled_from(["", "(p = 2)", "(p = 2, q = 1)", "(p, stride = 1)"]))
        parts.append(f"block {name}{params} {{\n{draw(bodies())}}}\n")
    shape = draw(st.sampled_from(["[3, 8, 8]", "[3, 8, 8]", "[16]", "[4, 2, 2]", "[2, 1, 1]"]))
    params = draw(st.sampled_from(["", "(p = 4)", "(num_classes = 10, p = 8)"]))
    parts.append(f"network net{params} {{\n    input x: {shape}\n{draw(bodies())}}}\n")
    return "".join(parts)


TOKEN_SOUP = st.lists(
    st.one_of(
        NAME,
        INT,
        FLOAT,
        STRING,
        st.sampled_from(KEYWORDS),
        st.sampled_from(
            [
                "{",
                "}",
                "(",
                ")",
                "[",
                "]",
                ",",
                ":",
                "=",
                ".",
                "->",
                "\n",
                "**",
                "+",
                "-",
                "*",
                "/",
                "//",
                "%",
                "==",
                "<",
                "#",
                "\\",
                "\\\n",
                '"',
                '"""',
                "\t",
                "\r",
                "network n {",
                "}\n",
            ]
        ),
    ),
    max_size=40,
).map(" ".join)


def _run_and_count(programs: st.SearchStrategy[str], examples: int) -> Counter:
    stats: Counter = Counter()

    @fuzz_settings(examples)
    @given(text=programs)
    def run(text: str) -> None:
        note(f"program:\n{text}")
        outcome = check_graph(text)
        stats["total"] += 1
        stats["parsed"] += reached_elaboration(outcome)
        stats["graph"] += isinstance(outcome, nx.DiGraph)

    run()
    return stats


def test_grammar_generated_modules():
    stats = _run_and_count(whole_programs(), 200)
    # Most generated modules should be grammatical: otherwise the test only exercises the parser.
    assert stats["parsed"] >= 0.5 * stats["total"], stats


def test_grammar_generated_networks():
    stats = _run_and_count(network_programs(), 250)
    assert stats["parsed"] >= 0.5 * stats["total"], stats
    assert stats["graph"] >= 1, stats


EXPRESSION_NETWORK = """block blk(v = 1) {{
    {block}
}}
network net(p = 3, q = 0.5, s = "s", l = [1, 2], b = true) {{
    input x: [3, 8, 8]
    {body}
}}
"""
# Where an expression `{e}` can sit: bindings, op arguments, shapes, repeat counts, names templates.
EXPRESSION_SITES = [
    ("relu", "let a = {e}\n    relu"),
    ("relu", "input y: {e}"),
    ("relu", "conv({e}, k=3, pad=1) -> relu"),
    ("relu", "conv(4, k={e}, stride={e}, pad={e}, groups={e})"),
    ("relu", "maxpool({e}) -> avgpool(2, stride={e}) -> adaptive_avgpool({e})"),
    ("relu", "flatten -> dropout({e}) -> linear({e}, bias={e})"),
    ("relu", "layer: stage conv(4, k=1) x {e}"),
    ("relu", 'layer: stage relu x 2, names="r{{e}}"'),
    ("relu", "layer: stage blk(v={e}) x 2, first(v={e})"),
    ("conv(v, k=1)", "blk({e})"),
    ("let c = {e}\n    conv(c)", "blk"),
    ("conv(in.channels * {e}, k=1)", "blk -> blk"),
]


@st.composite
def expression_programs(draw) -> str:
    expr = grammar_strategy("expr", 30, "expression").map(str.strip)
    block, body = draw(st.sampled_from(EXPRESSION_SITES))
    block = block.replace("{e}", draw(expr))
    body = re.sub(r"\{e\}", lambda _: draw(expr), body)
    return EXPRESSION_NETWORK.format(block=block, body=body)


def test_grammar_generated_expressions():
    stats = _run_and_count(expression_programs(), 300)
    assert stats["parsed"] >= 0.5 * stats["total"], stats
    assert stats["graph"] >= 1, stats


@fuzz_settings(300)
@given(text=st.one_of(TOKEN_SOUP, st.text(max_size=200), st.text(alphabet='{}()[]\n ->:=,."abc01', max_size=80)))
def test_token_soup_and_random_text(text):
    check_graph(as_source_text(text))


# A string without a line break or `{` is read as a path or a zoo name, not as source text:
# whatever it names, graph() must still answer with a graph or an ArchError.
ODD_CHARACTERS = st.sampled_from(["\x00", "\ud800", "\udcff", "/", ".", "~", "\\", ":", "*", "\r", "\t", " "])
PATHLIKE = st.one_of(
    st.text(st.one_of(st.characters(exclude_characters="\n{"), ODD_CHARACTERS), max_size=40),
    st.text(st.one_of(st.characters(exclude_characters="\n{"), ODD_CHARACTERS), max_size=40).map(lambda s: s + ".arch"),
    st.builds(lambda n, tail: "x" * n + tail, st.integers(200, 5000), st.sampled_from(["", ".arch", "/a.arch"])),
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "/",
            "~",
            "lib",
            "lib/",
            "lib/resnet.arch",
            "architectures/lib/resnet.arch",
            "resnet18",
            "RESNET18",
            "resnet18.arch",
            "/dev/null",
            "/nonexistent/x.arch",
            "a\\b.arch",
        ]
    ),
)


@fuzz_settings(300)
@given(source=PATHLIKE)
def test_single_line_input_names_a_file_or_zoo_network(source):
    note(f"source: {source!r}")
    with tempfile.TemporaryDirectory() as tmp, working_folder(Path(tmp)):
        check_graph(source)


# ---------------------------------------------------------------- 2. mutations of the zoo

ZOO = zoo_dir()
ZOO_FILES = sorted(ZOO.glob("*.arch")) + sorted((ZOO / "lib").glob("*.arch"))
ZOO_TEXTS = {p.relative_to(ZOO).as_posix(): p.read_text(encoding="utf-8") for p in ZOO_FILES}
NETWORK_FILES = sorted(name for name in ZOO_TEXTS if "/" not in name)
IMPORTS_OF = {name: re.findall(r'^(?:import|from) "([^"]+)"', ZOO_TEXTS[name], re.M) for name in ZOO_TEXTS}
IMPORTING_NETWORKS = sorted(name for name in NETWORK_FILES if IMPORTS_OF[name])

TOKEN_RE = re.compile(
    r'"""[\s\S]*?"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[0-9][0-9_]*(?:\.[0-9][0-9_]*)?(?:[eE][-+]?[0-9]+)?'
    r"|[A-Za-z_]\w*|->|\*\*|//|==|!=|<=|>=|\s+|."
)
NUMBER_RE = re.compile(r"(?<![\w.])[0-9][0-9_]*(?:\.[0-9][0-9_]*)?(?:[eE][-+]?[0-9]+)?")
EXTREME_NUMBERS = ["0", "-1", "10**30", "1" + "0" * 30, "1.5", "-0", "0.0", "2**62", "10001", "1e400"]
VOCABULARY = sorted(
    {t for text in ZOO_TEXTS.values() for t in TOKEN_RE.findall(text) if t.strip() and not t.startswith(("#", '"""'))}
)


def _tokens(text: str) -> list[str]:
    tokens = TOKEN_RE.findall(text)
    assert "".join(tokens) == text
    return tokens


def _solid(tokens: list[str]) -> list[int]:
    return [i for i, t in enumerate(tokens) if t.strip()]


def _index(data, n: int, label: str) -> int:
    return data.draw(st.integers(0, max(0, n - 1)), label=label)


def mutate_delete_token(data, text):
    tokens = _tokens(text)
    solid = _solid(tokens)
    if solid:
        del tokens[solid[_index(data, len(solid), "delete token")]]
    return "".join(tokens)


def mutate_duplicate_token(data, text):
    tokens = _tokens(text)
    solid = _solid(tokens)
    if solid:
        i = solid[_index(data, len(solid), "duplicate token")]
        tokens.insert(i, tokens[i] + " ")
    return "".join(tokens)


def mutate_swap_tokens(data, text):
    tokens = _tokens(text)
    solid = _solid(tokens)
    if len(solid) >= 2:
        i = solid[_index(data, len(solid), "swap first")]
        j = solid[_index(data, len(solid), "swap second")]
        tokens[i], tokens[j] = tokens[j], tokens[i]
    return "".join(tokens)


def mutate_insert_token(data, text):
    tokens = _tokens(text)
    i = _index(data, len(tokens) + 1, "insert at")
    tokens.insert(i, " " + data.draw(st.sampled_from(VOCABULARY), label="inserted token") + " ")
    return "".join(tokens)


def mutate_replace_name(data, text):
    tokens = _tokens(text)
    names = [i for i, t in enumerate(tokens) if re.fullmatch(r"[A-Za-z_]\w*", t)]
    if names:
        i = names[_index(data, len(names), "rename")]
        tokens[i] = data.draw(NAME, label="new name")
    return "".join(tokens)


def mutate_truncate(data, text):
    return text[: _index(data, len(text) + 1, "truncate at")]


def mutate_splice(data, text):
    other = ZOO_TEXTS[data.draw(st.sampled_from(sorted(ZOO_TEXTS)), label="splice with")]
    return text[: _index(data, len(text) + 1, "splice cut")] + other[_index(data, len(other) + 1, "splice from") :]


def mutate_random_bytes(data, text):
    i = _index(data, len(text) + 1, "bytes at")
    junk = data.draw(st.binary(min_size=1, max_size=12), label="bytes").decode("utf-8", errors="replace")
    return text[:i] + junk + text[i:]


def mutate_number(data, text):
    numbers = list(NUMBER_RE.finditer(text))
    if not numbers:
        return text
    m = numbers[_index(data, len(numbers), "number")]
    return text[: m.start()] + data.draw(st.sampled_from(EXTREME_NUMBERS), label="new number") + text[m.end() :]


def mutate_lines(data, text):
    lines = text.split("\n")
    i = _index(data, len(lines), "line")
    how = data.draw(st.sampled_from(["delete", "duplicate", "indent", "crlf", "cr"]), label="line edit")
    if how == "delete":
        del lines[i]
    elif how == "duplicate":
        lines.insert(i, lines[i])
    elif how == "indent":
        lines[i] = "\t  " + lines[i]
    elif how == "crlf":
        return "\r\n".join(lines)
    else:
        return "\r".join(lines)
    return "\n".join(lines)


MUTATIONS = [
    mutate_delete_token,
    mutate_duplicate_token,
    mutate_swap_tokens,
    mutate_insert_token,
    mutate_replace_name,
    mutate_truncate,
    mutate_splice,
    mutate_random_bytes,
    mutate_number,
    mutate_lines,
]


def mutate(data, text: str, max_mutations: int = 3) -> str:
    for _ in range(data.draw(st.integers(1, max_mutations), label="mutations")):
        mutation = data.draw(st.sampled_from(MUTATIONS), label="mutation")
        text = mutation(data, text)
    return text


@contextmanager
def working_folder(path: Path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def test_mutation_helpers_roundtrip():
    for text in ZOO_TEXTS.values():
        assert "".join(_tokens(text)) == text
    assert IMPORTING_NETWORKS and all(lib in ZOO_TEXTS for n in IMPORTING_NETWORKS for lib in IMPORTS_OF[n])


@fuzz_settings(1000)
@given(data=st.data())
def test_mutated_zoo_text(data):
    """A mutated zoo file, given as source text (imports resolve against the working folder, then the zoo)."""
    name = data.draw(st.sampled_from(sorted(ZOO_TEXTS)), label="zoo file")
    text = as_source_text(mutate(data, ZOO_TEXTS[name]))
    note(f"mutated {name}:\n{text}")
    in_repo = data.draw(st.booleans(), label="run in the repository root (else in an empty folder)")
    with tempfile.TemporaryDirectory() as tmp, working_folder(ZOO.parent if in_repo else Path(tmp)):
        check_graph(text)


@fuzz_settings(300)
@given(data=st.data())
def test_mutated_zoo_files_on_disk(data):
    """A network file importing a mutated library file, both read from a folder outside the zoo."""
    network = data.draw(st.sampled_from(IMPORTING_NETWORKS), label="network")
    libs = {lib: ZOO_TEXTS[lib] for lib in IMPORTS_OF[network]}
    mutated = data.draw(st.sampled_from(sorted(libs)), label="library to mutate")
    libs[mutated] = mutate(data, libs[mutated])
    main_text = ZOO_TEXTS[network]
    if data.draw(st.booleans(), label="mutate the network too"):
        main_text = mutate(data, main_text, max_mutations=2)
    note(f"{network}:\n{main_text}\n\n{mutated}:\n{libs[mutated]}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        main_path = root / network
        main_path.write_text(main_text, encoding="utf-8")
        texts = _texts_for_file(main_path, main_text.encode())
        for lib, text in libs.items():
            (root / lib).parent.mkdir(parents=True, exist_ok=True)
            (root / lib).write_text(text, encoding="utf-8")
            texts.update(_texts_for_file(root / lib, text.encode()))
            texts.setdefault(lib, text)
        check_graph(main_path, texts)


@pytest.mark.parametrize("cwd", ["repo", "tmp"])
def test_zoo_text_builds_from_any_working_folder(cwd, monkeypatch, tmp_path):
    """The unmutated zoo, as text: imports resolve via the zoo from the repo root and from elsewhere."""
    monkeypatch.chdir(ZOO.parent if cwd == "repo" else tmp_path)
    for name in NETWORK_FILES:
        outcome = check_graph(ZOO_TEXTS[name])
        assert isinstance(outcome, nx.DiGraph), f"{name}: {outcome}"


# ---------------------------------------------------------------- 3. invalid UTF-8


def _texts_for_file(path: Path, data: bytes) -> dict[str, str]:
    text = data.decode("utf-8", errors="replace")
    keys = {str(path), str(path.resolve()), os.path.relpath(path), os.path.relpath(path.resolve())}
    return {key: text for key in keys}


def test_invalid_utf8_file_is_a_located_error(tmp_path):
    path = tmp_path / "bad.arch"
    data = b"network n {\n    input x: [4]\n    r\xffelu\n}\n"
    path.write_bytes(data)
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(path)
    err = info.value
    check_error(err, _texts_for_file(path, data))
    assert err.span is not None, "an invalid UTF-8 file must be reported with a location"
    assert (err.span.line, err.span.column) == (3, 6), err.span
    # A str path works the same way.
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(str(path))
    assert info.value.span is not None and info.value.span.line == 3


def test_invalid_utf8_in_imported_file_is_a_located_error(tmp_path):
    (tmp_path / "lib").mkdir()
    lib_data = b"block blk {\n    relu\n    # caf\xe9 in latin-1\n}\n"
    (tmp_path / "lib" / "bad.arch").write_bytes(lib_data)
    main = tmp_path / "main.arch"
    main_text = 'import "lib/bad.arch"\nnetwork n {\n    input x: [4]\n    blk\n}\n'
    main.write_text(main_text, encoding="utf-8")
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(main)
    err = info.value
    texts = {**_texts_for_file(main, main_text.encode()), **_texts_for_file(tmp_path / "lib" / "bad.arch", lib_data)}
    check_error(err, texts)
    assert err.span is not None


@fuzz_settings(200)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda name, at, junk: ZOO_TEXTS[name].encode()[:at] + junk + ZOO_TEXTS[name].encode()[at:],
            st.sampled_from(NETWORK_FILES),
            st.integers(0, 2000),
            st.binary(min_size=1, max_size=8),
        ),
    )
)
def test_arbitrary_bytes_in_a_file(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp).resolve() / "net.arch"
        path.write_bytes(data)
        outcome = check_graph(path, _texts_for_file(path, data))
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            assert isinstance(outcome, archdsl.ArchError)
            assert outcome.span is not None, f"invalid UTF-8 reported without a location: {outcome}"


# ---------------------------------------------------------------- 4. deep nesting and long files


class _TookTooLong(BaseException):
    pass


@contextmanager
def time_limit(seconds: float):
    """Abort the block (with _TookTooLong) after ``seconds`` of wall-clock time (main thread, POSIX)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise _TookTooLong(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _at_stack_depth(extra_frames: int, fn):
    """Call ``fn`` under ``extra_frames`` more Python frames (RecursionError surfaces at varying places)."""
    if extra_frames <= 0:
        return fn()
    return _at_stack_depth(extra_frames - 1, fn)


def _let(expr: str) -> str:
    return "network n {\n    input x: [4]\n    let a = " + expr + "\n    relu\n}\n"


def _nested_sums(depth: int, terms: int) -> str:
    """Lists nested ``depth`` deep, each level a left-deep sum of ``terms`` operands; commas between levels."""
    expr = "0"
    for _ in range(depth):
        expr = "[0, " + expr + " + 1" * terms + ", 0]"
    return expr


def _deferred_lets(count: int) -> str:
    """A block whose lets read the input's shape, each from the one before (evaluated lazily, recursively)."""
    lets = "".join(f"    let a{i + 1} = a{i} + 1\n" for i in range(count))
    return (
        f"block blk {{\n    let a0 = in.channels\n{lets}    conv(a{count}, k=1)\n}}\n"
        "network n {\n    input x: [3, 8, 8]\n    blk\n}\n"
    )


N = 5000
DEEP_EXPRESSIONS = {
    "parentheses": "network n {\n input x: [4]\n let a = " + "(" * N + "1" + ")" * N + "\n}",
    "unary_minus": _let("-" * N + "1"),
    "not": _let("not " * N + "true"),
    "nested_lists": _let("[" * N + "]" * N),
    "long_sum": _let(" + ".join(["1"] * N)),
    "power_tower": _let(" ** ".join(["1"] * N)),
    "ternaries": _let("1 if true else " * N + "1"),
    "function_calls": _let("abs(" * N + "1" + ")" * N),
    "attribute_chain": _let("in" + ".channels" * N),
    "index_chain": _let("[1]" + "[0]" * N),
    "minus_parenthesis": _let("-(" * N + "1" + ")" * N),
    # Within per-statement limits on brackets and operators, but deep as an AST.
    "nested_sums": _let(_nested_sums(40, 150)),
    "nested_sums_in_arguments": "network n {\n    input x: [4]\n    linear(" + _nested_sums(40, 150) + ")\n}\n",
    "deferred_lets": _deferred_lets(1000),
    "long_label_path": "network n {\n    input x: [4]\n    " + ".".join(["a"] * N) + ": relu\n}\n",
}

DEEP_XFAIL: dict[str, str] = {}  # name -> reason, for the cases above that still crash


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, raises=RecursionError, reason=DEEP_XFAIL[name]))
        if name in DEEP_XFAIL
        else name
        for name in DEEP_EXPRESSIONS
    ],
)
def test_deeply_nested_expression(name):
    """Deep nesting gives a graph or an ArchError -- never a RecursionError -- at every stack alignment."""
    text = DEEP_EXPRESSIONS[name]
    with time_limit(120):
        for extra in range(5):  # where the recursion limit strikes depends on the caller's stack depth
            _at_stack_depth(extra, lambda: check_graph(text))


def test_deeply_nested_blocks():
    blocks = "".join(f"block b{i} {{\n    b{i + 1}\n}}\n" for i in range(200)) + "block b200 {\n    relu\n}\n"
    text = blocks + "network n {\n    input x: [4]\n    b0\n}\n"
    with time_limit(120):
        outcome = check_graph(text)
    assert isinstance(outcome, archdsl.ArchError)


def test_deep_import_chain(tmp_path):
    for i in range(60):
        (tmp_path / f"m{i}.arch").write_text(f'import "m{i + 1}.arch"\nblock b{i} {{\n    relu\n}}\n')
    (tmp_path / "m60.arch").write_text("block b60 {\n    relu\n}\n")
    main = tmp_path / "main.arch"
    main.write_text('import "m0.arch"\nnetwork n {\n    input x: [4]\n    b0\n}\n')
    texts = {}
    for path in tmp_path.glob("*.arch"):
        texts.update(_texts_for_file(path, path.read_bytes()))
    with time_limit(120):
        check_graph(main, texts)


LONG = 20_000
LONG_PROGRAMS = {
    "chain_of_relus": "network n {\n    input x: [4]\n    x\n" + "        -> relu\n" * LONG + "}\n",
    "relu_statements": "network n {\n    input x: [4]\n" + "    relu\n" * LONG + "}\n",
}
LONG_SECONDS = 120  # a guard against hangs and quadratic passes (about 5 s alone), not a speed target


@pytest.mark.parametrize("name", list(LONG_PROGRAMS))
def test_twenty_thousand_line_file(name):
    text = LONG_PROGRAMS[name]
    start = time.perf_counter()
    with time_limit(LONG_SECONDS):
        outcome = check_graph(text)
    assert isinstance(outcome, nx.DiGraph), outcome
    assert outcome.number_of_nodes() == LONG + 1
    assert time.perf_counter() - start < LONG_SECONDS


def test_many_syntax_errors_stay_bounded():
    text = "network n {\n    input x: [4]\n" + "    relu(\n    ) )\n" * 2000 + "}\n"
    with time_limit(120):
        outcome = check_graph(text)
    assert isinstance(outcome, archdsl.ArchError)
    assert len(outcome.diagnostics) <= 50


def test_recursion_limit_is_left_alone():
    before = sys.getrecursionlimit()
    check_graph(DEEP_EXPRESSIONS["parentheses"])
    assert sys.getrecursionlimit() == before


# ---------------------------------------------------------------- known crashes, one regression test each


if KNOWN_CRASHES:  # one strict-xfail regression test per crash not fixed yet

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param(name, marks=pytest.mark.xfail(strict=True, raises=crash.exception, reason=crash.reason))
            for name, crash in KNOWN_CRASHES.items()
        ],
    )
    def test_known_crash(name):
        crash = KNOWN_CRASHES[name]
        with tempfile.TemporaryDirectory() as tmp, working_folder(Path(tmp)):
            try:
                check_graph(crash.text, tolerate_known=False)
            except crash.exception as exc:
                assert raised_in(exc) == (crash.file, crash.function), f"now raised in {raised_in(exc)}"
                raise


# Inputs that once crashed (found by the fuzz tests above); each must now be a located ArchError.
FIXED_CRASHES = {
    "zero_to_a_negative_power": "network n {\n    input x: [4]\n    let a = 0 ** -1\n}\n",
    "float_power_overflow": "network n {\n    input x: [4]\n    let a = 1e300 ** 2\n}\n",
    "complex_power": "network n {\n    input x: [4]\n    let a = (-8) ** 0.5\n}\n",
    "null_byte_in_path": "a\x00.arch",
    "surrogate_in_path": "\ud800.arch",
    "file_name_too_long": "x" * 251,
    "import_name_too_long": 'import "' + "x" * 256 + '"\n',
    "null_byte_in_import": 'import "a\x00b"\n',
    "surrogate_in_import": 'import "\ud800"\n',
}


@pytest.mark.parametrize("name", list(FIXED_CRASHES))
def test_inputs_that_once_crashed_are_errors_now(name):
    with tempfile.TemporaryDirectory() as tmp, working_folder(Path(tmp)):
        outcome = check_graph(FIXED_CRASHES[name], tolerate_known=False)
    assert isinstance(outcome, archdsl.ArchError)


# ------------------------------------------------------------ imports and pathological inputs


def test_import_through_a_symlink_pointing_outside_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.arch").write_text("block b() {\n    relu\n}\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "lib.arch").symlink_to(outside / "secret.arch")
    (project / "main.arch").write_text('import "lib.arch"\nnetwork n() {\n    input x: [4]\n    b()\n}\n')
    with pytest.raises(archdsl.ArchImportError) as info:
        archdsl.graph(project / "main.arch")
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E255" and "leaves the folders" in diagnostic.message
    assert diagnostic.span.line == 1


def test_imports_load_only_arch_files(tmp_path):
    (tmp_path / "helpers.py").write_text("import os\n")
    (tmp_path / "main.arch").write_text('import "helpers.py"\nnetwork n() {\n    input x: [4]\n}\n')
    with pytest.raises(archdsl.ArchImportError, match=r"is not an `\.arch` file") as info:
        archdsl.graph(tmp_path / "main.arch")
    assert info.value.diagnostics[0].code == "E255"


def test_blocks_that_add_no_nodes_still_count_against_the_limit():
    """10^8 instances of an empty-handed block would hang; the instance count stops them at once."""
    source = (
        "block b() {\n    assert true\n}\n"
        "block c() {\n    s: stage b() x 10000\n}\n"
        "network n {\n    input x: [4]\n    t: stage c() x 10000\n    fc: linear(2)\n}\n"
    )
    with time_limit(60), pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(source, limits=archdsl.Limits(max_nodes=5000))
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E321" and "block instances" in diagnostic.message
    assert diagnostic.span.line == 5


def test_import_of_a_link_to_a_non_arch_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("block b() {\n    relu\n}\n")
    (tmp_path / "lib.arch").symlink_to(tmp_path / "notes.txt")
    (tmp_path / "main.arch").write_text('import "lib.arch"\nnetwork n() {\n    input x: [4]\n    b()\n}\n')
    with pytest.raises(archdsl.ArchImportError, match=r"is not an `\.arch` file"):
        archdsl.graph(tmp_path / "main.arch")


def test_a_long_else_if_chain_is_a_located_error_not_a_recursion_error():
    arms = "".join(f" else if 0 == {i} {{\n        a{i}: relu\n    }}" for i in range(1, 3000))
    source = "network n {\n    input x: [4]\n    if 0 == 1 {\n        a0: relu\n    }" + arms + "\n}\n"
    with time_limit(120), pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(source)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E323" and diagnostic.span is not None and diagnostic.span.line > 3
