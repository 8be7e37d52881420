"""Spatial ops of encoder-decoder networks: transposed convolution, up-sampling, centre cropping,
padding and pixel (un)shuffle, on images ``[C, H, W]``.

``upsample(like=enc3)`` and ``crop(like=up)`` take their target size from
another node (its shape is their second input): the compiled module reads
that size from the tensor at run time, so it follows the input size the
module is called with, not only the size the network declares.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from archdsl.expr import Shape, show, type_name
from archdsl.ops.dims import layout, needs_rank
from archdsl.ops.layers import uninitialised
from archdsl.ops.registry import ArgProblem, ArgSpec, ChoiceArg, OpSpec, ShapeProblem, register

Args = Mapping[str, Any]

FLAT_HINT = "a flat or sequence input has no height and width; move this op before `flatten`"
LIKE_DOC = "a node whose height and width the output takes, read at run time"


def _image(op: str, shapes: Sequence[Shape]) -> Shape:
    return needs_rank(op, shapes[0], (3,), FLAT_HINT)


def _like(op: str, shapes: Sequence[Shape]) -> tuple[int, int]:
    """The height and width of the ``like=`` node (the op's second input)."""
    shape = shapes[1]
    if len(shape) != 3:
        raise ShapeProblem(
            f"`{op}` takes the height and width of `like`, which must be an image [C, H, W], got {layout(shape)}",
            hint="name a node with spatial dims: a convolution's output, before any `flatten`",
            input_index=1,
        )
    return shape[1], shape[2]


def _pair(values: tuple[int, int]) -> str:
    return str(values[0]) if values[0] == values[1] else f"{values[0]}×{values[1]}"


# ------------------------------------------------------------ conv_transpose


def _conv_transpose_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    c, h, w = _image("conv_transpose", shapes)
    groups, out = args["groups"], args["out"]
    if c % groups or out % groups:
        raise ShapeProblem(
            f"`groups={groups}` must divide both the input channels ({c}) and the output channels ({out})",
            arg="groups",
        )
    sizes = []
    for dim, size in enumerate((h, w)):
        k, stride, pad = args["k"][dim], args["stride"][dim], args["pad"][dim]
        extra, dilation = args["output_pad"][dim], args["dilation"][dim]
        if extra >= stride and extra >= dilation:
            raise ShapeProblem(
                f"`conv_transpose`'s output_pad={extra} must be smaller than its stride ({stride}) "
                f"or its dilation ({dilation})",
                arg="output_pad",
                hint="output_pad picks one of the `stride` output sizes that a strided conv maps to the same input",
            )
        made = (size - 1) * stride - 2 * pad + dilation * (k - 1) + extra + 1
        if made < 1:
            raise ShapeProblem(
                f"`conv_transpose` would make a {('height', 'width')[dim]} of {made} from {layout(shapes[0])}: "
                f"padding {pad} on each side removes more than the kernel adds",
                arg="pad",
                hint="the output size is (size - 1) * stride - 2 * pad + dilation * (k - 1) + output_pad + 1",
            )
        sizes.append(made)
    return (out, *sizes)


def _conv_transpose_params(args: Args, shapes: Sequence[Shape]) -> int:
    kh, kw = args["k"]
    return shapes[0][0] * (args["out"] // args["groups"]) * kh * kw + (args["out"] if args["bias"] else 0)


def _conv_transpose_macs(args: Args, shapes: Sequence[Shape], out: Shape) -> int:
    # Every input value meets every weight of its group once, whatever the stride and padding
    # (FlopCounterMode counts a transposed convolution over the input's positions, not the output's).
    c, h, w = shapes[0]
    kh, kw = args["k"]
    return c * h * w * (args["out"] // args["groups"]) * kh * kw


def _conv_transpose_build(args: Args, shapes: Sequence[Shape]) -> nn.Module:
    conv = uninitialised(
        nn.ConvTranspose2d,
        shapes[0][0],
        args["out"],
        args["k"],
        stride=args["stride"],
        padding=args["pad"],
        output_padding=args["output_pad"],
        groups=args["groups"],
        bias=args["bias"],
        dilation=args["dilation"],
    )
    # torchvision's rule for its transposed convolutions (MaskRCNNPredictor's conv5_mask), the call its
    # convolutions make: the weight is [in, out / groups, kh, kw], so "fan_out" is in * kh * kw here.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _conv_transpose_label(args: Args) -> str:
    stride = f"/{_pair(args['stride'])}" if args["stride"] != (1, 1) else ""
    groups = f" g{args['groups']}" if args["groups"] != 1 else ""
    return f"conv_transpose {'×'.join(map(str, args['k']))}{stride}{groups}, {args['out']}"


register(
    OpSpec(
        name="conv_transpose",
        summary="2-d transposed convolution (torch.nn.ConvTranspose2d), an up-convolution; input channels inferred",
        args=(
            ArgSpec("out", "int", minimum=1, doc="output channels"),
            ArgSpec("k", "int2", minimum=1, doc="kernel size"),
            ArgSpec("stride", "int2", 1, minimum=1),
            ArgSpec("pad", "int2", 0, minimum=0, doc="removed from each side of the output (padding)"),
            ArgSpec("output_pad", "int2", 0, minimum=0, doc="added to one side of the output (output_padding)"),
            ArgSpec("groups", "int", 1, minimum=1),
            ArgSpec("bias", "bool", True),
            ArgSpec("dilation", "int2", 1, minimum=1),
        ),
        infer=_conv_transpose_infer,
        count_params=_conv_transpose_params,
        count_macs=_conv_transpose_macs,
        build=_conv_transpose_build,
        weight_shape=lambda args, shapes: (shapes[0][0], args["out"] // args["groups"], *args["k"]),
        label=_conv_transpose_label,
        fill="#dbe9f6",
        weighted=True,
        overwritable=True,
    )
)


# ------------------------------------------------------------------ upsample


@dataclass(frozen=True)
class ScaleArg(ArgSpec):
    """A positive number, or ``[h, w]`` of them: a scale factor, kept as a pair of floats."""

    def coerce(self, value: Any) -> Any:
        if value is None:
            return None
        items = value if isinstance(value, tuple) else (value, value)
        if len(items) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            got = f"{type_name(value)} `{show(value)}`"
            raise ArgProblem(f"`{self.name}` must be a number or a list of two numbers [h, w], got {got}")
        for item in items:
            if not 0 < item < math.inf:
                raise ArgProblem(f"`{self.name}` must be a positive number, got {show(item)}")
        return tuple(float(v) for v in items)


def spatial_size(like: torch.Tensor) -> list[int]:
    """The height and width of ``like``, read at run time (the ``size`` of ``upsample(like=...)``)."""
    return [like.shape[-2], like.shape[-1]]


def _scale_text(scale: tuple[float, float]) -> str:
    """A scale as a label or an error writes it: ``2``, ``2×1.5``."""
    return f"{scale[0]:g}" if scale[0] == scale[1] else f"{scale[0]:g}×{scale[1]:g}"


def _upsample_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    c, h, w = _image("upsample", shapes)
    scale, mode = args["scale"], args["mode"]
    if args["align_corners"] is not None and mode == "nearest":
        raise ShapeProblem(
            '`upsample`\'s align_corners applies to mode="bilinear" and "bicubic", not "nearest"',
            arg="align_corners",
            hint="leave align_corners out, or choose an interpolating mode",
        )
    if args["like"] and scale is not None:
        raise ShapeProblem(
            "`upsample` takes its size from `scale` or from `like`, not both",
            arg="scale",
            hint="`like=node` follows that node's size at run time; `scale` multiplies the input's",
        )
    if args["like"]:
        return (c, *_like("upsample", shapes))
    if scale is None:
        raise ShapeProblem(
            "`upsample` needs a `scale` (a factor, or [h, w]) or `like` (a node whose size it takes)",
            hint="e.g. `upsample(2)` or `upsample(like=enc3)`",
        )
    sizes = (math.floor(h * scale[0]), math.floor(w * scale[1]))
    if min(sizes) < 1:
        raise ShapeProblem(
            f"`upsample`'s scale {_scale_text(scale)} makes "
            f"{layout(shapes[0])} {sizes[0]}×{sizes[1]}; the output size is floor(size * scale)",
            arg="scale",
            hint="use a larger scale",
        )
    return (c, *sizes)


def _emit_upsample(call, inputs, args):
    kwargs: dict[str, Any] = {"mode": args["mode"]}
    if args["align_corners"] is not None:
        kwargs["align_corners"] = args["align_corners"]
    if args["like"]:
        size = call(spatial_size, (inputs[1],), step="size")
        return call(F.interpolate, (inputs[0],), {"size": size, **kwargs})
    sh, sw = args["scale"]
    return call(F.interpolate, (inputs[0],), {"scale_factor": sh if sh == sw else [sh, sw], **kwargs})


def _upsample_label(args: Args) -> str:
    mode = "" if args["mode"] == "nearest" else f" {args['mode']}"
    if args["like"]:
        return f"upsample like{mode}"
    return f"upsample ×{_scale_text(args['scale'])}{mode}"


register(
    OpSpec(
        name="upsample",
        summary="resize by a factor or to another node's size (torch.nn.functional.interpolate)",
        args=(
            ScaleArg("scale", "float2", None, doc="a factor, or [h, w]; the output is floor(size * scale)"),
            ArgSpec("like", "node", None, doc=LIKE_DOC),
            ChoiceArg(
                "mode",
                "str",
                "nearest",
                doc='"nearest", "bilinear" or "bicubic"',
                choices=("nearest", "bilinear", "bicubic"),
            ),
            ArgSpec("align_corners", "bool", None, doc="as torch's, for bilinear and bicubic (default false)"),
        ),
        infer=_upsample_infer,
        emit=_emit_upsample,
        min_inputs=1,
        max_inputs=2,
        edge_kind=lambda position: "flow" if position == 0 else "size",
        label=_upsample_label,
    )
)


# ---------------------------------------------------------------------- crop


def centre_offset(extra: int) -> int:
    """``round(extra / 2)`` with ties to even, as torchvision's ``center_crop`` rounds (Python's ``round``).

    An odd difference leaves the extra row at the bottom when ``extra // 2``
    is even (1, 5, 9, ...) and at the top when it is odd (3, 7, ...).
    """
    half = extra // 2
    return half + (extra % 2) * (half % 2)


def center_crop(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The centre of ``x`` of ``like``'s height and width, read at run time (torchvision's ``center_crop``)."""
    height, width = x.shape[-2], x.shape[-1]
    to_height, to_width = like.shape[-2], like.shape[-1]
    if to_height > height or to_width > width:
        raise ValueError(
            f"crop: cannot cut {height}x{width} down to {to_height}x{to_width}, the size of its `like` input"
        )
    top, left = centre_offset(height - to_height), centre_offset(width - to_width)
    return x.narrow(-2, top, to_height).narrow(-1, left, to_width)


def _crop_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    c, h, w = _image("crop", shapes)
    th, tw = _like("crop", shapes)
    if th > h or tw > w:
        raise ShapeProblem(
            f"`crop` cannot cut {layout(shapes[0])} down to {th}×{tw}, the size of `like` {list(shapes[1])}, "
            "which is larger",
            arg="like",
            hint="crop the larger tensor to the smaller one (in a U-Net, the encoder's skip to the up-sampled "
            "path), or `pad` the smaller one",
        )
    return (c, th, tw)


register(
    OpSpec(
        name="crop",
        summary="centre crop to another node's height and width, read at run time (torchvision's center_crop)",
        args=(ArgSpec("like", "node", doc=LIKE_DOC),),
        infer=_crop_infer,
        emit=lambda call, inputs, args: call(center_crop, tuple(inputs)),
        min_inputs=2,
        max_inputs=2,
        edge_kind=lambda position: "flow" if position == 0 else "size",
        label=lambda args: "crop like",
    )
)


# ----------------------------------------------------------------------- pad


def _pad_sides(args: Args) -> tuple[int, int, int, int]:
    sides = args["pad"]
    return (sides[0],) * 4 if len(sides) == 1 else tuple(sides)


def _pad_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    c, h, w = _image("pad", shapes)
    written, mode = args["pad"], args["mode"]
    if len(written) not in (1, 4):
        raise ShapeProblem(
            f"`pad` takes one size for all four sides or four sizes [left, right, top, bottom], got {list(written)}",
            arg="pad",
            hint="the order is torch's F.pad order: the width's two sides first, then the height's",
        )
    if mode != "constant" and args["value"] != 0.0:
        raise ShapeProblem(
            f'`pad`\'s value applies to mode="constant", not "{mode}"',
            arg="value",
            hint=f'"{mode}" fills the border from the input itself',
        )
    left, right, top, bottom = _pad_sides(args)
    for side, amount, size, name in (
        ("left", left, w, "width"),
        ("right", right, w, "width"),
        ("top", top, h, "height"),
        ("bottom", bottom, h, "height"),
    ):
        if mode == "reflect" and amount >= size:
            raise ShapeProblem(
                f'`pad` mode="reflect" pads at most {size - 1} (one less than the {name}) on a side, '
                f"but the {side} pad is {amount} for {layout(shapes[0])}",
                arg="pad",
                hint='"replicate" or "constant" padding can be wider than the input',
            )
        if mode == "circular" and amount > size:
            raise ShapeProblem(
                f'`pad` mode="circular" pads at most the {name} ({size}) on a side, '
                f"but the {side} pad is {amount} for {layout(shapes[0])}",
                arg="pad",
                hint='"replicate" or "constant" padding can be wider than the input',
            )
    return (c, h + top + bottom, w + left + right)


def _emit_pad(call, inputs, args):
    kwargs: dict[str, Any] = {"mode": args["mode"]}
    if args["mode"] == "constant":
        kwargs["value"] = args["value"]
    return call(F.pad, (inputs[0], list(_pad_sides(args))), kwargs)


def _pad_label(args: Args) -> str:
    sides = args["pad"]
    amount = str(sides[0]) if len(set(sides)) == 1 else str(list(sides))
    return f"pad {amount}" + ("" if args["mode"] == "constant" else f" {args['mode']}")


register(
    OpSpec(
        name="pad",
        summary="pad the height and width (torch.nn.functional.pad)",
        args=(
            ArgSpec("pad", "ints", minimum=0, doc="all four sides, or [left, right, top, bottom]"),
            ArgSpec("value", "float", 0.0, doc='the fill of mode="constant"'),
            ChoiceArg(
                "mode",
                "str",
                "constant",
                doc='"constant", "reflect", "replicate" or "circular"',
                choices=("constant", "reflect", "replicate", "circular"),
            ),
        ),
        infer=_pad_infer,
        emit=_emit_pad,
        label=_pad_label,
    )
)


# ------------------------------------------------------- pixel (un)shuffle


def _pixel_shuffle_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    c, h, w = _image("pixel_shuffle", shapes)
    factor = args["factor"]
    if c % (factor * factor):
        raise ShapeProblem(
            f"`pixel_shuffle({factor})` needs channels divisible by {factor}² = {factor * factor}, "
            f"got {layout(shapes[0])}",
            arg="factor",
            hint=f"it turns each {factor * factor} channels into a {factor}×{factor} block of pixels",
        )
    return (c // (factor * factor), h * factor, w * factor)


def _pixel_unshuffle_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    c, h, w = _image("pixel_unshuffle", shapes)
    factor = args["factor"]
    if h % factor or w % factor:
        raise ShapeProblem(
            f"`pixel_unshuffle({factor})` needs a height and width divisible by {factor}, got {layout(shapes[0])}",
            arg="factor",
            hint=f"it turns each {factor}×{factor} block of pixels into {factor * factor} channels",
        )
    return (c * factor * factor, h // factor, w // factor)


register(
    OpSpec(
        name="pixel_shuffle",
        summary="[C·r², H, W] -> [C, H·r, W·r] (torch.nn.PixelShuffle), sub-pixel up-sampling",
        args=(ArgSpec("factor", "int", minimum=1, doc="the up-scaling factor r"),),
        infer=_pixel_shuffle_infer,
        emit=lambda call, inputs, args: call(F.pixel_shuffle, (inputs[0], args["factor"])),
        label=lambda args: f"pixel_shuffle {args['factor']}",
    )
)
register(
    OpSpec(
        name="pixel_unshuffle",
        summary="[C, H·r, W·r] -> [C·r², H, W] (torch.nn.PixelUnshuffle), the inverse of pixel_shuffle",
        args=(ArgSpec("factor", "int", minimum=1, doc="the down-scaling factor r"),),
        infer=_pixel_unshuffle_infer,
        emit=lambda call, inputs, args: call(F.pixel_unshuffle, (inputs[0], args["factor"])),
        label=lambda args: f"pixel_unshuffle {args['factor']}",
    )
)
