"""Structure that depends on shapes, integer and computed labels, module names, stages that continue a numbering."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models._utils import _make_divisible

import archdsl
from archdsl.expr import make_divisible

IR = """
block ir(out, stride = 1, expand = 6) {
    let hidden = in.channels * expand
    let e = 1 if expand != 1 else 0
    if expand != 1 {
        conv.0: conv(hidden, k=1, bias=false)
    }
    conv.(e): conv(hidden, k=3, stride=stride, pad=1, groups=hidden, bias=false)
    conv.(e + 1): conv(out, k=1, bias=false) -> conv.(e + 2): batchnorm
    if stride == 1 and in.channels == out {
        skip in -> conv.(e + 2)
    }
}
"""


def net(body: str, blocks: str = IR, shape: str = "[8, 16, 16]") -> str:
    return f"{blocks}\nnetwork n {{\n    input x: {shape}\n{body}\n}}\n"


def nodes(source: str) -> list[str]:
    return [n for n in archdsl.graph(source) if n != "x"]


# ------------------------------------------------------------------ shapes decide structure


def test_a_condition_reads_the_input_channels():
    g = archdsl.graph(net("    a: ir(8)\n    b: ir(16, stride=2)\n    c: ir(16)"))
    assert "a.add" in g and "c.add" in g  # same channels, stride 1: residual
    assert not any(n.startswith("b.add") for n in g)  # channels change: none
    assert g.nodes["b.conv.0"]["shape"] == (48, 16, 16)  # hidden read from in.channels (8 * 6)


def test_a_repeat_count_and_an_argument_read_shapes_of_earlier_nodes():
    g = archdsl.graph(net("    a: conv(24, k=1)\n    s: stage ir(24) x a.channels // 8\n    t: conv(s.channels, k=1)"))
    assert [n for n in g if n.startswith("s.") and n.endswith(".add")] == ["s.0.add", "s.1.add", "s.2.add"]
    assert g.nodes["t"]["shape"][0] == 24


def test_a_label_computed_from_a_shape():
    g = archdsl.graph(net("    a: conv(4, k=1)\n    layer.(a.channels): relu"))
    assert "layer.4" in g


def test_reading_a_node_written_later_is_e325_at_the_reader():
    source = net("    if later.channels == 8 {\n        a: relu\n    }\n    later: conv(8, k=1)", blocks="")
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(source)
    assert info.value.code == "E325"
    assert "`later` is defined later" in info.value.message
    assert info.value.diagnostics[0].span.line == 4


def test_an_error_upstream_of_a_condition_is_reported_once():
    source = net("    a: conv(8, k=99)\n    if a.channels == 8 {\n        b: relu\n    }\n    c: relu", blocks="")
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(source)
    assert [d.code for d in info.value.diagnostics] == ["E401"]


def test_a_node_argument_reading_a_node_downstream_of_it_is_still_e402():
    source = net(
        "    a: conv(b.channels, k=1)\n    b: conv(4, k=1)\n    if b.channels == 4 {\n        c: relu\n    }", ""
    )
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(source)
    assert "E402" in {d.code for d in info.value.diagnostics}


def test_shape_dependent_structure_compiles_and_runs():
    model = archdsl.load(net("    a: ir(8)\n    b: ir(16, stride=2)"), seed=0)
    assert model(torch.randn(2, 8, 16, 16)).shape == (2, 16, 8, 8)


# ------------------------------------------------------------------ labels


def test_integer_labels_and_numbered_paths():
    blocks = "block cba(c) {\n    0: conv(c, k=3, pad=1)\n    1: batchnorm\n    2: relu6\n}\n"
    model = archdsl.load(net("    features.0: cba(4)\n    1: cba(4)", blocks=blocks), seed=0)
    assert [k for k in model.state_dict() if k.endswith("weight")] == [
        "features.0.0.weight",
        "features.0.1.weight",
        "1.0.weight",
        "1.1.weight",
    ]


def test_computed_segments_follow_an_optional_layer():
    assert nodes(net("    a: ir(8, expand=1)")) == ["a.conv.0", "a.conv.1", "a.conv.2", "a.add"]
    assert nodes(net("    a: ir(8)")) == ["a.conv.0", "a.conv.1", "a.conv.2", "a.conv.3", "a.add"]


@pytest.mark.parametrize(
    ("segment", "problem"),
    [
        ("(0 - 1)", "cannot be negative"),
        ("(1.5)", "is an int or a string, got float"),
        ('("a.b")', "holds `.`"),
        ('("a b")', "holds a space"),
        ('("")', "is empty"),
        ("(true)", "got bool"),
    ],
)
def test_a_bad_computed_segment_is_e320_at_the_expression(segment, problem):
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(net(f"    layer.{segment}: relu", blocks=""))
    assert info.value.code == "E320"
    assert problem in info.value.message
    span = info.value.diagnostics[0].span
    assert (span.line, span.column) == (4, 12)


def test_names_pytorch_accepts_compile_trace_and_script():
    blocks = "block u(c) {\n    conv: conv(c, k=3, pad=1) -> relu\n}\n"
    source = net('    trunk.block1: stage u(4) x 2, names="block1-{i}"\n    ("x+y"): conv(4, k=1)', blocks=blocks)
    model = archdsl.load(source, seed=0)
    assert "trunk.block1.block1-0.conv.weight" in model.state_dict()
    assert "x+y.weight" in model.state_dict()
    x = torch.randn(1, 8, 16, 16)
    torch.testing.assert_close(torch.jit.script(model)(x), model(x))
    torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), model(x))


# ------------------------------------------------------------------ stages continue a numbering


UNIT = "block unit(c, stride = 1) {\n    conv: conv(c, k=3, stride=stride, pad=1) -> relu\n}\n"


def test_stages_under_one_label_continue_its_numbering():
    body = (
        "    features.0: unit(8, stride=2)\n"
        "    features: stage unit(8) x 2\n"
        "    features: stage unit(16) x 3, first(stride=2)\n"
        "    features.6: unit(32)"
    )
    repeats = sorted({n.split(".")[1] for n in nodes(net(body, blocks=UNIT))}, key=int)
    assert repeats == [str(k) for k in range(7)]


def test_a_new_stage_label_still_starts_at_zero_and_a_template_keeps_i():
    g = nodes(net('    layer1: stage unit(8) x 2\n    layer2: stage unit(8) x 2, names="b{i}"', blocks=UNIT))
    assert {n.rsplit(".", 1)[0] for n in g} == {"layer1.0", "layer1.1", "layer2.b0", "layer2.b1"}


def test_a_label_that_collides_with_a_continued_numbering_is_e224():
    body = "    features: stage unit(8) x 2\n    features.1: unit(8)"
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(net(body, blocks=UNIT))
    assert "E224" in {d.code for d in info.value.diagnostics}


def test_a_stage_may_not_reuse_the_label_of_a_node():
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(net("    features: conv(8, k=1)\n    features: stage unit(8) x 2", blocks=UNIT))
    assert info.value.code == "E224"


# ------------------------------------------------------------------ functions


@settings(deadline=None)
@given(
    st.one_of(st.integers(1, 5000), st.floats(0.1, 5000, allow_nan=False)),
    st.sampled_from([1, 2, 4, 8, 16]),
    st.one_of(st.none(), st.integers(1, 64)),
)
def test_make_divisible_is_torchvisions(value, divisor, min_value):
    assert make_divisible(value, divisor, min_value) == _make_divisible(value, divisor, min_value)


def test_make_divisible_len_and_sum_in_the_language():
    source = net(
        "    let widths = [16, 24, 40]\n"
        "    a: conv(make_divisible(32 * 0.75, 8), k=1)\n"
        "    b: conv(sum(widths) + len(widths), k=1)",
        blocks="",
    )
    g = archdsl.graph(source)
    assert g.nodes["a"]["shape"][0] == 24
    assert g.nodes["b"]["shape"][0] == 83


@pytest.mark.parametrize(
    ("expr", "code"), [("len(3)", "E304"), ("sum([1, true])", "E302"), ("make_divisible(10, 0)", "E303")]
)
def test_bad_function_arguments_are_located_errors(expr, code):
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(net(f"    a: conv({expr}, k=1)", blocks=""))
    assert info.value.code == code


def test_index_picks_a_variants_row_and_names_the_choices_when_missing():
    source = net('    let v = index(["b0", "b1"], variant)\n    linear([8, 16][v])', blocks="", shape="[4]")
    source = source.replace("network n {", 'network n(variant = "b1") {')
    assert archdsl.graph(source).nodes["linear"]["shape"] == (16,)
    assert archdsl.graph(source, variant="b0").nodes["linear"]["shape"] == (8,)
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(source, variant="b7")
    assert info.value.code == "E306"
    assert '"b7" is not one of ["b0", "b1"]' in info.value.message
