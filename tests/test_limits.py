"""Limits: every bound on input size has a default, a located error when exceeded, and an API override."""

from __future__ import annotations

import pytest

import archdsl


def test_limits_are_overridable_per_call_and_only_for_that_call():
    source = "network n() {\n    input x: [4]\n    s: stage linear(4) x 12000\n}\n"
    with pytest.raises(archdsl.ArchError, match=r"E317.*limit of 10000"):
        archdsl.graph(source)
    assert archdsl.graph(source, limits=archdsl.Limits(max_repeat=20_000)).number_of_nodes() == 12_001
    with pytest.raises(archdsl.ArchError, match="E317"):  # the default is back
        archdsl.graph(source)


NESTED_BLOCKS = """block inner() {
    fc: linear(4)
}
block outer() {
    a: inner()
}
network n() {
    input x: [4]
    b: outer()
}
"""


@pytest.mark.parametrize(
    ("limits", "source", "code"),
    [
        ({"max_nodes": 10}, "resnet18", "E321"),
        ({"max_bracket_depth": 3}, "network n() {\n    let a = ((((1))))\n    input x: [4]\n}\n", "E102"),
        ({"max_operators": 3}, "network n() {\n    let a = 1 + 2 + 3 + 4 + 5\n    input x: [4]\n}\n", "E102"),
        ({"max_int": 1000}, "network n() {\n    input x: [4]\n    fc: linear(10 ** 4)\n}\n", "E3"),
        ({"max_params": 100}, "network n() {\n    input x: [4]\n    fc: linear(100)\n}\n", "E326"),
        ({"max_string": 10}, 'network n() {\n    let s = "abcdef" + "ghijkl"\n    input x: [4]\n}\n', "E303"),
        ({"max_prefix_run": 2}, "network n() {\n    let a = - - - 1\n    input x: [4]\n}\n", "E102"),
        ({"max_dim": 100}, "network n() {\n    input x: [4]\n    fc: linear(200)\n}\n", "E404"),
        ({"max_import_depth": 1}, 'import "a.arch"\nnetwork n() {\n    input x: [4]\n}\n', "E254"),
        ({"max_block_depth": 1}, NESTED_BLOCKS, "E217"),
        ({"max_edges": 20}, "network n() {\n    input x: [4]\n    s: stage relu x 6, connect=dense\n}\n", "E321"),
    ],
)
def test_each_limit_can_be_lowered(limits, source, code, tmp_path):
    (tmp_path / "a.arch").write_text('import "b.arch"\n')
    (tmp_path / "b.arch").write_text("block b() {\n    fc: linear(4)\n}\n")
    if source.startswith("import"):
        (tmp_path / "main.arch").write_text(source)
        source = tmp_path / "main.arch"
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.load(source, limits=archdsl.Limits(**limits))
    assert all(d.code.startswith(code) for d in info.value.diagnostics)
    assert all(d.span is not None and d.span.line >= 1 for d in info.value.diagnostics)


def test_node_limit_stops_at_the_first_node_over_it():
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph("resnet50", limits=archdsl.Limits(max_nodes=20))
    assert [d.code for d in info.value.diagnostics] == ["E321"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_limits_reject_nonsense(bad):
    with pytest.raises(ValueError, match="positive integer"):
        archdsl.Limits(max_repeat=bad)


def test_integer_limit_message_names_the_limit_in_force():
    source = "network n() {\n    input x: [4]\n    fc: linear(2000)\n}\n"
    with pytest.raises(archdsl.ArchError, match=r"\(\|n\| <= 1,000\)"):
        archdsl.graph(source, limits=archdsl.Limits(max_int=1000))


def test_a_checkpoint_rebuilds_under_the_limits_it_was_compiled_with(tmp_path):
    source = "network n() {\n    input x: [4]\n    s: stage linear(4) x 12000\n}\n"
    module = archdsl.load(source, limits=archdsl.Limits(max_repeat=20_000))
    archdsl.save_checkpoint(module, tmp_path / "big.pt")
    restored = archdsl.load_checkpoint(tmp_path / "big.pt")
    assert len(list(restored.parameters())) == len(list(module.parameters()))
