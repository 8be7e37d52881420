"""A node may feed one merge more than once (``add(a, a)``, ``concat(a, b, a)``): inputs are an ordered tuple."""

from __future__ import annotations

import subprocess

import pytest
import torch

import archdsl
from archdsl.render import render_dot

TWICE = """
network twice {
    input x: [2, 6, 6]
    a: conv(3, k=3, pad=1)
    b: conv(5, k=1)
    doubled: add(a, a)
    joined: concat(a, b, doubled, a)
    gap: adaptive_avgpool(1) -> flatten -> fc: linear(4)
}
"""


@pytest.fixture(scope="module")
def graph():
    return archdsl.graph(TWICE)


def test_inputs_keep_order_and_repeats(graph):
    assert graph.nodes["doubled"]["inputs"] == ("a", "a")
    assert graph.nodes["joined"]["inputs"] == ("a", "b", "doubled", "a")
    assert graph.nodes["joined"]["input_shapes"] == ((3, 6, 6), (5, 6, 6), (3, 6, 6), (3, 6, 6))
    assert graph.nodes["joined"]["shape"] == (14, 6, 6)
    assert [i.kind for i in graph.nodes["doubled"]["record"].inputs] == ["flow", "skip"]


def test_edges_are_one_per_pair_at_the_first_position(graph):
    assert graph.edges["a", "joined"]["position"] == 0
    assert graph.edges["doubled", "joined"]["position"] == 2
    assert graph.edges["a", "doubled"]["kind"] == "flow"
    assert graph.number_of_edges() == sum(len(set(d["inputs"])) for _, d in graph.nodes(data=True))


def test_compiles_to_the_same_computation(graph):
    model = archdsl.load(TWICE, seed=0).eval()
    x = torch.randn(2, 2, 6, 6)
    a = model.a(x)
    b = model.b(a)  # a statement continues from the one before it
    expected = model.fc(torch.cat([a, b, a + a, a], 1).mean((2, 3)))
    torch.testing.assert_close(model(x), expected)
    assert "doubled = a + a" in model.code
    assert "cat([a, b, doubled, a]" in model.code


def test_renders_each_use(graph, tmp_path):
    text = render_dot(graph, level="layer")
    assert "a -> doubled" in text and "×2" in text  # the one edge says it fills two inputs
    assert "3 ×2" in text  # a concat edge keeps its channel count
    svg = subprocess.run(["dot", "-Tsvg"], input=text.encode(), capture_output=True, check=True).stdout
    assert b"<svg" in svg


def test_a_merge_that_needs_one_more_input_counts_repeats():
    with pytest.raises(archdsl.ArchTypeError, match="takes 3 input"):
        archdsl.graph(TWICE.replace("doubled: add(a, a)", "doubled: gate(a, a)"))
