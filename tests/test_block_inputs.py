"""Blocks with several inputs (parameters given nodes) and several outputs."""

from __future__ import annotations

import pytest
import torch

import archdsl

UP = """
block up(x, skip, c) {
    x -> upconv: conv(c, k=1) -> upsample: adaptive_avgpool(16)
    concat(upsample, skip) -> fuse: conv(c, k=3, pad=1)
}
"""


def net(body: str, blocks: str = UP) -> str:
    return f"{blocks}\nnetwork n {{\n    input image: [3, 16, 16]\n{body}\n}}\n"


STEM = "    enc1: conv(8, k=3, pad=1) -> down: maxpool(2) -> enc2: conv(16, k=3, pad=1)\n"


def error(source: str) -> archdsl.ArchError:
    with pytest.raises(archdsl.ArchError) as caught:
        archdsl.graph(source)
    return caught.value


def test_parameters_given_nodes_are_the_blocks_inputs():
    source = net(STEM + "    dec1: up(enc2, enc1, 8)\n    out: conv(2, k=1)")
    g = archdsl.graph(source)
    assert g.nodes["dec1.upconv"]["inputs"] == ("enc2",)
    assert g.nodes["dec1.concat"]["inputs"] == ("dec1.upsample", "enc1")
    assert g.nodes["dec1.fuse"]["shape"] == (8, 16, 16)
    module = archdsl.load(source)
    assert module(torch.randn(2, 3, 16, 16)).shape == (2, 2, 16, 16)


def test_inputs_may_be_given_by_keyword_and_read_as_shapes():
    blocks = "block mix(a, b) {\n    concat(a, b) -> conv(b.channels, k=1)\n}"
    g = archdsl.graph(net(STEM + "    m: mix(b=enc2, a=enc2)", blocks))
    assert g.nodes["m.conv"]["shape"] == (16, 8, 8)


def test_a_block_given_inputs_by_name_has_no_in():
    err = error(net(STEM + "    dec1: up(enc2, enc1, 8)", UP.replace("x -> upconv", "in -> upconv")))
    diagnostic = err.diagnostics[0]
    assert diagnostic.code == "E204" and "given its inputs by name (`x`, `skip`)" in diagnostic.message
    assert diagnostic.hint == "start from one of them: `x -> ...`"


def test_a_statement_that_starts_from_nothing_says_to_start_from_an_input():
    err = error(net(STEM + "    dec1: up(enc2, enc1, 8)", UP.replace("x -> upconv", "upconv")))
    diagnostic = err.diagnostics[0]
    assert diagnostic.code == "E215" and "`x -> conv(...)`" in diagnostic.hint


def test_a_value_where_an_input_belongs_is_named_by_position_and_name():
    err = error(net(STEM + "    dec1: up(enc2, 8, enc1)"))
    messages = {d.code: d.message for d in err.diagnostics}
    assert "`skip` is used as a node, but block `up` was given int `8` for it (argument 2)" in messages["E312"]
    assert "got node `enc1`" in messages["E301"]  # and the node given for `c` is named where a number belongs


def test_a_block_may_return_several_outputs_read_by_path():
    blocks = "block heads {\n    main: conv(4, k=1)\n    in -> aux: conv(2, k=1)\n    output main, aux\n}"
    source = net("    h: heads\n    h -> relu\n    output relu, h.aux", blocks)
    module = archdsl.load(source)
    main, aux = module(torch.randn(1, 3, 16, 16))
    assert main.shape == (1, 4, 16, 16) and aux.shape == (1, 2, 16, 16)


TRAINING_OUTPUTS = """
network n {
    input x: [8]
    fc: linear(3)
    x -> aux: linear(3) -> drop: dropout(0.5)
    output fc
    output fc, drop when training
}
"""


def test_outputs_when_training_are_returned_in_training_mode_only():
    module = archdsl.load(TRAINING_OUTPUTS)
    x = torch.randn(4, 8)
    main, aux = module.train()(x)
    assert main.shape == aux.shape == (4, 3)
    assert torch.equal(module.eval()(x), main)
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    assert isinstance(compiled.train()(x), tuple) and isinstance(compiled.eval()(x), torch.Tensor)


def test_the_head_only_training_reads_is_not_an_unused_node():
    g = archdsl.graph(TRAINING_OUTPUTS)
    assert g.graph["outputs"] == ["fc"] and g.graph["training_outputs"] == ["fc", "drop"]


def test_outputs_when_training_twice_is_e212():
    with pytest.raises(archdsl.ArchError) as caught:
        archdsl.graph(TRAINING_OUTPUTS.replace("    output fc\n", "    output fc when training\n"))
    assert caught.value.diagnostics[0].code == "E212"


def test_training_adds_the_auxiliary_heads_losses(tmp_path):
    from typer.testing import CliRunner

    from archdsl.cli import app
    from archdsl.train import loop

    source = (
        TRAINING_OUTPUTS.replace("input x: [8]", "input x: [1, 8, 8]")
        .replace("fc: linear(3)", "flatten -> fc: linear(10)")
        .replace("x -> aux: linear(3)", "x -> flatten -> aux: linear(10)")
    )
    path = tmp_path / "aux.arch"
    path.write_text(source)
    result = CliRunner().invoke(app, ["train", str(path), "--epochs", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    logits = torch.zeros(2, 10)
    assert loop._as_outputs((logits, logits)) == (logits, logits) and loop._as_outputs(logits) == (logits,)
