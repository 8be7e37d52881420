"""Structure that grows faster than its text: block-call fan-outs and dense stages.

A few hundred bytes can ask for 2^14 block instances or a dense stage whose
n repeats have about n^2/2 inputs between them. The contract is the one of
tests/test_robustness.py: :func:`archdsl.graph` returns a graph or raises an
:class:`archdsl.ArchError` (an :class:`archdsl.ArchLimitError` for what is
too large), in time about linear in what it builds.

The reproducers of issue 13 come first, then hypothesis properties that
generate fan-outs (blocks calling blocks several times, nested, labelled or
not) and dense stages of random sizes. The runs are derandomized; set
``ARCHDSL_FUZZ_EXAMPLES`` for random ones, as in tests/test_robustness.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import networkx as nx
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from test_robustness import check_graph, fuzz_settings, time_limit

import archdsl

# ---------------------------------------------------------------- unlabelled block calls: linear names


def unlabelled_calls(count: int) -> str:
    """``count`` lines of ``u()``, each an unlabelled instance of a one-node block."""
    return "block u() {\n    relu\n}\nnetwork n() {\n    input x: [4]\n" + "    u()\n" * count + "}\n"


def binary_fan_out(depth: int) -> str:
    """Blocks ``b1`` to ``b<depth>``, each calling the one below twice: 2^depth relus in about 35 bytes a level."""
    blocks = ["block b0() {\n    relu\n}\n"]
    blocks += [f"block b{k}() {{\n    b{k - 1}() -> b{k - 1}()\n}}\n" for k in range(1, depth + 1)]
    return "".join(blocks) + f"network n() {{\n    input x: [4]\n    b{depth}()\n}}\n"


@pytest.fixture
def membership_tests(monkeypatch) -> list[int]:
    """Counts the graph membership tests (``name in graph``) made while building."""
    count = [0]
    contains = nx.DiGraph.__contains__

    def counting(self, node):
        count[0] += 1
        return contains(self, node)

    monkeypatch.setattr(nx.DiGraph, "__contains__", counting)
    return count


@pytest.mark.parametrize("source", [unlabelled_calls(2000), binary_fan_out(11)], ids=["u_lines", "fan_out"])
def test_names_of_unlabelled_instances_cost_a_constant_each(source, membership_tests):
    """Each unlabelled instance used to try every name taken before it (about 1,000 tests a node here)."""
    g = archdsl.graph(source)
    assert membership_tests[0] < 20 * g.number_of_nodes()


def test_unlabelled_instances_keep_their_names():
    g = archdsl.graph(unlabelled_calls(3))
    assert list(g.nodes) == ["x", "relu", "relu_1", "relu_2"]
    g = archdsl.graph(binary_fan_out(2))
    assert list(g.nodes) == ["x", "relu", "relu_1", "relu_2", "relu_3"]


@pytest.mark.parametrize(
    ("source", "nodes"),
    [(unlabelled_calls(20_000), 20_001), (binary_fan_out(14), 2**14 + 1)],
    ids=["20000_u_lines", "528_byte_fan_out"],
)
def test_reproducers_of_quadratic_naming(source, nodes):
    """84 s and 57 s before names were allocated in linear time; about 5 s and 2.5 s after, on 2 busy cores."""
    start = time.process_time()
    with time_limit(120):
        g = archdsl.graph(source)
    assert g.number_of_nodes() == nodes
    assert time.process_time() - start < 30


# ---------------------------------------------------------------- dense stages: edges counted before they exist

DENSE = "block u() {{\n    relu\n}}\nnetwork n() {{\n    input x: [4]\n    s: stage u() x {n}, connect=dense\n}}\n"


def dense_edges(repeats: int) -> int:
    """The concatenations' inputs of a dense stage: repeat i reads the stage's input and i outputs; so does `out`."""
    return (repeats - 1) * (repeats + 2) // 2 + repeats + 1


@pytest.mark.parametrize("repeats", [4000, 10_000])
def test_a_dense_stage_is_counted_before_it_is_expanded(repeats):
    """x 4000 took 47 s and 4 GB, x 10000 raised a MemoryError; both are refused at once, at the count."""
    start = time.process_time()
    with pytest.raises(archdsl.ArchLimitError) as info:
        archdsl.graph(DENSE.format(n=repeats))
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E321"
    assert f"dense stage `s` of {repeats} repeats needs {dense_edges(repeats):,} edges" in diagnostic.message
    assert "over the limit of 1,000,000" in diagnostic.message
    assert "Limits(max_edges=...)" in diagnostic.hint
    assert (diagnostic.span.line, diagnostic.span.column, diagnostic.span.end_column) == (6, 20, 20 + len(str(repeats)))
    assert time.process_time() - start < 5


def test_edges_made_before_a_dense_stage_count_too():
    """Instances of a block with a dense stage of 1,000 repeats (502,500 edges each): the second is refused."""
    source = (
        "block d() {\n    s: stage relu x 1000, connect=dense\n}\n"
        "network n() {\n    input x: [4]\n    t: stage d() x 3\n}\n"
    )
    with pytest.raises(archdsl.ArchLimitError) as info:
        archdsl.graph(source)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E321" and "takes the network to 1,004,000" in diagnostic.message
    assert diagnostic.span.line == 2


def test_merges_count_against_the_edge_limit():
    merges = "    a: concat(x, x, x, x, x, x)\n    b: concat(a, a, a, a, a, a)\n"
    source = "network n() {\n    input x: [4]\n" + merges + "    relu\n}\n"
    with pytest.raises(archdsl.ArchLimitError) as info:
        archdsl.graph(source, limits=archdsl.Limits(max_edges=10))
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E321" and diagnostic.message == "the network has more than 10 edges (node inputs)"
    assert diagnostic.span.line == 5


def test_the_default_edge_limit_fits_the_zoo_by_far():
    """densenet201 has the most edges of the zoo; a dense stage of 1,412 repeats still fits."""
    assert archdsl.graph("densenet201").number_of_edges() * 100 < archdsl.Limits().max_edges
    assert dense_edges(1412) <= archdsl.Limits().max_edges < dense_edges(1413)


# ---------------------------------------------------------------- generated fan-outs and dense stages


@dataclass(frozen=True)
class Expansion:
    """What a block (or the network's body) expands to: nodes, block instances and edges (node inputs)."""

    nodes: int
    instances: int
    edges: int

    def __add__(self, other: Expansion) -> Expansion:
        return Expansion(self.nodes + other.nodes, self.instances + other.instances, self.edges + other.edges)


def _use(callee: Expansion, how: tuple) -> Expansion:
    """``callee`` used once by a call (``("call", labelled)``) or by a stage (``("stage", repeats, dense)``)."""
    if how[0] == "call":
        return callee
    _, repeats, dense = how
    total = Expansion(callee.nodes * repeats, callee.instances * repeats, callee.edges * repeats)
    return total + Expansion(repeats, 0, dense_edges(repeats)) if dense else total


def _statement(callee: str, how: tuple, index: int) -> str:
    if how[0] == "call":
        return f"    c{index}: {callee}()" if how[1] else f"    {callee}()"
    _, repeats, dense = how
    return f"    s{index}: stage {callee}() x {repeats}" + (", connect=dense" if dense else "")


USES = st.one_of(
    st.tuples(st.just("call"), st.booleans()),
    st.tuples(st.just("stage"), st.integers(1, 4), st.booleans()),
)


@st.composite
def fan_outs(draw) -> tuple[str, Expansion, bool]:
    """Blocks b1 ... bD, each using the one below one to four times (calls and stages), and a network using bD.

    Returns the source, what it expands to, and whether a dense stage sits
    where an unlabelled instance may repeat it under the same names (E224).
    """
    # Each block ends with a layer that resets the size: dense stages pass their input on, so nested ones grow.
    lines = ["block b0() {\n    linear(4)\n}"]
    expansion = Expansion(1, 1, 1)
    depth = draw(st.integers(1, 6))
    dense_anywhere = False
    for level in range(1, depth + 2):
        uses = draw(st.lists(USES, min_size=1, max_size=4))
        dense_anywhere |= any(how[0] == "stage" and how[2] for how in uses)
        body = "\n".join(_statement(f"b{level - 1}", how, i) for i, how in enumerate(uses))
        total = sum((_use(expansion, how) for how in uses), start=Expansion(0, 0, 0))
        if level <= depth:
            lines.append(f"block b{level}() {{\n{body}\n    linear(4)\n}}")
            expansion = total + Expansion(1, 1, 1)  # the closing linear, and the instance itself
        else:  # the network's body
            lines.append(f"network n() {{\n    input x: [4]\n{body}\n}}")
            expansion = total + Expansion(1, 0, 0)  # the input
    return "\n".join(lines) + "\n", expansion, dense_anywhere


FUZZ_LIMITS = archdsl.Limits(max_nodes=3000, max_edges=6000)
SECONDS_PER_EXAMPLE = 20  # CPU seconds; an example builds at most a few thousand nodes


def build_within_time(source: str, limits: archdsl.Limits):
    """``archdsl.graph`` under ``limits``: a graph or a well-located ArchError, in bounded time."""
    start = time.process_time()
    with time_limit(3 * SECONDS_PER_EXAMPLE):
        outcome = check_graph(source, limits=limits, tolerate_known=False)
    assert time.process_time() - start < SECONDS_PER_EXAMPLE
    return outcome


@fuzz_settings(40)
@given(fan_outs())
def test_generated_fan_outs_build_or_stop_at_a_limit(case):
    source, expected, dense_anywhere = case
    note(f"expands to {expected}")
    outcome = build_within_time(source, FUZZ_LIMITS)
    too_many = max(expected.nodes, expected.instances) > FUZZ_LIMITS.max_nodes
    # Edges added after the last node's check (at most a dense stage's `out`) may go unnoticed.
    too_many |= expected.edges > FUZZ_LIMITS.max_edges + 6
    if isinstance(outcome, nx.DiGraph):
        assert not too_many
        assert outcome.number_of_nodes() == expected.nodes
        return
    codes = {d.code for d in outcome.diagnostics}
    if codes == {"E321"}:
        assert isinstance(outcome, archdsl.ArchLimitError) and len(outcome.diagnostics) == 1
        assert too_many or dense_anywhere  # failed statements leave stand-in nodes, so counts may differ
    else:
        # A dense stage in a block instantiated twice, unlabelled, under one prefix: its concats collide.
        assert dense_anywhere and codes == {"E224"}, outcome
    assert dense_anywhere or codes == {"E321"}


@st.composite
def dense_stages(draw) -> tuple[str, int, bool, archdsl.Limits]:
    """A dense stage of up to 600 repeats of a block or an op, under an edge limit of 100 to 50,000."""
    repeats = draw(st.one_of(st.integers(1, 20), st.integers(20, 600)))
    block = draw(st.booleans())
    callee = "u()" if block else "linear(4)"  # a layer that keeps the concatenations' sizes linear in the repeats
    source = (
        "block u() {\n    linear(4)\n}\n"
        f"network n() {{\n    input x: [4]\n    s: stage {callee} x {repeats}, connect=dense\n    linear(2)\n}}\n"
    )
    limits = archdsl.Limits(max_edges=draw(st.integers(100, 50_000)))
    return source, repeats, block, limits


@fuzz_settings(30)
@given(dense_stages())
def test_generated_dense_stages_build_or_stop_at_the_count(case):
    source, repeats, block, limits = case
    outcome = build_within_time(source, limits)
    if dense_edges(repeats) > limits.max_edges:  # counted before the stage makes any node
        assert isinstance(outcome, archdsl.ArchLimitError), outcome
        (diagnostic,) = outcome.diagnostics
        assert diagnostic.code == "E321" and f"dense stage `s` of {repeats} repeats" in diagnostic.message
        assert (diagnostic.span.line, diagnostic.span.column) == (6, 17 + len("u()" if block else "linear(4)"))
    elif dense_edges(repeats) + repeats + 1 <= limits.max_edges:  # with the input of each linear
        assert isinstance(outcome, nx.DiGraph), outcome
        assert outcome.number_of_nodes() == 2 * repeats + 2  # x, the repeats, r - 1 concats, `out`, the last linear
