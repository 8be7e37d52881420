"""Spatial ops of encoder-decoder networks (conv_transpose, upsample, crop, pad, pixel_shuffle): each shape
rule is what torch produces, each compiled op is the torch expression, each error is located, and the
ops that take their size from another node (`like=`) follow the size the module is run at.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch
import torchvision.transforms.functional as TF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from located import assert_shape_error_at
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

import archdsl
from archdsl.export import export
from archdsl.ops import lookup
from archdsl.ops.spatial import centre_offset

BATCH = 2


def examples(count: int = 40):
    return settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def net(statement: str, **inputs: tuple[int, ...]) -> str:
    """A network whose node `t` is ``statement`` applied to the first input; the others can be named by `like=`."""
    declared = "".join(f"    input {name}: {list(shape)}\n" for name, shape in inputs.items())
    return f"network n {{\n{declared}    {next(iter(inputs))} -> t: {statement}\n}}\n"


def outcome(statement: str, reference, **inputs: tuple[int, ...]):
    """Whether archdsl accepts the statement and whether torch runs the reference agree; if both do, so do
    the shape and the compiled output (exactly). Returns the node's data, or None when both refuse."""
    text = net(statement, **inputs)
    tensors = [torch.randn(BATCH, *shape) for shape in inputs.values()]
    try:
        want = reference(*tensors)
    except (RuntimeError, ValueError):
        want = None
    if want is not None and want.numel() == 0:
        want = None  # an empty tensor: archdsl's shapes are positive, so it refuses what would make one
    try:
        g = archdsl.graph(text)
    except archdsl.ArchError as err:
        assert want is None, f"torch runs {statement} on {inputs} but archdsl refuses: {err}"
        assert err.diagnostics[0].code == "E401"
        return None
    assert want is not None, f"archdsl accepts {statement} on {inputs} but torch refuses"
    data = g.nodes["t"]
    assert data["shape"] == tuple(want.shape[1:])
    module = archdsl.load(text)
    torch.testing.assert_close(module(*tensors), want, rtol=0, atol=0)
    return data


def runtime_macs(module: nn.Module, *inputs: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops() / 2


SIZES = st.integers(1, 7)


def pairs(low: int, high: int):
    """A height and a width, each from low to high."""
    return st.tuples(st.integers(low, high), st.integers(low, high))


# ---------------------------------------------------------------- conv_transpose


@examples(60)
@given(st.data())
def test_conv_transpose_is_nn_conv_transpose2d(data):
    draw = data.draw
    groups = draw(st.integers(1, 3))
    c, out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k, stride, pad, dilation = draw(pairs(1, 4)), draw(pairs(1, 3)), draw(pairs(0, 3)), draw(pairs(1, 2))
    output_pad = tuple(draw(st.integers(0, max(s, d))) for s, d in zip(stride, dilation, strict=True))
    h, w, bias = draw(SIZES), draw(SIZES), draw(st.booleans())
    statement = (
        f"conv_transpose({out}, k={list(k)}, stride={list(stride)}, pad={list(pad)}, "
        f"output_pad={list(output_pad)}, groups={groups}, bias={str(bias).lower()}, dilation={list(dilation)})"
    )
    text = net(statement, x=(c, h, w))
    reference = nn.ConvTranspose2d(c, out, k, stride, pad, output_pad, groups, bias, dilation)
    x = torch.randn(BATCH, c, h, w)
    try:
        empty = reference(x).numel() == 0  # torch makes a height of 0; archdsl refuses it
    except RuntimeError:
        empty = True
    if empty:
        with pytest.raises(archdsl.ArchError) as info:
            archdsl.graph(text)
        assert info.value.diagnostics[0].code == "E401"
        return
    module = archdsl.load(text)
    reference.load_state_dict(module.t.state_dict(), strict=True)  # same keys and shapes as torch's module
    want = reference(x)
    node = archdsl.graph(text).nodes["t"]
    assert node["shape"] == tuple(want.shape[1:])
    torch.testing.assert_close(module(x), want, rtol=0, atol=0)
    assert node["params"] == sum(p.numel() for p in reference.parameters())
    assert node["macs"] == runtime_macs(module, x[:1])
    assert lookup("conv_transpose").weight_shape(node["args"], node["input_shapes"]) == tuple(reference.weight.shape)


def test_conv_transpose_doubles_the_size_as_a_u_nets_up_convolution():
    g = archdsl.graph(net("conv_transpose(512, k=2, stride=2)", x=(1024, 28, 28)))
    data = g.nodes["t"]
    assert data["shape"] == (512, 56, 56)
    assert data["params"] == 1024 * 512 * 4 + 512
    assert data["macs"] == 1024 * 28 * 28 * 512 * 4  # each input value meets each weight once


def test_conv_transpose_is_initialised_as_torchvisions_transposed_convolutions():
    """kaiming_normal_(fan_out, relu) on the [in, out, kh, kw] weight, as MaskRCNNPredictor's conv5_mask; bias 0."""
    module = archdsl.load(net("conv_transpose(64, k=2, stride=2)", x=(256, 4, 4)), seed=0)
    weight = module.t.weight
    assert weight.shape == (256, 64, 2, 2)
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 2 * 2)), rel=0.05)
    assert torch.count_nonzero(module.t.bias) == 0


def test_a_transposed_convolution_can_tie_the_weight_of_the_convolution_it_undoes():
    text = """
network tied_autoencoder {
    input x: [3, 16, 16]
    enc: conv(8, k=3, stride=2, pad=1) -> relu
    dec: conv_transpose(3, k=3, stride=2, pad=1, output_pad=1, tie=enc)
}
"""
    module = archdsl.load(text)
    assert module.dec.weight is module.enc.weight
    assert module(torch.randn(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    assert archdsl.graph(text).graph["total_params"] == 8 * 3 * 9 + 8 + 3


# ---------------------------------------------------------------- upsample

MODES = st.sampled_from(["nearest", "bilinear", "bicubic"])
SCALES = st.one_of(
    st.integers(1, 4),
    st.sampled_from([0.5, 1.5, 2.5, 0.3, 0.7, 1.1, 1.7, 3.3]),
    st.floats(0.2, 4.0).map(lambda s: round(s, 2)),
)


def _corners(draw, mode: str):
    return None if mode == "nearest" else draw(st.sampled_from([None, True, False]))


def _upsample_kwargs(mode: str, corners) -> str:
    return f', mode="{mode}"' + ("" if corners is None else f", align_corners={str(corners).lower()}")


@examples(60)
@given(st.data())
def test_upsample_by_a_scale_is_f_interpolate(data):
    draw = data.draw
    scale = draw(st.one_of(SCALES, st.tuples(SCALES, SCALES)))
    mode = draw(MODES)
    corners = _corners(draw, mode)
    written = list(scale) if isinstance(scale, tuple) else scale

    def reference(x):
        return F.interpolate(x, scale_factor=scale, mode=mode, align_corners=corners)

    shape = (2, draw(SIZES), draw(SIZES))
    outcome(f"upsample({written}{_upsample_kwargs(mode, corners)})", reference, x=shape)


def test_upsample_sizes_are_floor_of_size_times_scale():
    """The float product, floored, as torch computes it: 10 * 0.3 is 3.0000000000000004 -> 3, 7 * 1.5 -> 10."""
    for scale, size, made in ((0.3, 10, 3), (1.5, 7, 10), (1.1, 10, 11), (0.5, 5, 2), (2, 7, 14)):
        g = archdsl.graph(net(f"upsample({scale})", x=(1, size, size)))
        assert g.nodes["t"]["shape"] == (1, made, made)
        assert F.interpolate(torch.zeros(1, 1, size, size), scale_factor=scale).shape[-1] == made


@examples(40)
@given(st.data())
def test_upsample_like_takes_the_other_nodes_size(data):
    draw = data.draw
    mode = draw(MODES)
    corners = _corners(draw, mode)
    target = (draw(st.integers(1, 4)), draw(SIZES), draw(SIZES))

    def reference(x, y):
        return F.interpolate(x, size=y.shape[-2:], mode=mode, align_corners=corners)

    data = outcome(f"upsample(like=y{_upsample_kwargs(mode, corners)})", reference, x=(3, draw(SIZES), 5), y=target)
    assert data["macs"] == 0 and data["params"] == 0


# ---------------------------------------------------------------- crop


@examples(60)
@given(st.data())
def test_crop_is_torchvisions_center_crop(data):
    draw = data.draw
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    th, tw = draw(st.integers(1, h)), draw(st.integers(1, w))
    outcome("crop(like=y)", lambda x, y: TF.center_crop(x, [th, tw]), x=(3, h, w), y=(5, th, tw))


def test_crop_puts_an_odd_differences_extra_row_where_torchvision_does():
    """torchvision rounds half the difference with Python's round, ties to even: the extra row or column is at
    the bottom (right) for a difference of 1, 5, 9, and at the top (left) for 3, 7, 11."""
    firsts = {}
    for extra in range(13):
        size = 4 + extra
        x = torch.arange(size, dtype=torch.float32).expand(1, 1, size, size)
        got = archdsl.load(net("crop(like=y)", x=(1, size, size), y=(1, 4, 4)))(x, torch.zeros(1, 1, 4, 4))
        torch.testing.assert_close(got, TF.center_crop(x, [4, 4]), rtol=0, atol=0)
        firsts[extra] = int(got[0, 0, 0, 0])
        assert centre_offset(extra) == firsts[extra] == int(round(extra / 2))
    assert firsts == {0: 0, 1: 0, 2: 1, 3: 2, 4: 2, 5: 2, 6: 3, 7: 4, 8: 4, 9: 4, 10: 5, 11: 6, 12: 6}


def test_crop_by_position_and_the_size_edge():
    text = net("crop(y)", x=(4, 10, 10), y=(2, 6, 8))
    g = archdsl.graph(text)
    assert g.nodes["t"]["shape"] == (4, 6, 8)
    assert g.edges["x", "t"]["kind"] == "flow" and g.edges["y", "t"]["kind"] == "size"
    assert list(g.nodes["t"]["inputs"]) == ["x", "y"]


# ---------------------------------------------------------------- pad


@examples(80)
@given(st.data())
def test_pad_is_f_pad(data):
    draw = data.draw
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    sides = draw(st.one_of(st.integers(0, 4), st.tuples(*[st.integers(0, 4)] * 4)))
    value = draw(st.sampled_from([0.0, 1.5, -2.0])) if mode == "constant" else 0.0
    torch_sides = [sides] * 4 if isinstance(sides, int) else list(sides)
    written = sides if isinstance(sides, int) else list(sides)

    def reference(x):
        return F.pad(x, torch_sides, mode=mode, **({"value": value} if mode == "constant" else {}))

    extra = f', value={value}, mode="{mode}"' if mode == "constant" else f', mode="{mode}"'
    outcome(f"pad({written}{extra})", reference, x=(2, draw(st.integers(1, 5)), draw(st.integers(1, 5))))


def test_pad_order_is_left_right_top_bottom():
    g = archdsl.graph(net("pad([1, 2, 3, 4])", x=(1, 5, 5)))
    assert g.nodes["t"]["shape"] == (1, 5 + 3 + 4, 5 + 1 + 2)
    x = torch.ones(1, 1, 5, 5)
    y = archdsl.load(net("pad([1, 2, 3, 4])", x=(1, 5, 5)))(x)
    assert y[0, 0, 3:-4, 1:-2].eq(1).all() and y[0, 0, :, :1].eq(0).all() and y[0, 0, :3].eq(0).all()


# ---------------------------------------------------------------- pixel_shuffle


@examples(40)
@given(st.data())
def test_pixel_shuffle_and_unshuffle_are_torchs(data):
    draw = data.draw
    factor = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 12)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    outcome(f"pixel_shuffle({factor})", lambda x: F.pixel_shuffle(x, factor), x=shape)
    outcome(f"pixel_unshuffle({factor})", lambda x: F.pixel_unshuffle(x, factor), x=shape)


# ---------------------------------------------------------------- labels


def test_labels_name_the_arguments():
    labels = {
        "conv_transpose(64, k=2, stride=2)": "conv_transpose 2×2/2, 64",
        "conv_transpose(8, k=3, groups=2)": "conv_transpose 3×3 g2, 8",
        "upsample(2)": "upsample ×2",
        'upsample([2, 1.5], mode="bilinear")': "upsample ×2×1.5 bilinear",
        "upsample(like=y)": "upsample like",
        "crop(like=y)": "crop like",
        "pad(1)": "pad 1",
        'pad([1, 0, 1, 0], mode="reflect")': "pad [1, 0, 1, 0] reflect",
        "pixel_shuffle(2)": "pixel_shuffle 2",
        "pixel_unshuffle(2)": "pixel_unshuffle 2",
    }
    for statement, label in labels.items():
        others = {"y": (1, 4, 4)} if "like" in statement else {}
        data = archdsl.graph(net(statement, x=(8, 6, 6), **others)).nodes["t"]
        assert lookup(data["op"]).describe(data["args"]) == label


# ---------------------------------------------------------------- errors


ERRORS = [
    # statement, inputs, message, the text the caret is under
    (
        "conv_transpose(4, k=2)",
        {"x": (8,)},
        "`conv_transpose` takes an image [C, H, W] input, got a flat [F] input [8]",
        "conv_transpose(4, k=2)",
    ),
    (
        "conv_transpose(4, k=2, groups=3)",
        {"x": (6, 4, 4)},
        "`groups=3` must divide both the input channels (6) and the output channels (4)",
        "groups=3",
    ),
    (
        "conv_transpose(4, k=2, stride=2, output_pad=2)",
        {"x": (6, 4, 4)},
        "`conv_transpose`'s output_pad=2 must be smaller than its stride (2) or its dilation (1)",
        "output_pad=2",
    ),
    (
        "conv_transpose(4, k=1, pad=1)",
        {"x": (6, 1, 1)},
        "`conv_transpose` would make a height of -1 from an image [C, H, W] input [6, 1, 1]",
        "pad=1",
    ),
    (
        "upsample()",
        {"x": (2, 4, 4)},
        "`upsample` needs a `scale` (a factor, or [h, w]) or `like` (a node whose size it takes)",
        "upsample()",
    ),
    (
        "upsample(scale=2, like=y)",
        {"x": (2, 4, 4), "y": (2, 8, 8)},
        "`upsample` takes its size from `scale` or from `like`, not both",
        "scale=2",
    ),
    (
        "upsample(2, align_corners=true)",
        {"x": (2, 4, 4)},
        '`upsample`\'s align_corners applies to mode="bilinear" and "bicubic", not "nearest"',
        "align_corners=true",
    ),
    (
        "upsample(0.2)",
        {"x": (2, 4, 6)},
        "`upsample`'s scale 0.2 makes an image [C, H, W] input [2, 4, 6] 0×1; the output size is floor(size * scale)",
        "0.2",
    ),
    (
        "upsample(2)",
        {"x": (4, 6)},
        "`upsample` takes an image [C, H, W] input, got a sequence [T, D] input [4, 6]",
        "upsample(2)",
    ),
    (
        "upsample(like=y)",
        {"x": (2, 4, 4), "y": (16,)},
        "`upsample` takes the height and width of `like`, which must be an image [C, H, W], got a flat [F] input [16]",
        "like=y",
    ),
    (
        "crop(like=y)",
        {"x": (2, 8, 8), "y": (2, 6, 10)},
        "`crop` cannot cut an image [C, H, W] input [2, 8, 8] down to 6×10, the size of `like` [2, 6, 10], "
        "which is larger",
        "like=y",
    ),
    (
        "crop(like=y)",
        {"x": (8, 8), "y": (2, 6, 6)},
        "`crop` takes an image [C, H, W] input, got a sequence [T, D] input [8, 8]",
        "crop(like=y)",
    ),
    (
        "pad([1, 2])",
        {"x": (2, 4, 4)},
        "`pad` takes one size for all four sides or four sizes [left, right, top, bottom], got [1, 2]",
        "[1, 2]",
    ),
    (
        'pad([3, 0, 0, 0], mode="reflect")',
        {"x": (2, 3, 3)},
        '`pad` mode="reflect" pads at most 2 (one less than the width) on a side, but the left pad is 3',
        "[3, 0, 0, 0]",
    ),
    (
        'pad(4, mode="circular")',
        {"x": (2, 5, 3)},
        '`pad` mode="circular" pads at most the width (3) on a side, but the left pad is 4',
        "4",
    ),
    (
        'pad(1, value=1.0, mode="replicate")',
        {"x": (2, 3, 3)},
        '`pad`\'s value applies to mode="constant", not "replicate"',
        "value=1.0",
    ),
    (
        "pixel_shuffle(2)",
        {"x": (6, 3, 3)},
        "`pixel_shuffle(2)` needs channels divisible by 2² = 4, got an image [C, H, W] input [6, 3, 3]",
        "2",
    ),
    (
        "pixel_unshuffle(3)",
        {"x": (2, 6, 4)},
        "`pixel_unshuffle(3)` needs a height and width divisible by 3, got an image [C, H, W] input [2, 6, 4]",
        "3",
    ),
]


@pytest.mark.parametrize(("statement", "inputs", "message", "culprit"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_say_what_is_wrong_and_where(statement, inputs, message, culprit):
    assert_shape_error_at(net(statement, **inputs), statement, message, culprit)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("upsample(0)", "`scale` must be a positive number, got 0"),
        ("upsample([2, 2, 2])", "`scale` must be a number or a list of two numbers [h, w], got"),
        ('upsample(2, mode="area")', '`mode` must be "nearest" or "bilinear" or "bicubic"'),
        ("pad(-1)", "`pad` must be at least 0, got -1"),
        ('pad(1, mode="wrap")', '`mode` must be "constant" or "reflect" or "replicate" or "circular"'),
        ("pixel_shuffle(0)", "`factor` must be at least 1, got 0"),
        ("crop(like=2)", "`like` names a node"),
        ("crop()", "needs the argument `like`"),
    ],
)
def test_bad_arguments_are_argument_errors(statement, message):
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(net(statement, x=(4, 6, 6), y=(4, 4, 4)))
    assert message in str(info.value)
    assert info.value.diagnostics[0].code in ("E301", "E312", "E315")


# ---------------------------------------------------------------- an encoder-decoder at several sizes

UNET = """
network tiny_unet {
    input x: [3, 28, 28]
    x -> c1: conv(8, k=3) -> e1: relu
    down: maxpool(2) -> c2: conv(16, k=3) -> e2: relu
    up: conv_transpose(8, k=2, stride=2)
    e1 -> skip: crop(like=up)
    cat: concat(up, skip) -> c3: conv(8, k=3) -> r3: relu
    head: conv(2, k=1) -> full: upsample(like=x, mode="bilinear")
        -> sub: conv(8, k=3, pad=1) -> shuffled: pixel_shuffle(2) -> back: upsample(0.5)
        -> pad(1, mode="reflect")
}
"""


def unet_reference(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The same network written with torch functions and the module's own weights."""
    e1 = F.relu(F.conv2d(x, m.c1.weight, m.c1.bias))
    e2 = F.relu(F.conv2d(F.max_pool2d(e1, 2), m.c2.weight, m.c2.bias))
    up = F.conv_transpose2d(e2, m.up.weight, m.up.bias, stride=2)
    skip = TF.center_crop(e1, list(up.shape[-2:]))
    r3 = F.relu(F.conv2d(torch.cat([up, skip], 1), m.c3.weight, m.c3.bias))
    head = F.conv2d(r3, m.head.weight, m.head.bias)
    full = F.interpolate(head, size=x.shape[-2:], mode="bilinear")
    sub = F.pixel_shuffle(F.conv2d(full, m.sub.weight, m.sub.bias, padding=1), 2)
    return F.pad(F.interpolate(sub, scale_factor=0.5), [1, 1, 1, 1], mode="reflect")


# the declared size, an even size that is not square, and odd sizes whose crops have odd differences (5)
UNET_SIZES = [(28, 28), (40, 36), (31, 29)]


def test_a_compiled_encoder_decoder_runs_at_other_sizes():
    module = archdsl.load(UNET, seed=0)
    assert archdsl.graph(UNET).nodes["pad"]["shape"] == (2, 30, 30)
    for h, w in UNET_SIZES:
        x = torch.randn(BATCH, 3, h, w)
        got = module(x)
        assert got.shape == (BATCH, 2, h + 2, w + 2)
        torch.testing.assert_close(got, unet_reference(module, x))


def test_the_encoder_decoders_macs_are_what_the_flop_counter_counts():
    g = archdsl.graph(UNET)
    assert g.nodes["up"]["macs"] == 16 * 11 * 11 * 8 * 4
    assert runtime_macs(archdsl.load(UNET), torch.randn(1, 3, 28, 28)) == g.graph["total_macs"]


def test_the_encoder_decoder_compiles_and_exports(tmp_path):
    module = archdsl.load(UNET, seed=0).eval()
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    for h, w in UNET_SIZES[:2]:
        x = torch.randn(BATCH, 3, h, w)
        torch.testing.assert_close(compiled(x), module(x))
    torch._dynamo.reset()
    x = torch.randn(BATCH, 3, 28, 28)
    program = torch.export.load(str(export(module, tmp_path / "unet.pt2", "pt2"))).module()
    torch.testing.assert_close(program(x[:1]), module(x[:1]))
    # spatial sizes symbolic too: even sizes (the exporter proves the crops' offsets for those)
    half_h, half_w = torch.export.Dim("half_h", min=12, max=64), torch.export.Dim("half_w", min=12, max=64)
    program = torch.export.export(module, (x,), dynamic_shapes=({2: 2 * half_h, 3: 2 * half_w},))
    x = torch.randn(BATCH, 3, 40, 36)
    torch.testing.assert_close(program.module()(x), module(x))


def test_the_encoder_decoder_exports_to_onnx(tmp_path):
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as err:  # CI installs it: no skip
        pytest.fail(f"the ONNX tests need onnxruntime ({err}): pip install 'archdsl[onnx]'")
    module = archdsl.load(UNET, seed=0).eval()
    path = export(module, tmp_path / "unet.onnx", "onnx")
    x = torch.randn(BATCH, 3, 28, 28)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {"x": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(result), module(x), rtol=1e-4, atol=1e-5)


def test_the_encoder_decoder_scripts(tmp_path):
    module = archdsl.load(UNET, seed=0).eval()
    scripted = torch.jit.load(str(export(module, tmp_path / "unet.torchscript", "torchscript")))
    for h, w in UNET_SIZES:
        x = torch.randn(1, 3, h, w)
        torch.testing.assert_close(scripted(x), module(x))
