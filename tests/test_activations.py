"""The mobile-network ops: relu6, hardswish, hardsigmoid, leaky_relu and drop_path compute what torch does."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import StochasticDepth, stochastic_depth

import archdsl
from archdsl.export import export
from archdsl.ops import lookup
from archdsl.render import render_dot

# Values on every side of the kinks: below -3, between -3 and 0, between 0 and 3 / 6, above 6, and the kinks.
KINKS = torch.tensor([-9.0, -6.0, -3.0, -2.5, -1.0, -1e-3, 0.0, 1e-3, 1.0, 2.5, 3.0, 4.0, 5.999, 6.0, 6.5, 12.0])


def _inputs(*shape: int) -> torch.Tensor:
    """Random values from about -12 to 12, with the kinks written into the first row."""
    torch.manual_seed(0)
    x = torch.randn(*shape) * 6
    flat = x.view(-1)
    flat[: KINKS.numel()] = KINKS
    return x


def _net(op: str, shape: str = "[3, 4, 4]") -> str:
    return f"network n {{\n    input x: {shape}\n    a: {op}\n}}\n"


def _conv_net(op: str) -> str:
    """The op after a convolution: the place where an element-wise op may run in place."""
    return f"network n {{\n    input x: [3, 6, 6]\n    c: conv(4, k=3, pad=1) -> a: {op}\n}}\n"


ACTIVATIONS = [
    ("relu6", nn.ReLU6()),
    ("hardswish", nn.Hardswish()),
    ("hardsigmoid", nn.Hardsigmoid()),
    ("leaky_relu", nn.LeakyReLU()),
    ("leaky_relu(0.2)", nn.LeakyReLU(0.2)),
    ("leaky_relu(slope=-0.5)", nn.LeakyReLU(-0.5)),
    ("leaky_relu(slope=3)", nn.LeakyReLU(3.0)),
]


@pytest.mark.parametrize(("op", "reference"), ACTIVATIONS, ids=[op for op, _ in ACTIVATIONS])
@pytest.mark.parametrize("shape", [(3, 4, 4), (48,)], ids=["image", "flat"])
def test_activation_matches_torch(op, reference, shape):
    text = _net(op, str(list(shape)))
    module = archdsl.load(text, seed=0)
    x = _inputs(2, *shape)
    assert (x < -3).any() and (x > 6).any() and (x == 0).any()
    torch.testing.assert_close(module(x), reference(x), rtol=0, atol=0)
    assert sum(p.numel() for p in module.parameters()) == 0
    g = archdsl.graph(text)
    assert g.nodes["a"]["shape"] == shape
    assert g.nodes["a"]["params"] == 0 and g.nodes["a"]["macs"] == 0


@pytest.mark.parametrize(("op", "reference"), ACTIVATIONS, ids=[op for op, _ in ACTIVATIONS])
def test_activation_after_a_conv_matches_torch_forward_and_backward(op, reference):
    """After a convolution relu6/hardswish/hardsigmoid run in place: the same values and gradients as out of place."""
    module = archdsl.load(_conv_net(op), seed=0)
    x = _inputs(2, 3, 6, 6).requires_grad_()
    weight = torch.randn(2, 4, 6, 6)
    (module(x) * weight).sum().backward()
    ours = x.grad
    x.grad = None
    conv = module.c
    expected = reference(nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))
    (expected * weight).sum().backward()
    torch.testing.assert_close(ours, x.grad, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("op", "twin"),
    [
        ("relu6", torch._C._nn.relu6_),
        ("hardswish", torch._C._nn.hardswish_),
        ("hardsigmoid", torch._C._nn.hardsigmoid_),
        ("leaky_relu", None),
    ],
)
def test_in_place_twins(op, twin):
    """The twins are the kernels torch's `inplace=True` calls; leaky_relu has none (it cannot differentiate a
    negative slope in place)."""
    assert lookup(op).in_place is twin
    code = archdsl.load(_conv_net(op), seed=0).code
    if twin is not None:
        assert f"torch._C._nn.{op}_(c)" in code
    # after the input (not overwritable: the caller's tensor), never in place
    assert "_(x)" not in archdsl.load(_net(op), seed=0).code


def test_leaky_relu_passes_its_slope():
    code = archdsl.load(_net("leaky_relu(slope=0.25)"), seed=0).code
    assert "leaky_relu(x, negative_slope = 0.25)" in code
    assert archdsl.graph(_net("leaky_relu(1)")).nodes["a"]["args"] == {"slope": 1.0}


# ---------------------------------------------------------------- drop_path


def _drop_path_net(p: float, mode: str) -> str:
    return _net(f'drop_path({p}, mode="{mode}")', "[3, 4, 4]")


@pytest.mark.parametrize("mode", ["row", "batch"])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_drop_path_matches_torchvision_in_training(p, mode):
    module = archdsl.load(_drop_path_net(p, mode), seed=0).train()
    reference = StochasticDepth(p, mode).train()
    x = torch.randn(64, 3, 4, 4) + 2.0
    for seed in range(5):
        torch.manual_seed(seed)
        ours = module(x)
        after_ours = torch.rand(3)  # the generator is left where torchvision leaves it
        torch.manual_seed(seed)
        theirs = reference(x)
        after_theirs = torch.rand(3)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
        torch.testing.assert_close(after_ours, after_theirs, rtol=0, atol=0)
        torch.manual_seed(seed)
        torch.testing.assert_close(ours, stochastic_depth(x, p, mode, training=True), rtol=0, atol=0)
    kept = (ours != 0).flatten(1).all(1)
    dropped = (ours == 0).flatten(1).all(1)
    assert bool((kept | dropped).all()), "a sample is kept or dropped whole"
    if p == 0.0:
        assert ours is x
    elif p == 1.0:
        assert bool(dropped.all())
    else:
        torch.testing.assert_close(ours[kept], x[kept] / (1 - p))
        if mode == "batch":
            assert bool(kept.all()) or bool(dropped.all())
        else:
            assert 0 < int(kept.sum()) < 64  # with 64 rows and p = 0.3, both happen (fixed seeds)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_drop_path_is_the_identity_in_eval(mode):
    module = archdsl.load(_drop_path_net(0.5, mode), seed=0).eval()
    x = torch.randn(8, 3, 4, 4)
    state = torch.get_rng_state()
    assert module(x) is x
    assert torch.equal(torch.get_rng_state(), state), "eval mode draws no random numbers"


def test_drop_path_on_a_residual_branch_and_flat_inputs():
    text = """network n {
    input x: [4, 5, 5]
    c: conv(4, k=3, pad=1) -> d: drop_path(0.2)
    skip x -> d
    flat: flatten -> fc: linear(6) -> e: drop_path(0.5, mode="batch")
}
"""
    g = archdsl.graph(text)
    assert g.nodes["d"]["shape"] == (4, 5, 5) and g.nodes["e"]["shape"] == (6,)
    assert g.nodes["d"]["params"] == 0 and g.nodes["d"]["macs"] == 0
    assert g.nodes["d"]["args"] == {"p": 0.2, "mode": "row"}
    module = archdsl.load(text, seed=0)
    assert not list(module.d.parameters()) and not module.d.state_dict()
    assert repr(module.d) == "DropPath(p=0.2, mode=row)"
    x = torch.randn(16, 4, 5, 5)
    module.eval()
    expected = module(x)
    module.train()
    torch.manual_seed(3)
    out = module(x)
    assert out.shape == expected.shape == (16, 6)


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_export(fmt, tmp_path):
    """The in-place twins and DropPath export (TorchScript scripts DropPath's forward, training branch too)."""
    module = archdsl.load(_conv_net("hardswish -> d: drop_path(0.3) -> r: relu6"), seed=0)
    # in eval mode a drop_path hands on its input, so what follows it must not overwrite that
    assert "hardswish_(c)" in module.code and "relu6(d)" in module.code
    path = export(module, tmp_path / f"net.{fmt}", fmt)
    x = torch.randn(4, 3, 6, 6)
    module.eval()
    if fmt == "pt2":
        loaded = torch.export.load(path).module()
        torch.testing.assert_close(loaded(x), module(x), rtol=0, atol=0)
        return
    loaded = torch.jit.load(path).eval()
    torch.testing.assert_close(loaded(x), module(x), rtol=0, atol=0)
    module.train()
    loaded.train()
    torch.manual_seed(1)
    ours = module(x)
    torch.manual_seed(1)
    torch.testing.assert_close(loaded(x), ours, rtol=0, atol=0)


def test_labels():
    text = """network n {
    input x: [3, 4, 4]
    a: relu6 -> b: leaky_relu(0.2) -> c: drop_path(0.2) -> d: drop_path(0.5, mode="batch") -> e: hardswish
}
"""
    lines = {line.split()[0]: line for line in render_dot(text, level="layer").splitlines() if "label=" in line}
    assert 'label="a\\nrelu6\\n3×4×4"' in lines["a"]
    assert 'label="b\\nleaky_relu 0.2\\n3×4×4"' in lines["b"]
    assert 'label="c\\ndrop_path 0.2\\n3×4×4"' in lines["c"]
    assert 'label="d\\ndrop_path 0.5 batch\\n3×4×4"' in lines["d"]
    assert 'label="e\\nhardswish\\n3×4×4"' in lines["e"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("op", "message", "column"),
    [
        ("drop_path(1.5)", "`p` must be at most 1.0, got 1.5", 18),
        ("drop_path(-0.1)", "`p` must be at least 0.0", 18),
        ('drop_path(0.1, mode="col")', '`mode` must be "row" or "batch", got `"col"`', 23),
        ("drop_path(0.1, mode=1)", "`mode` must be a string", 23),
        ('leaky_relu(slope="x")', '`slope` must be a number, got string `"x"`', 19),
        ("leaky_relu(true)", "`slope` must be a number", 19),
    ],
)
def test_bad_arguments_are_located_errors(op, message, column):
    with pytest.raises(archdsl.ArchError) as err:
        archdsl.graph(_net(op))
    (diagnostic,) = err.value.diagnostics
    assert diagnostic.code == "E301"
    assert message in str(err.value)
    assert f"<string>:3:{column}" in str(err.value)


def test_drop_path_needs_p():
    with pytest.raises(archdsl.ArchError) as err:
        archdsl.graph(_net("drop_path"))
    assert err.value.diagnostics[0].code == "E315"
    assert 'drop_path(p, mode="row")' in str(err.value)
