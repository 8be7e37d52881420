"""Tensors beyond images: inputs of any rank and integer token ids, `param` declarations, several outputs,
weight tying, and the state_dict order that follows the source."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import archdsl
from archdsl.fmt import format_source
from archdsl.pipeline import example_inputs


def net(body: str, inputs: str = "input x: [4, 8]", blocks: str = "") -> str:
    return f"{blocks}\nnetwork n {{\n    {inputs}\n{body}\n}}\n"


def error(source: str, **overrides) -> archdsl.ArchError:
    with pytest.raises(archdsl.ArchError) as caught:
        archdsl.graph(source, **overrides)
    return caught.value


def codes(err: archdsl.ArchError) -> list[str]:
    return [d.code for d in err.diagnostics]


# ------------------------------------------------------------------ inputs of any rank


@pytest.mark.parametrize("shape", [[7], [5, 9], [3, 4, 5], [2, 3, 4, 5], [1, 2, 1, 2, 1, 2, 1, 2]])
def test_inputs_of_rank_one_to_eight(shape):
    g = archdsl.graph(f"network n {{\n    input x: {shape}\n    relu\n}}")
    assert g.nodes["relu"]["shape"] == tuple(shape)
    module = archdsl.load(f"network n {{\n    input x: {shape}\n    relu\n}}")
    assert module(torch.randn(2, *shape)).shape == (2, *shape)


def test_an_input_of_rank_nine_is_e310():
    err = error("network n {\n    input x: [1, 1, 1, 1, 1, 1, 1, 1, 1]\n    relu\n}")
    assert codes(err) == ["E310"] and "1 to 8 ints" in err.diagnostics[0].message


# ------------------------------------------------------------------ integer token ids


TOKENS = "input ids: [6], dtype=int, high=20"


def test_token_ids_feed_an_embedding_and_example_inputs_stay_below_high():
    source = net("    embedding(20, 8) -> linear(3)", TOKENS)
    module = archdsl.load(source)
    (ids,) = example_inputs(module.meta["archdsl"], batch=64)
    assert ids.dtype == torch.int64 and ids.shape == (64, 6)
    assert 0 <= int(ids.min()) and int(ids.max()) < 20
    assert module(ids).shape == (64, 6, 3)


def test_layout_ops_keep_token_ids_and_float_ops_refuse_them():
    archdsl.graph(net("    reshape([2, 3]) -> flatten -> embedding(20, 8)", TOKENS))
    err = error(net("    relu", TOKENS))
    assert codes(err) == ["E410"] and "`ids` holds integer token ids" in err.diagnostics[0].message


@pytest.mark.parametrize(
    ("inputs", "code", "words"),
    [
        ("input ids: [6], dtype=int", "E315", "needs `high=`"),
        ("input ids: [6], high=20", "E301", "`high` bounds integer inputs"),
        ("input ids: [6], dtype=long, high=20", "E301", "`float` or `int`, got `long`"),
        ("input ids: [6], dtype=int, high=0", "E301", "an int of at least 1"),
        ("input ids: [6], dtyp=int", "E219", "has no option `dtyp`"),
    ],
)
def test_bad_input_options_are_located_errors(inputs, code, words):
    err = error(net("    relu", inputs))
    assert codes(err)[0] == code and words in err.diagnostics[0].message


# ------------------------------------------------------------------ param


def test_a_param_is_stored_as_declared_at_its_path_and_counted():
    source = net(
        "    param scale: [8], init=ones\n    param enc.pos: [1, 4, 8]\n    mul(x, scale) -> add(mul, enc.pos)"
    )
    module = archdsl.load(source)
    state = module.state_dict()
    assert state["scale"].shape == (8,) and torch.equal(state["scale"], torch.ones(8))
    assert state["enc.pos"].shape == (1, 4, 8) and torch.equal(state["enc.pos"], torch.zeros(1, 4, 8))
    assert archdsl.graph(source).graph["total_params"] == 8 + 32 == sum(p.numel() for p in module.parameters())


def test_params_broadcast_as_pytorch_does_and_get_their_gradient_summed_over_the_batch():
    source = net("    param gain: [4, 1], init=constant(2.0)\n    mul(x, gain)")
    module = archdsl.load(source)
    x = torch.randn(3, 4, 8)
    out = module(x)
    assert torch.equal(out, x * 2.0)
    out.sum().backward()
    assert torch.allclose(module.gain.grad, x.sum(dim=(0, 2)).unsqueeze(1))


def test_concat_expands_a_param_over_the_batch_like_a_class_token():
    source = net("    param token: [1, 1, 8], init=normal(std=0.5)\n    concat(token, x, dim=0)")
    module = archdsl.load(source)
    x = torch.randn(3, 4, 8)
    expected = torch.cat([module.token.expand(3, -1, -1), x], dim=1)
    assert torch.equal(module(x), expected)


@pytest.mark.parametrize(
    ("param", "words"),
    [
        ("[2, 4, 8]", "its first dim stands for the batch and must be 1"),
        ("[1, 1, 4, 8]", "more dims than the activation"),
        ("[3, 8]", "does not broadcast"),
    ],
)
def test_a_param_that_does_not_line_up_is_e409_at_the_param(param, words):
    err = error(net(f"    param p: {param}\n    add(x, p)"))
    assert codes(err) == ["E409"] and words in err.diagnostics[0].message
    assert err.diagnostics[0].span.line == 5 and err.diagnostics[0].span.column == 12


def test_an_op_given_only_params_is_e409():
    err = error(net("    param a: [8]\n    param b: [8]\n    add(a, b) -> add(add, x)"))
    assert codes(err) == ["E409"] and "only parameters" in err.diagnostics[0].message


def test_an_unused_param_is_e503():
    err = error(net("    param spare: [8]\n    relu"))
    assert codes(err) == ["E503"]


@pytest.mark.parametrize(
    ("init", "check"),
    [
        ("zeros", lambda t: bool((t == 0).all())),
        ("ones", lambda t: bool((t == 1).all())),
        ("constant(1e-6)", lambda t: bool((t == torch.tensor(1e-6)).all())),
        ("normal(std=0.02)", lambda t: abs(float(t.std()) - 0.02) < 0.002 and abs(float(t.mean())) < 0.002),
        ("trunc_normal(std=1, a=-0.5, b=0.5)", lambda t: float(t.abs().max()) <= 0.5),
        ("uniform(low=2, high=3)", lambda t: 2 <= float(t.min()) and float(t.max()) <= 3),
    ],
)
def test_each_init(init, check):
    module = archdsl.load(net(f"    param p: [100, 8], init={init}\n    add(x, p)", "input x: [100, 8]"), seed=0)
    assert check(module.p.detach())


@pytest.mark.parametrize(
    ("init", "code"),
    [("normall(std=1)", "E231"), ("normal(sd=1)", "E219"), ("constant", "E315"), ("normal(std=-1)", "E301")],
)
def test_bad_inits_are_located_errors(init, code):
    err = error(net(f"    param p: [8], init={init}\n    add(x, p)"))
    assert codes(err) == [code]  # and nothing more: the failed param does not make `p` unknown


def test_a_param_in_a_repeated_block_gets_one_tensor_per_instance_first_in_its_module():
    blocks = (
        "block scaled(s = 1.0) {\n    lin: linear(8)\n"
        "    param layer_scale: [8], init=constant(s)\n    mul(lin, layer_scale)\n}"
    )
    module = archdsl.load(net("    layers: stage scaled(s=0.5 * (i + 1)) x 2", blocks=blocks))
    keys = list(module.state_dict())
    assert keys[:4] == ["layers.0.layer_scale", "layers.0.lin.weight", "layers.0.lin.bias", "layers.1.layer_scale"]
    assert torch.equal(module.get_submodule("layers.1").layer_scale, torch.ones(8))


# ------------------------------------------------------------------ several outputs


def test_chunk_outputs_are_read_as_label_dot_index():
    source = net("    halves: chunk(2, dim=-1)\n    halves.1 -> relu -> mul(halves.0, relu)")
    g = archdsl.graph(source)
    assert g.nodes["halves.0"]["shape"] == g.nodes["halves.1"]["shape"] == (4, 4)
    module = archdsl.load(source)
    x = torch.randn(2, 4, 8)
    a, b = x.chunk(2, dim=-1)
    assert torch.equal(module(x), a * torch.relu(b))


def test_outputs_of_a_multi_output_op_inside_a_block_and_as_network_outputs():
    blocks = "block halves {\n    parts: split([3, 5], dim=-1)\n    add(parts.0, parts.0)\n}"
    source = net("    h: halves\n    x -> s: split([6, 2], dim=-1)\n    output h, s.1", blocks=blocks)
    module = archdsl.load(source)
    x = torch.randn(2, 4, 8)
    first, second = module(x)
    assert torch.equal(first, x[..., :3] * 2) and torch.equal(second, x[..., 6:])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("    q: chunk(2, dim=-1)\n    relu(q)", None),
        ("    q: chunk(2, dim=-1)\n    q -> relu", "has 2 outputs, and this reads it whole"),
        ("    q: chunk(2, dim=-1)\n    add(q.0, q.2)", "there is no `q.2`"),
    ],
)
def test_multi_output_mistakes(body, words):
    err = error(net(body))
    if words is not None:
        assert codes(err) == ["E408"] and words in err.diagnostics[0].message


# ------------------------------------------------------------------ weight tying


TIED = "    emb: embedding(20, 8) -> ln: layernorm -> head: linear(20, bias=false, tie=emb)"


def test_a_tied_weight_is_one_tensor_counted_once_and_stored_under_both_names():
    module = archdsl.load(net(TIED, TOKENS))
    assert module.head.weight is module.emb.weight
    assert {"emb.weight", "head.weight"} <= set(module.state_dict())
    g = archdsl.graph(net(TIED, TOKENS))
    assert g.nodes["head"]["params"] == 0 and g.nodes["head"]["tie"] == "emb"
    assert g.graph["total_params"] == 20 * 8 + 16 == sum(p.numel() for p in module.parameters())


def test_a_tied_weight_trains_as_one():
    module = archdsl.load(net(TIED, TOKENS))
    module(torch.randint(0, 20, (2, 6))).sum().backward()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    optimizer.step()
    assert module.head.weight is module.emb.weight


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("    emb: embedding(20, 8) -> head: linear(21, bias=false, tie=emb)", "needs a weight of shape [21, 8]"),
        ("    emb: embedding(20, 8) -> r: relu -> head: linear(20, tie=r)", "has no weight to share"),
        ("    emb: embedding(20, 8) -> r: relu(tie=emb)", "has no weight to tie"),
        ("    emb: embedding(20, 8) -> head: linear(20, tie=1 + 2)", "names the node whose weight"),
    ],
)
def test_tie_mistakes_are_e411(body, words):
    err = error(net(body, TOKENS))
    assert codes(err) == ["E411"] and words in err.diagnostics[0].message


# ------------------------------------------------------------------ state_dict order


def test_state_dict_order_follows_the_source_not_the_data_flow():
    # As a post-norm transformer layer is declared in PyTorch: `lin` runs after `norm` but is written first.
    source = net(
        "    attn: linear(8)\n    norm -> lin: linear(8)\n    add(x, attn) -> norm: layernorm\n    add(norm, lin)"
    )
    keys = list(archdsl.load(source).state_dict())
    assert keys == ["attn.weight", "attn.bias", "lin.weight", "lin.bias", "norm.weight", "norm.bias"]


# ------------------------------------------------------------------ formatting


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.sampled_from(["init=zeros", "init=normal(std=0.02)", "init=constant(1e-6)"]), max_size=1),
    st.sampled_from([" ", "", "  "]),
)
def test_declarations_format_canonically_and_stably(options, space):
    opts = "".join(f",{space}{o}" for o in options)
    text = (
        f"network n {{\ninput ids:[6],dtype=int,{space}high=20\nparam p:{space}[1, 6, 8]{opts}\n"
        "embedding(20, 8)->add(embedding,p)\n}\n"
    )
    formatted = format_source(text)
    assert "    input ids: [6], dtype=int, high=20\n" in formatted
    assert f"    param p: [1, 6, 8]{''.join(', ' + o for o in options)}\n" in formatted
    assert format_source(formatted) == formatted
    archdsl.graph(formatted)


def test_training_on_token_ids_is_refused_before_any_data_is_read():
    from archdsl.train.loop import check_fit

    with pytest.raises(archdsl.ArchError) as caught:
        check_fit(archdsl.graph(net("    embedding(20, 8) -> flatten -> linear(10)", TOKENS)), None, "digits")
    assert caught.value.diagnostics[0].code == "E801" and "integer token ids" in caught.value.diagnostics[0].message


def test_a_param_expanded_over_the_batch_exports_to_torchscript(tmp_path):
    module = archdsl.load(net("    param token: [1, 1, 8], init=normal(std=0.5)\n    concat(token, x, dim=0)"))
    from archdsl.export import export

    path = export(module, tmp_path / "net.ts", "torchscript")
    scripted = torch.jit.load(str(path))
    x = torch.randn(3, 4, 8)
    assert torch.equal(scripted(x), module(x))
