"""Every construct of the language brief, items 1-9, and the graph it makes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import archdsl


def build(text: str, **overrides):
    return archdsl.graph(textwrap.dedent(text), **overrides)


# 1. Networks with parameters, arithmetic, named and shaped inputs
def test_parameters_defaults_overrides_and_arithmetic():
    src = """
    network mlp(hidden = 32, depth = 2, scale = 1.5, num_classes = 10) {
        input x: [784]
        fc1: linear(floor(hidden * scale)) -> relu
        fc2: linear(hidden // 2 + depth ** 2 - 1 % 3) -> fc3: linear(num_classes)
    }
    """
    g = build(src)
    assert g.nodes["fc1"]["shape"] == (48,)
    assert g.nodes["fc2"]["shape"] == (16 + 4 - 1,)
    assert build(src, num_classes=3, hidden=8).nodes["fc3"]["shape"] == (3,)
    assert g.graph["params"] == {"hidden": 32, "depth": 2, "scale": 1.5, "num_classes": 10}


def test_several_named_inputs_and_outputs():
    src = """
    network two(c = 4) {
        input rgb: [3, 8, 8]
        input depth: [1, 8, 8]
        rgb -> a: conv(c, k=1)
        depth -> b: conv(c, k=1)
        both: concat(a, b)
        both -> head: conv(2, k=1)
        output head, both
    }
    """
    g = build(src)
    assert g.graph["inputs"] == ["rgb", "depth"]
    assert g.graph["outputs"] == ["head", "both"]
    module = archdsl.load(textwrap.dedent(src))
    head, both = module(torch.randn(1, 3, 8, 8), torch.randn(1, 1, 8, 8))
    assert head.shape == (1, 2, 8, 8) and both.shape == (1, 8, 8, 8)


# 2. Chains with every node named
def test_chains_name_nodes_and_unnamed_ops_get_op_names():
    g = build("""
    network n {
        input x: [3, 8, 8]
        c: conv(4, k=3, pad=1) -> relu -> relu -> flatten
        head: linear(2)
    }
    """)
    assert list(g.nodes) == ["x", "c", "relu", "relu_1", "flatten", "head"]
    assert all(g.edges[e]["kind"] == "flow" for e in g.edges)


def test_a_chain_can_continue_on_the_next_line():
    g = build("""
    network n {
        input x: [3, 8, 8]
        c: conv(4, k=3, pad=1)
            -> r: relu
            -> p: maxpool(2)
    }
    """)
    assert list(g.predecessors("p")) == ["r"]
    assert g.nodes["p"]["shape"] == (4, 4, 4)


# 3. Blocks, nested blocks, imported blocks
def test_blocks_use_blocks_and_prefix_module_paths():
    g = build("""
    block conv_bn(c, k = 3) {
        conv: conv(c, k=k, pad=k // 2, bias=false) -> bn: batchnorm -> relu
    }
    block pair(c) {
        first: conv_bn(c)
        second: conv_bn(c, k=1)
    }
    network n {
        input x: [3, 8, 8]
        body: pair(16)
    }
    """)
    assert "body.first.conv" in g and "body.second.bn" in g
    assert g.nodes["body.second.conv"]["args"]["k"] == (1, 1)
    assert [grp.path for grp in g.nodes["body.second.conv"]["groups"]] == ["body", "body.second"]


def test_imports_resolve_relative_to_the_importing_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.arch").write_text("block twice(c) {\n a: conv(c, k=1)\n b: conv(c, k=1)\n}\n")
    (tmp_path / "lib" / "more.arch").write_text(
        'import "blocks.arch"\nblock quad(c) {\n x: twice(c)\n y: twice(c)\n}\n'
    )
    main = tmp_path / "net.arch"
    main.write_text('from "lib/more.arch" import quad\nnetwork n {\n input i: [3, 4, 4]\n q: quad(5)\n}\n')
    g = archdsl.graph(main)
    assert "q.y.b" in g and g.nodes["q.y.b"]["shape"] == (5, 4, 4)


def test_zoo_libraries_can_be_imported_from_anywhere(tmp_path):
    main = tmp_path / "mine.arch"
    main.write_text('import "lib/resnet.arch"\nnetwork n {\n input i: [3, 32, 32]\n s: stage basic(8) x 2\n}\n')
    assert "s.1.conv2" in archdsl.graph(main)


# 4. Stages: repeats, a different first repeat, the repeat index, controllable names
def test_stage_first_repeat_and_index_dependent_arguments():
    g = build("""
    block unit(c, stride = 1, drop = 0.0) {
        conv: conv(c, k=3, stride=stride, pad=1) -> d: dropout(drop)
    }
    network n {
        input x: [3, 16, 16]
        layer: stage unit(8, drop=0.1 * i) x 3, first(stride=2), names="u{i + 1}"
    }
    """)
    assert [n for n in g if n.endswith(".conv")] == ["layer.u1.conv", "layer.u2.conv", "layer.u3.conv"]
    assert g.nodes["layer.u1.conv"]["args"]["stride"] == (2, 2)
    assert g.nodes["layer.u2.conv"]["args"]["stride"] == (1, 1)
    assert [g.nodes[f"layer.u{i}.d"]["args"]["p"] for i in (1, 2, 3)] == pytest.approx([0.0, 0.1, 0.2])
    stage = g.nodes["layer.u2.conv"]["groups"]
    assert (stage[0].kind, stage[0].path, stage[1].repeat) == ("stage", "layer", 1)


def test_stage_of_a_plain_op():
    g = build("network n {\n input x: [10]\n layers: stage linear(10) x 3\n}\n")
    assert [n for n in g if n != "x"] == ["layers.0", "layers.1", "layers.2"]


# 5. Skip edges with shortcut policies
@pytest.mark.parametrize(
    ("policy", "nodes", "params"),
    [
        ("projection", ["blk.downsample.0", "blk.downsample.1"], 4 * 8 + 2 * 8),
        ("zeropad", ["blk.downsample"], 0),
    ],
)
def test_skip_policies_insert_the_right_shortcut(policy, nodes, params):
    g = build(f"""
    block b(c) {{
        conv: conv(c, k=3, stride=2, pad=1, bias=false)
        skip in -> conv via {policy}
    }}
    network n {{
        input x: [4, 8, 8]
        blk: b(8)
    }}
    """)
    for node in nodes:
        assert node in g
    assert sum(g.nodes[n]["params"] for n in nodes) == params
    add = "blk.add"
    kinds = {g.edges[e]["kind"] for e in g.in_edges(add)}
    assert kinds == {"flow", "skip"}
    assert g.nodes[add]["shape"] == (8, 4, 4)


def test_zeropad_shortcut_pads_symmetrically_and_subsamples():
    src = """
    block b(c) {
        conv: conv(c, k=3, stride=2, pad=1, bias=false)
        skip in -> conv via zeropad as shortcut
    }
    network n {
        input x: [2, 4, 4]
        blk: b(6)
    }
    """
    module = archdsl.load(textwrap.dedent(src))
    torch.nn.init.zeros_(module.get_submodule("blk.conv").weight)
    x = torch.arange(32.0).reshape(1, 2, 4, 4)
    out = module(x)
    assert torch.equal(out[0, 2:4], x[0, :, ::2, ::2]) and torch.all(out[0, :2] == 0) and torch.all(out[0, 4:] == 0)


def test_identity_skip_needs_equal_shapes():
    with pytest.raises(archdsl.ArchShapeError, match="joins different shapes"):
        build("network n {\n input x: [4, 8, 8]\n c: conv(8, k=1)\n skip x -> c\n}\n")


def test_explicit_shortcut_path():
    g = build("""
    block b(c) {
        main: conv(c, k=3, pad=1)
        in -> short: conv(c, k=1)
        sum: add(main, short)
    }
    network n {
        input x: [3, 8, 8]
        blk: b(4)
    }
    """)
    assert [g.edges[e]["kind"] for e in sorted(g.in_edges("blk.sum"), key=lambda e: g.edges[e]["position"])] == [
        "flow",
        "skip",
    ]


# 6. Concat edges: dense stages and parallel branches
def test_dense_stage_connects_every_layer_to_all_earlier_ones():
    g = build("""
    block layer(k) {
        bn: batchnorm -> relu -> conv: conv(k, k=3, pad=1)
    }
    network n {
        input x: [5, 8, 8]
        block1: stage layer(3) x 4, connect=dense
    }
    """)
    assert g.nodes["block1.out"]["shape"] == (5 + 4 * 3, 8, 8)
    into_last = sorted(g.in_edges("block1.3.in", data=True), key=lambda e: e[2]["position"])
    assert [u for u, _, _ in into_last] == ["x", "block1.0.conv", "block1.1.conv", "block1.2.conv"]
    assert all(d["kind"] == "concat" for _, _, d in into_last)
    assert g.nodes["block1.3.bn"]["input_shapes"] == ((14, 8, 8),)


def test_parallel_branches_joined_by_concat_in_order():
    g = build("""
    block inception(a, b) {
        in -> branch1: conv(a, k=1)
        in -> branch2: conv(b, k=3, pad=1)
        in -> pool: maxpool(3, stride=1, pad=1)
        out: concat(branch1, branch2, pool)
    }
    network n {
        input x: [4, 8, 8]
        inc: inception(2, 6)
    }
    """)
    assert g.nodes["inc.out"]["shape"] == (12, 8, 8)
    order = sorted(g.in_edges("inc.out", data=True), key=lambda e: e[2]["position"])
    assert [u for u, _, _ in order] == ["inc.branch1", "inc.branch2", "inc.pool"]


# 7. Gates: highway and squeeze-and-excitation
def test_highway_gate_and_initial_bias():
    src = """
    block highway(width, gate_bias = -2.0) {
        in -> h: linear(width) -> hr: relu
        in -> t: linear(width, bias_init=gate_bias) -> ts: sigmoid
        y: gate(ts, hr, in)
    }
    network n(depth = 3) {
        input x: [16]
        layers: stage highway(16) x depth
    }
    """
    g = build(src)
    kinds = {g.edges[u, "layers.0.y"]["kind"] for u in g.predecessors("layers.0.y")}
    assert kinds == {"gate", "flow", "skip"}
    module = archdsl.load(textwrap.dedent(src))
    assert torch.all(module.get_submodule("layers.2.t").bias == -2.0)
    assert module(torch.randn(3, 16)).shape == (3, 16)


def test_squeeze_and_excitation_broadcasts():
    g = build("""
    block se(r = 4) {
        squeeze: adaptive_avgpool(1) -> fc1: conv(in.channels // r, k=1) -> relu
            -> fc2: conv(in.channels, k=1) -> sigmoid
        scaled: mul(in, sigmoid)
    }
    network n {
        input x: [16, 8, 8]
        s: se()
    }
    """)
    assert g.nodes["s.fc1"]["shape"] == (4, 1, 1)
    assert g.nodes["s.scaled"]["shape"] == (16, 8, 8)


# 8. Shape-dependent values
def test_transition_reads_its_input_channels():
    g = build("""
    block transition(theta = 0.5) {
        let keep = floor(in.channels * theta)
        conv: conv(keep, k=1) -> pool: avgpool(2)
    }
    network n {
        input x: [3, 8, 8]
        c: conv(30, k=1)
        t: transition(0.4)
    }
    """)
    assert g.nodes["t.conv"]["shape"] == (12, 8, 8)
    assert g.nodes["t.pool"]["shape"] == (12, 4, 4)


# 9. Comments and docstrings
def test_docstrings_reach_the_graph():
    g = build('''
    """Module doc."""
    # a comment
    network n {  # trailing comment
        """Network doc."""
        input x: [3]  # comment
    }
    ''')
    assert g.graph["doc"] == "Network doc."
    assert archdsl.parse('"""Module doc."""\nnetwork n {\n input x: [3]\n}\n').doc == "Module doc."


def test_graph_attributes_are_complete():
    g = archdsl.graph("resnet18")
    data = g.nodes["layer2.0.conv1"]
    assert data["op"] == "conv" and data["path"] == "layer2.0.conv1"
    assert data["shape"] == (128, 28, 28) and data["params"] == 128 * 64 * 9
    assert data["macs"] == 128 * 28 * 28 * 64 * 9
    assert data["span"].file.endswith("resnet.arch") and data["span"].line > 0
    assert data["args"]["stride"] == (2, 2)
    assert [grp.path for grp in data["groups"]] == ["layer2", "layer2.0"]
    assert {d["kind"] for _, _, d in g.edges(data=True)} == {"flow", "skip"}


def test_node_order_is_deterministic_across_hash_seeds():
    code = "import archdsl; g = archdsl.graph('densenet121'); print(hash(tuple(g.nodes)), hash(tuple(g.edges)))"
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outputs.add(
            subprocess.run(
                [sys.executable, "-c", code.replace("hash(", "str(")],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    assert len(outputs) == 1


def test_first_replaces_arguments_given_by_position():
    g = build("""
    block b(c, stride = 1) {
        conv: conv(c, k=3, stride=stride, pad=1)
    }
    network n {
        input x: [3, 8, 8]
        s: stage b(4, 1) x 2, first(stride=2)
        t: stage conv(4, 3, pad=1) x 2, first(k=1, pad=0)
    }
    """)
    assert g.nodes["s.0.conv"]["args"]["stride"] == (2, 2) and g.nodes["s.1.conv"]["args"]["stride"] == (1, 1)
    assert g.nodes["t.0"]["args"]["k"] == (1, 1) and g.nodes["t.1"]["args"]["k"] == (3, 3)
