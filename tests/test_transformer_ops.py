"""The transformer and ConvNeXt ops compute what torch and torchvision compute, under their parameter names.

layernorm, layernorm2d, groupnorm, gelu(approximate=), linear on sequences,
batchnorm on [C, L], embedding, attention and sdpa: each against the torch
module or function on random batched inputs, its parameter names and counts,
and every error it reports, located.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.convnext import LayerNorm2d as TorchvisionLayerNorm2d
from torchvision.models.vision_transformer import EncoderBlock

import archdsl
from archdsl.export import export
from archdsl.ops import lookup
from archdsl.ops.transformer import LayerNorm2d, ScaledDotProductAttention, SelfAttention
from archdsl.render import render_dot

EXACT = {"rtol": 0, "atol": 0}


def _net(op: str, shape: str = "[10, 32]") -> str:
    return f"network n {{\n    input x: {shape}\n    a: {op}\n}}\n"


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random values in every parameter and buffer: an affine norm that is not the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
    return module


def _load(text: str, reference: nn.Module | None = None, node: str = "a") -> nn.Module:
    """The compiled network; with ``reference``, node ``a`` takes its (randomised) state, strictly."""
    module = archdsl.load(text, seed=0)
    if reference is not None:
        _randomise(reference)
        getattr(module, node).load_state_dict(reference.state_dict(), strict=True)
    return module


def _figures(text: str, node: str = "a") -> tuple[tuple[int, ...], int, int]:
    data = archdsl.graph(text).nodes[node]
    return data["shape"], data["params"], data["macs"]


def _error(text: str) -> archdsl.ArchError:
    with pytest.raises(archdsl.ArchError) as err:
        archdsl.graph(text)
    (diagnostic,) = err.value.diagnostics
    return diagnostic


def _column(op: str, part: str) -> int:
    """The column of ``part`` in ``_net(op)``'s third line, ``    a: {op}``."""
    return len("    a: ") + op.index(part) + 1


# ------------------------------------------------------------ layernorm

NORM_SHAPES = [(32,), (10, 32), (4, 6, 8), (2, 3, 4, 5)]


@pytest.mark.parametrize("shape", NORM_SHAPES, ids=str)
@pytest.mark.parametrize(
    ("op", "kwargs"),
    [
        ("layernorm", {}),
        ("layernorm(eps=1e-6)", {"eps": 1e-6}),
        ("layernorm(affine=false)", {"elementwise_affine": False}),
        ("layernorm(bias=false)", {"bias": False}),
    ],
)
def test_layernorm_matches_torch_over_the_last_dim(shape, op, kwargs):
    reference = nn.LayerNorm(shape[-1], **kwargs)
    module = _load(_net(op, str(list(shape))), reference)
    assert type(module.a) is nn.LayerNorm
    assert list(module.state_dict()) == [f"a.{key}" for key in reference.state_dict()]
    x = torch.randn(3, *shape) * 4 + 1
    torch.testing.assert_close(module(x), reference(x), **EXACT)
    out, params, macs = _figures(_net(op, str(list(shape))))
    assert out == shape and macs == 0
    assert params == sum(p.numel() for p in reference.parameters()) == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("eps", [None, 1e-6])
def test_layernorm2d_is_torchvisions(eps):
    """ConvNeXt's channels-first norm: the same code as torchvision's LayerNorm2d, the same keys."""
    op = "layernorm2d" if eps is None else f"layernorm2d(eps={eps})"
    reference = TorchvisionLayerNorm2d(16, **({} if eps is None else {"eps": eps}))
    module = _load(_net(op, "[16, 7, 5]"), reference)
    assert isinstance(module.a, nn.LayerNorm) and type(module.a) is LayerNorm2d
    assert module.a.eps == reference.eps == (1e-5 if eps is None else eps)
    assert list(module.state_dict()) == ["a.weight", "a.bias"]
    x = torch.randn(3, 16, 7, 5) * 3
    torch.testing.assert_close(module(x), reference(x), **EXACT)
    # what it means: nn.LayerNorm over C at every position
    channels_last = _randomise(nn.LayerNorm(16, eps=reference.eps))
    expected = channels_last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(module(x), expected, **EXACT)
    assert _figures(_net(op, "[16, 7, 5]")) == ((16, 7, 5), 32, 0)
    assert _figures(_net("layernorm2d(affine=false)", "[16, 7, 5]"))[1] == 0
    assert _figures(_net("layernorm2d(bias=false)", "[16, 7, 5]"))[1] == 16


# ------------------------------------------------------------ groupnorm


@pytest.mark.parametrize("shape", [(8, 5, 5), (8,), (8, 7), (8, 2, 3, 4)], ids=str)
@pytest.mark.parametrize("groups", [1, 2, 8])
def test_groupnorm_matches_torch(shape, groups):
    reference = nn.GroupNorm(groups, shape[0])
    module = _load(_net(f"groupnorm({groups})", str(list(shape))), reference)
    assert type(module.a) is nn.GroupNorm and list(module.state_dict()) == ["a.weight", "a.bias"]
    x = torch.randn(3, *shape) * 2 - 1
    torch.testing.assert_close(module(x), reference(x), **EXACT)
    assert _figures(_net(f"groupnorm({groups})", str(list(shape)))) == (shape, 2 * shape[0], 0)


def test_groupnorm_without_affine_and_with_eps():
    module = _load(_net("groupnorm(4, eps=1e-3, affine=false)", "[8, 3, 3]"))
    assert not list(module.parameters())
    x = torch.randn(2, 8, 3, 3)
    torch.testing.assert_close(module(x), F.group_norm(x, 4, eps=1e-3), **EXACT)
    assert module.a.eps == 1e-3


# ---------------------------------------------------------------- gelu


@pytest.mark.parametrize(("op", "approximate"), [("gelu", "none"), ('gelu(approximate="tanh")', "tanh")])
def test_gelu_matches_torch(op, approximate):
    module = _load(_net(op, "[4, 10]"))
    x = torch.randn(3, 4, 10) * 4
    torch.testing.assert_close(module(x), nn.GELU(approximate)(x), **EXACT)
    assert archdsl.graph(_net(op, "[4, 10]")).nodes["a"]["args"] == {"approximate": approximate}
    # the default writes what it always wrote; the tanh form says so
    assert ("approximate = 'tanh'" in module.code) == (approximate == "tanh")


def test_gelu_tanh_differs_from_the_exact_form():
    x = torch.linspace(-4, 4, 101).reshape(1, 101)
    exact = _load(_net("gelu", "[101]"))(x)
    tanh = _load(_net('gelu(approximate="tanh")', "[101]"))(x)
    assert not torch.equal(exact, tanh)
    torch.testing.assert_close(exact, tanh, atol=1e-3, rtol=0)


# -------------------------------------------------------------- linear


@pytest.mark.parametrize("shape", [(20,), (10, 32), (4, 6, 8), (2, 3, 4, 5)], ids=str)
def test_linear_acts_on_the_last_dim(shape):
    text = _net("linear(12)", str(list(shape)))
    reference = nn.Linear(shape[-1], 12)
    module = _load(text, reference)
    x = torch.randn(3, *shape)
    torch.testing.assert_close(module(x), reference(x), **EXACT)
    out, params, macs = _figures(text)
    assert out == (*shape[:-1], 12)
    assert params == 12 * shape[-1] + 12
    assert macs == 12 * shape[-1] * math.prod(shape[:-1])


def test_linear_on_an_image_is_channels_last_as_in_convnext():
    """nn.Linear takes any rank, and ConvNeXt's blocks apply it to [H, W, C]: an image is no error."""
    text = "network n {\n    input x: [16, 8, 8]\n    stem: conv(16, k=3, pad=1)\n    fc: linear(10)\n}\n"
    g = archdsl.graph(text)
    assert g.nodes["fc"]["shape"] == (16, 8, 10)
    assert g.nodes["fc"]["params"] == 8 * 10 + 10 and g.nodes["fc"]["macs"] == 16 * 8 * 8 * 10
    assert archdsl.load(text)(torch.randn(2, 16, 8, 8)).shape == (2, 16, 8, 10)


def test_linear_on_flat_inputs_is_unchanged():
    text = _net("linear(10, bias=false)", "[64]")
    assert _figures(text) == ((10,), 640, 640)
    module = _load(text)
    assert module.a.weight.shape == (10, 64) and module.a.bias is None


# ---------------------------------------------------------- batchnorm


def test_batchnorm_on_channels_and_length_is_batchnorm1d():
    reference = nn.BatchNorm1d(6)
    module = _load(_net("batchnorm", "[6, 9]"), reference)
    assert type(module.a) is nn.BatchNorm1d
    assert list(module.state_dict()) == [f"a.{key}" for key in reference.state_dict()]
    x = torch.randn(4, 6, 9)
    module.eval()
    reference.eval()
    torch.testing.assert_close(module(x), reference(x), **EXACT)
    module.train()
    reference.train()
    torch.testing.assert_close(module(x), reference(x), **EXACT)
    torch.testing.assert_close(module.a.running_mean, reference.running_mean, **EXACT)
    assert _figures(_net("batchnorm", "[6, 9]")) == ((6, 9), 12, 0)


# ----------------------------------------------------------- embedding


def test_embedding_looks_up_integer_token_ids():
    text = "network n {\n    input ids: [7], dtype=int, high=50\n    a: embedding(50, 16)\n}\n"
    reference = nn.Embedding(50, 16)
    module = _load(text, reference)
    assert type(module.a) is nn.Embedding and list(module.state_dict()) == ["a.weight"]
    ids = torch.randint(0, 50, (3, 7))
    torch.testing.assert_close(module(ids), reference(ids), **EXACT)
    assert _figures(text) == ((7, 16), 800, 0)


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 2, 2)], ids=str)
def test_embedding_of_ids_of_any_rank(shape):
    """The op's own functions, whatever the input's layout: one vector of `dim` per id."""
    spec = lookup("embedding")
    args = {"num": 11, "dim": 5}
    assert spec.infer(args, [shape]) == (*shape, 5)
    assert spec.count_params(args, [shape]) == 55 and spec.count_macs(args, [shape], (*shape, 5)) == 0
    layer = spec.build(args, [shape])
    ids = torch.randint(0, 11, (2, *shape))
    assert layer(ids).shape == (2, *shape, 5)
    assert spec.token_ids == "embed"


# ----------------------------------------------------------- attention

D, HEADS, T = 32, 4, 10


def _attention(op: str = f"attention({HEADS})", shape: str = f"[{T}, {D}]") -> nn.Module:
    return _load(_net(op, shape))


def test_attention_is_a_multihead_attention_with_its_keys_and_counts():
    module = _attention()
    assert isinstance(module.a, nn.MultiheadAttention) and type(module.a) is SelfAttention
    assert module.a.batch_first and module.a.num_heads == HEADS and module.a.embed_dim == D
    reference = nn.MultiheadAttention(D, HEADS, batch_first=True)
    assert list(module.state_dict()) == [f"a.{key}" for key in reference.state_dict()]
    assert list(reference.state_dict()) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    params = 4 * D * D + 4 * D
    assert sum(p.numel() for p in module.parameters()) == params
    macs = 3 * T * D * D + 2 * T * T * D + T * D * D
    assert _figures(_net(f"attention({HEADS})")) == ((T, D), params, macs)
    assert _figures(_net(f"attention({HEADS}, bias=false)"))[1] == 4 * D * D
    unbiased = _attention(f"attention({HEADS}, bias=false)")
    assert list(unbiased.state_dict()) == ["a.in_proj_weight", "a.out_proj.weight"]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", ["train", "eval", "eval, no grad (fast path)"])
def test_attention_loads_and_matches_multihead_attention(mode, bias):
    reference = nn.MultiheadAttention(D, HEADS, batch_first=True, bias=bias)
    module = _load(_net(f"attention({HEADS}, bias={str(bias).lower()})"), reference)
    x = torch.randn(3, T, D)
    training = mode == "train"
    module.train(training)
    reference.train(training)
    with torch.set_grad_enabled("no grad" not in mode):
        torch.testing.assert_close(module(x), reference(x, x, x, need_weights=False)[0], **EXACT)


@pytest.mark.parametrize("where", ["vit", "transformer_encoder_layer"])
def test_attention_loads_torchvision_vit_and_transformer_encoder_layer_attention(where):
    if where == "vit":
        block = EncoderBlock(HEADS, D, 4 * D, dropout=0.0, attention_dropout=0.0).eval()
        reference = block.self_attention
    else:
        layer = nn.TransformerEncoderLayer(D, HEADS, dim_feedforward=4 * D, batch_first=True).eval()
        reference = layer.self_attn
    module = _load(_net(f"attention({HEADS})"), reference).eval()
    x = torch.randn(2, T, D)
    torch.testing.assert_close(module(x), reference(x, x, x, need_weights=False)[0], **EXACT)


def test_attention_dropout_in_training_only():
    reference = nn.MultiheadAttention(D, HEADS, dropout=0.5, batch_first=True)
    module = _load(_net(f"attention({HEADS}, dropout=0.5)"), reference)
    assert module.a.dropout == 0.5
    x = torch.randn(3, T, D)
    module.train()
    reference.train()
    torch.manual_seed(1)
    ours = module(x)
    torch.manual_seed(1)
    torch.testing.assert_close(ours, reference(x, x, x, need_weights=False)[0], **EXACT)
    module.eval()
    assert not torch.equal(ours, module(x))
    torch.testing.assert_close(module(x), module(x), **EXACT)


def _explicit_mask(size: int) -> torch.Tensor:
    return torch.ones(size, size, dtype=torch.bool).triu(1)  # True: may not attend


@pytest.mark.parametrize("mode", ["train", "eval", "eval, no grad (fast path)"])
def test_causal_attention_masks_the_future(mode):
    reference = nn.MultiheadAttention(D, HEADS, batch_first=True)
    module = _load(_net(f"attention({HEADS}, causal=true)"), reference)
    training = mode == "train"
    module.train(training)
    reference.train(training)
    x = torch.randn(3, T, D)
    with torch.set_grad_enabled("no grad" not in mode):
        ours = module(x)
        # as nn.TransformerEncoderLayer passes a causal mask: the same call, so the same numbers
        square = nn.Transformer.generate_square_subsequent_mask(T)
        as_encoder = reference(x, x, x, need_weights=False, attn_mask=square, is_causal=True)[0]
        torch.testing.assert_close(ours, as_encoder, **EXACT)
        # and what it means: an explicit mask that hides every later token
        explicit = reference(x, x, x, need_weights=False, attn_mask=_explicit_mask(T))[0]
        torch.testing.assert_close(ours, explicit, rtol=1e-4, atol=1e-4)  # the fast path's kernels differ
        assert not torch.allclose(ours, reference(x, x, x, need_weights=False)[0])
        for t in (0, 4, T - 1):
            changed = x.clone()
            changed[:, t] += torch.randn(3, D)
            after = module(changed)
            torch.testing.assert_close(after[:, :t], ours[:, :t], **EXACT)
            assert not torch.allclose(after[:, t:], ours[:, t:])


def test_attention_labels():
    text = f"""network n {{
    input x: [{T}, {D}]
    a: attention(4) -> b: attention(2, causal=true) -> c: layernorm -> d: layernorm(eps=1e-6)
    e: gelu(approximate="tanh") -> f: gelu -> g: groupnorm(5)
}}
"""
    lines = {line.split()[0]: line for line in render_dot(text, level="layer").splitlines() if "label=" in line}
    assert f'label="a\\nattention 4 heads\\n{T}×{D}' in lines["a"]
    assert f'label="b\\nattention 2 heads, causal\\n{T}×{D}' in lines["b"]
    assert f'label="c\\nlayernorm\\n{T}×{D}' in lines["c"]
    assert f'label="d\\nlayernorm eps 1e-06\\n{T}×{D}' in lines["d"]
    assert f'label="e\\ngelu tanh\\n{T}×{D}"' in lines["e"]
    assert f'label="f\\ngelu\\n{T}×{D}"' in lines["f"]
    assert f'label="g\\ngroupnorm 5\\n{T}×{D}' in lines["g"]
    assert lookup("attention").fill == lookup("linear").fill
    assert lookup("layernorm").fill == lookup("groupnorm").fill == lookup("batchnorm").fill


# ---------------------------------------------------------------- sdpa


def _sdpa_net(options: str = "", q: str = "[4, 10, 8]", k: str = "[4, 12, 8]", v: str = "[4, 12, 6]") -> str:
    return f"network n {{\n    input q: {q}\n    input k: {k}\n    input v: {v}\n    a: sdpa(q, k, v{options})\n}}\n"


@pytest.mark.parametrize("options", ["", ", causal=true"])
def test_sdpa_matches_the_torch_function(options):
    text = _sdpa_net(options)
    module = _load(text)
    assert type(module.a) is ScaledDotProductAttention and not module.a.state_dict()
    q, k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 12, 8), torch.randn(2, 4, 12, 6)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=bool(options))
    torch.testing.assert_close(module(q, k, v), expected, **EXACT)
    assert _figures(text) == ((4, 10, 6), 0, 4 * 10 * 12 * (8 + 6))


def test_sdpa_dropout_in_training_only():
    module = _load(_sdpa_net(", dropout=0.4"))
    q, k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 12, 8), torch.randn(2, 4, 12, 6)
    module.train()
    torch.manual_seed(2)
    ours = module(q, k, v)
    torch.manual_seed(2)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, dropout_p=0.4), **EXACT)
    module.eval()
    torch.testing.assert_close(module(q, k, v), F.scaled_dot_product_attention(q, k, v), **EXACT)


def test_single_head_attention_from_primitives_is_multihead_attention():
    """Linear projections and sdpa write the attention of nn.MultiheadAttention with one head."""
    text = f"""network n {{
    input x: [{T}, {D}]
    q: linear({D})
    x -> k: linear({D})
    x -> v: linear({D})
    s: sdpa(q, k, v, causal=true) -> out: linear({D})
}}
"""
    module = _load(text)
    reference = _randomise(nn.MultiheadAttention(D, 1, batch_first=True)).eval()
    w, b = reference.in_proj_weight.chunk(3), reference.in_proj_bias.chunk(3)
    state = {f"{name}.weight": w[i] for i, name in enumerate("qkv")}
    state |= {f"{name}.bias": b[i] for i, name in enumerate("qkv")}
    state |= {f"out.{key}": value for key, value in reference.out_proj.state_dict().items()}
    module.load_state_dict(state, strict=True)
    x = torch.randn(2, T, D)
    expected = reference(x, x, x, need_weights=False, attn_mask=_explicit_mask(T))[0]
    torch.testing.assert_close(module(x), expected)
    g = archdsl.graph(text)
    assert g.graph["total_macs"] == _figures(_net("attention(1, causal=true)"))[2]


# ------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("op", "shape", "message", "part", "hint"),
    [
        (
            "attention(5)",
            "[10, 32]",
            "`heads=5` must divide the token width 32 of a sequence [T, D] input [10, 32]",
            "5",
            "each head takes width / heads",
        ),
        (
            "attention(4)",
            "[32, 8, 8]",
            "`attention` takes a sequence [T, D] input, got an image [C, H, W] input [32, 8, 8]",
            "attention",
            "`flatten(1) -> transpose(0, 1)`",
        ),
        (
            "attention(4)",
            "[32]",
            "`attention` takes a sequence [T, D] input, got a flat [F] input [32]",
            "attention",
            None,
        ),
        (
            "layernorm2d",
            "[10, 32]",
            "`layernorm2d` takes an image [C, H, W] input, got a sequence [T, D] input [10, 32]",
            "layernorm2d",
            "`layernorm` normalises the last dim",
        ),
        (
            "groupnorm(groups=3)",
            "[32, 4, 4]",
            "`groups=3` must divide the 32 channels of an image [C, H, W] input [32, 4, 4]",
            "groups=3",
            "equal groups",
        ),
        (
            "batchnorm",
            "[2, 3, 4, 5]",
            "`batchnorm` takes a flat [F] or a sequence [T, D] or an image [C, H, W] input, got a rank-4 input",
            "batchnorm",
            "[C], [C, L] or [C, H, W]",
        ),
        (
            "embedding(10, 4)",
            "[1, 1, 1, 1, 1, 1, 1, 2]",
            "`embedding` adds a dim to its input of ids, and a rank-8 input [1, 1, 1, 1, 1, 1, 1, 2] already has 8",
            "embedding",
            None,
        ),
    ],
)
def test_shape_errors_are_located(op, shape, message, part, hint):
    diagnostic = _error(_net(op, shape))
    assert diagnostic.code == "E401"
    assert message in diagnostic.message
    assert (diagnostic.span.line, diagnostic.span.column) == (3, _column(op, part))
    assert (hint is None) == (diagnostic.hint is None) and (hint is None or hint in diagnostic.hint)


@pytest.mark.parametrize(
    ("inputs", "message", "part"),
    [
        (
            ("[4, 10, 8]", "[4, 12, 7]", "[4, 12, 6]"),
            "`sdpa`'s key [4, 12, 7] has width 7 but the query [4, 10, 8] has width 8",
            "k,",
        ),
        (
            ("[4, 10, 8]", "[4, 12, 8]", "[4, 11, 6]"),
            "`sdpa`'s value [4, 11, 6] has 11 tokens but the key [4, 12, 8] has 12",
            "v)",
        ),
        (
            ("[4, 10, 8]", "[2, 12, 8]", "[4, 12, 6]"),
            "`sdpa`'s key [2, 12, 8] and query [4, 10, 8] differ in their leading dims [2] and [4]",
            "k,",
        ),
        (("[4, 10, 8]", "[4, 12, 8]", "[12]"), "`sdpa`'s value must be [..., T, d] (rank 2 or more)", "v)"),
    ],
)
def test_sdpa_errors_are_located_at_the_input(inputs, message, part):
    text = _sdpa_net("", *inputs)
    diagnostic = _error(text)
    assert diagnostic.code == "E401" and message in diagnostic.message
    line = text.splitlines()[4]
    assert (diagnostic.span.line, diagnostic.span.column) == (5, line.index(part) + 1)


def test_sdpa_takes_three_inputs():
    diagnostic = _error("network n {\n    input q: [4, 8]\n    a: sdpa(q, q)\n}\n")
    assert diagnostic.code == "E322" and "`sdpa` takes 3 input(s), got 2" in diagnostic.message


@pytest.mark.parametrize(
    ("op", "message", "part"),
    [
        ('gelu(approximate="fast")', '`approximate` must be "none" or "tanh", got `"fast"`', "approximate"),
        ("gelu(approximate=true)", "`approximate` must be a string", "approximate"),
        ("attention(0)", "`heads` must be at least 1, got 0", "0"),
        ("attention(4, dropout=1.5)", "`dropout` must be at most 1.0, got 1.5", "dropout"),
        ("attention(4, causal=1)", "`causal` must be `true` or `false`", "causal"),
        ("layernorm(eps=-1)", "`eps` must be at least 0.0", "eps"),
        ("groupnorm(0)", "`groups` must be at least 1", "0"),
        ("embedding(0, 4)", "`num` must be at least 1", "0"),
    ],
)
def test_bad_arguments_are_located_errors(op, message, part):
    diagnostic = _error(_net(op))
    assert diagnostic.code == "E301" and message in diagnostic.message
    assert (diagnostic.span.line, diagnostic.span.column) == (3, _column(op, part))


@pytest.mark.parametrize(
    ("op", "usage"), [("attention", "attention(heads, dropout=0.0"), ("embedding(4)", "embedding(num, dim)")]
)
def test_missing_arguments_show_the_usage(op, usage):
    diagnostic = _error(_net(op))
    assert diagnostic.code == "E315" and usage in str(diagnostic.hint) + diagnostic.message


def test_float_ops_refuse_token_ids():
    diagnostic = _error("network n {\n    input ids: [7], dtype=int, high=50\n    a: attention(1)\n}\n")
    assert diagnostic.code == "E410" and "`embedding(num, dim)`" in diagnostic.hint


# --------------------------------------------------- compile and export

BLOCK = f"""block encoder(heads, causal = false) {{
    ln1: layernorm -> attn: attention(heads, causal=causal)
    skip in -> attn
    ln2: layernorm -> fc1: linear({2 * D}) -> act: gelu -> fc2: linear({D})
    skip attn -> fc2
}}

network small {{
    input x: [{T}, {D}]
    e1: encoder({HEADS})
    e2: encoder({HEADS}, causal=true)
    head: layernorm(eps=1e-6)
}}
"""


def test_torch_compile_fullgraph_has_no_graph_break():
    torch._dynamo.reset()
    module = archdsl.load(BLOCK, seed=0).eval()
    x = torch.randn(2, T, D)
    assert torch._dynamo.explain(module)(x).graph_break_count == 0
    compiled = torch.compile(module, fullgraph=True)
    torch.testing.assert_close(compiled(x), module(x))
    module.train()
    torch.testing.assert_close(torch.compile(module, fullgraph=True, backend="aot_eager")(x), module(x))


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.load` is deprecated:FutureWarning")
def test_torch_export_and_torchscript(tmp_path):
    module = archdsl.load(BLOCK, seed=0).eval()
    x = torch.randn(3, T, D)
    program = torch.export.export(module, (x,))
    torch.testing.assert_close(program.module()(x), module(x))
    loaded = torch.export.load(export(module, tmp_path / "net.pt2", "pt2")).module()
    torch.testing.assert_close(loaded(x), module(x))
    scripted = torch.jit.load(export(module, tmp_path / "net.torchscript", "torchscript")).eval()
    torch.testing.assert_close(scripted(x), module(x))
    assert type(module.e1.attn) is SelfAttention, "scripting leaves the module as it was"
