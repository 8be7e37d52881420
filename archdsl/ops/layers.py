"""Single-input ops: convolution, pooling, normalisation, activations, linear."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from archdsl.expr import Shape
from archdsl.ops.dims import axis, needs_rank, torch_dim
from archdsl.ops.registry import ArgSpec, ChoiceArg, OpSpec, ShapeProblem, register

Args = Mapping[str, Any]


def _image(shapes: Sequence[Shape], op: str) -> Shape:
    (shape,) = shapes
    if len(shape) != 3:
        raise ShapeProblem(
            f"`{op}` needs a [C, H, W] input, got {list(shape)}",
            hint="a flat input has lost its spatial dimensions; move this op before `flatten`",
        )
    return shape


def _window_out(size: int, k: int, stride: int, pad: int, dilation: int, ceil: bool, arg: str) -> int:
    span = dilation * (k - 1) + 1
    if size + 2 * pad < span:
        raise ShapeProblem(
            f"kernel {k}"
            + (f" (spanning {span})" if span != k else "")
            + f" is larger than its input of size {size}"
            + (f" padded by {pad}" if pad else ""),
            arg=arg,
            hint="use a smaller kernel, more padding, or downsample less before this op",
        )
    numerator = size + 2 * pad - span
    out = (-(-numerator // stride) if ceil else numerator // stride) + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _spatial_out(args: Args, h: int, w: int, ceil: bool = False) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw) = args["k"], args["stride"], args["pad"]
    dh, dw = args.get("dilation", (1, 1))
    return (
        _window_out(h, kh, sh, ph, dh, ceil, "k"),
        _window_out(w, kw, sw, pw, dw, ceil, "k"),
    )


# ------------------------------------------------------------------- conv


def _conv_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    c, h, w = _image(shapes, "conv")
    groups = args["groups"]
    if c % groups or args["out"] % groups:
        raise ShapeProblem(
            f"`groups={groups}` must divide both the input channels ({c}) and the output channels ({args['out']})",
            arg="groups",
        )
    return (args["out"], *_spatial_out(args, h, w))


def _conv_params(args: Args, shapes: Sequence[Shape]) -> int:
    c = shapes[0][0]
    kh, kw = args["k"]
    return args["out"] * (c // args["groups"]) * kh * kw + (args["out"] if args["bias"] else 0)


def _conv_macs(args: Args, shapes: Sequence[Shape], out: Shape) -> int:
    kh, kw = args["k"]
    return math.prod(out) * (shapes[0][0] // args["groups"]) * kh * kw


def uninitialised(cls: type[nn.Module], *args: Any, **kwargs: Any) -> nn.Module:
    """``cls(*args, **kwargs)`` with storage that nothing has written yet, for the caller's own init.

    Built on the meta device, then given storage on the default device (which honours
    ``with torch.device(...)`` and set_default_device): the weights are initialised once, by the
    op's rule, not first by the module's default as well (a second pass over every weight).
    """
    return cls(*args, **kwargs, device="meta").to_empty(device=torch.empty(()).device)


def _conv_build(args: Args, shapes: Sequence[Shape]) -> nn.Module:
    conv = uninitialised(
        nn.Conv2d,
        shapes[0][0],
        args["out"],
        args["k"],
        stride=args["stride"],
        padding=args["pad"],
        dilation=args["dilation"],
        groups=args["groups"],
        bias=args["bias"],
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.constant_(conv.bias, args["bias_init"])
    return conv


def _conv_label(args: Args) -> str:
    k = "×".join(map(str, args["k"]))
    stride = f"/{args['stride'][0]}" if args["stride"] != (1, 1) else ""
    groups = f" g{args['groups']}" if args["groups"] != 1 else ""
    return f"conv {k}{stride}{groups}, {args['out']}"


register(
    OpSpec(
        name="conv",
        summary="2-d convolution (torch.nn.Conv2d); input channels are inferred",
        args=(
            ArgSpec("out", "int", minimum=1, doc="output channels"),
            ArgSpec("k", "int2", minimum=1, doc="kernel size"),
            ArgSpec("stride", "int2", 1, minimum=1),
            ArgSpec("pad", "int2", 0, minimum=0, doc="zero padding on each side"),
            ArgSpec("dilation", "int2", 1, minimum=1),
            ArgSpec("groups", "int", 1, minimum=1),
            ArgSpec("bias", "bool", True),
            ArgSpec("bias_init", "float", 0.0, doc="initial value of the bias"),
        ),
        infer=_conv_infer,
        count_params=_conv_params,
        count_macs=_conv_macs,
        build=_conv_build,
        weight_shape=lambda args, shapes: (args["out"], shapes[0][0] // args["groups"], *args["k"]),
        label=_conv_label,
        fill="#dbe9f6",
        shortcut_kind="projection",
        weighted=True,
        overwritable=True,
    )
)

# -------------------------------------------------------------- pooling


def _pool_infer(op: str):
    def infer(args: Args, shapes: Sequence[Shape]) -> Shape:
        c, h, w = _image(shapes, op)
        for k, p in zip(args["k"], args["pad"], strict=False):
            if 2 * p > k:
                raise ShapeProblem(f"padding {p} must be at most half the kernel size {k}", arg="pad")
        return (c, *_spatial_out(args, h, w, ceil=args["ceil"]))

    return infer


def _pool_args(extra: tuple[ArgSpec, ...] = ()) -> tuple[ArgSpec, ...]:
    return (
        ArgSpec("k", "int2", minimum=1, doc="window size"),
        ArgSpec("stride", "int2", None, minimum=1, doc="defaults to the window size"),
        ArgSpec("pad", "int2", 0, minimum=0),
        ArgSpec("ceil", "bool", False, doc="ceil instead of floor for the output size"),
        *extra,
    )


def _pool_label(op: str):
    def label(args: Args) -> str:
        return f"{op} {'×'.join(map(str, args['k']))}/{args['stride'][0]}"

    return label


def _stride_defaults_to_window(args: dict[str, Any]) -> dict[str, Any]:
    return {**args, "stride": args["k"] if args["stride"] is None else args["stride"]}


def _emit_maxpool(call, inputs, args):
    return call(
        F.max_pool2d,
        tuple(inputs),
        {
            "kernel_size": args["k"],
            "stride": args["stride"],
            "padding": args["pad"],
            "ceil_mode": args["ceil"],
        },
    )


def _emit_avgpool(call, inputs, args):
    return call(
        F.avg_pool2d,
        tuple(inputs),
        {
            "kernel_size": args["k"],
            "stride": args["stride"],
            "padding": args["pad"],
            "ceil_mode": args["ceil"],
            "count_include_pad": args["count_pad"],
        },
    )


register(
    OpSpec(
        name="maxpool",
        summary="2-d max pooling",
        args=_pool_args(),
        infer=_pool_infer("maxpool"),
        emit=_emit_maxpool,
        finish_args=_stride_defaults_to_window,
        label=_pool_label("maxpool"),
    )
)
register(
    OpSpec(
        name="avgpool",
        summary="2-d average pooling",
        args=_pool_args((ArgSpec("count_pad", "bool", True, doc="count padded zeros in the average"),)),
        infer=_pool_infer("avgpool"),
        emit=_emit_avgpool,
        finish_args=_stride_defaults_to_window,
        label=_pool_label("avgpool"),
    )
)


def _adaptive_infer(op: str):
    def infer(args: Args, shapes: Sequence[Shape]) -> Shape:
        c, _, _ = _image(shapes, op)
        return (c, *args["size"])

    return infer


register(
    OpSpec(
        name="adaptive_avgpool",
        summary="average pooling to a fixed output size",
        args=(ArgSpec("size", "int2", minimum=1),),
        infer=_adaptive_infer("adaptive_avgpool"),
        emit=lambda call, inputs, args: call(F.adaptive_avg_pool2d, tuple(inputs), {"output_size": args["size"]}),
    )
)
register(
    OpSpec(
        name="adaptive_maxpool",
        summary="max pooling to a fixed output size",
        args=(ArgSpec("size", "int2", minimum=1),),
        infer=_adaptive_infer("adaptive_maxpool"),
        emit=lambda call, inputs, args: call(F.adaptive_max_pool2d, tuple(inputs), {"output_size": args["size"]}),
    )
)

# -------------------------------------------------------- normalisation


def _bn_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    hint = "it normalises the first dimension, the channels, of [C], [C, L] or [C, H, W]"
    return needs_rank("batchnorm", shapes[0], (1, 2, 3), hint)


def _bn_build(args: Args, shapes: Sequence[Shape]) -> nn.Module:
    cls = nn.BatchNorm2d if len(shapes[0]) == 3 else nn.BatchNorm1d
    return cls(shapes[0][0], eps=args["eps"], momentum=args["momentum"])


register(
    OpSpec(
        name="batchnorm",
        summary="batch normalisation over channels (BatchNorm2d on [C, H, W], BatchNorm1d on [C] and [C, L])",
        args=(ArgSpec("eps", "float", 1e-5, minimum=0.0), ArgSpec("momentum", "float", 0.1, minimum=0.0, maximum=1.0)),
        infer=_bn_infer,
        count_params=lambda args, shapes: 2 * shapes[0][0],
        build=_bn_build,
        fill="#eeeeee",
        overwritable=True,
    )
)

# ---------------------------------------------------------- activations


def _same(args: Args, shapes: Sequence[Shape]) -> Shape:
    return shapes[0]


def _elementwise(name: str, fn, summary: str, in_place=None) -> None:
    register(
        OpSpec(
            name=name,
            summary=summary,
            infer=_same,
            emit=lambda call, inputs, args: call(fn, tuple(inputs)),
            in_place=in_place,
        )
    )


_elementwise("relu", torch.relu, "rectified linear unit", in_place=torch.relu_)
_elementwise("sigmoid", torch.sigmoid, "logistic sigmoid")
_elementwise("tanh", torch.tanh, "hyperbolic tangent")
_elementwise("silu", F.silu, "sigmoid linear unit (swish)")
# The in-place twins are the kernels F.relu6 / F.hardswish / F.hardsigmoid call with `inplace=True`
# (torchvision's MobileNets use them so): the same numbers, forward and backward.
_elementwise("relu6", F.relu6, "ReLU capped at 6: min(max(0, x), 6) (torch.nn.ReLU6)", in_place=torch._C._nn.relu6_)
_elementwise(
    "hardswish", F.hardswish, "hard swish: x * relu6(x + 3) / 6 (torch.nn.Hardswish)", in_place=torch._C._nn.hardswish_
)
_elementwise(
    "hardsigmoid",
    F.hardsigmoid,
    "hard sigmoid: relu6(x + 3) / 6 (torch.nn.Hardsigmoid)",
    in_place=torch._C._nn.hardsigmoid_,
)
register(
    OpSpec(
        name="leaky_relu",
        summary="leaky ReLU: x, or slope * x below 0 (torch.nn.LeakyReLU)",
        args=(ArgSpec("slope", "float", 0.01, doc="the slope below 0 (negative_slope)"),),
        infer=_same,
        # no in-place twin: torch cannot differentiate an in-place leaky ReLU whose slope is negative
        emit=lambda call, inputs, args: call(F.leaky_relu, tuple(inputs), {"negative_slope": args["slope"]}),
        label=lambda args: f"leaky_relu {args['slope']:g}",
    )
)
register(
    OpSpec(
        name="gelu",
        summary='Gaussian error linear unit (torch.nn.GELU); approximate="tanh" for its tanh form',
        args=(
            ChoiceArg("approximate", "str", "none", doc='"none": the exact erf form; "tanh"', choices=("none", "tanh")),
        ),
        infer=_same,
        emit=lambda call, inputs, args: call(
            F.gelu, tuple(inputs), {"approximate": "tanh"} if args["approximate"] == "tanh" else {}
        ),
        label=lambda args: "gelu tanh" if args["approximate"] == "tanh" else "gelu",
    )
)
register(
    OpSpec(
        name="identity",
        token_ids="keep",
        summary="pass the input through unchanged",
        infer=_same,
        emit=lambda call, inputs, args: inputs[0],
    )
)


def _softmax_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    axis(args["dim"], shapes[0], "softmax")
    return shapes[0]


register(
    OpSpec(
        name="softmax",
        summary="softmax along `dim` (default: channels / features / tokens)",
        args=(ArgSpec("dim", "int", 0, doc="the dim whose values sum to 1; the batch is left out"),),
        infer=_softmax_infer,
        emit=lambda call, inputs, args: call(torch.softmax, tuple(inputs), {"dim": torch_dim(args["dim"])}),
        label=lambda args: "softmax" if args["dim"] == 0 else f"softmax dim {args['dim']}",
    )
)
register(
    OpSpec(
        name="dropout",
        summary="dropout (active in training mode only)",
        args=(ArgSpec("p", "float", 0.5, minimum=0.0, maximum=1.0),),
        infer=_same,
        build=lambda args, shapes: nn.Dropout(args["p"]),
        label=lambda args: f"dropout {args['p']:g}",
    )
)

# ------------------------------------------------------------ flat ops


def _linear_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    # Any rank, as nn.Linear: the last dim. An image [C, H, W] is accepted too, because ConvNeXt's
    # blocks apply nn.Linear to channels-last [H, W, C] tensors and shapes do not record the layout.
    return (*shapes[0][:-1], args["out"])


def _linear_macs(args: Args, shapes: Sequence[Shape], out: Shape) -> int:
    return math.prod(out) * shapes[0][-1]


def _linear_build(args: Args, shapes: Sequence[Shape]) -> nn.Module:
    layer = nn.Linear(shapes[0][-1], args["out"], bias=args["bias"])
    if layer.bias is not None and args["bias_init"] is not None:
        nn.init.constant_(layer.bias, args["bias_init"])
    return layer


register(
    OpSpec(
        name="linear",
        summary="fully connected layer (torch.nn.Linear) on the last dim; input features are inferred",
        args=(
            ArgSpec("out", "int", minimum=1, doc="output features"),
            ArgSpec("bias", "bool", True),
            ArgSpec("bias_init", "float", None, doc="initial value of the bias (default: PyTorch's)"),
        ),
        infer=_linear_infer,
        count_params=lambda args, shapes: args["out"] * shapes[0][-1] + (args["out"] if args["bias"] else 0),
        count_macs=_linear_macs,
        build=_linear_build,
        weight_shape=lambda args, shapes: (args["out"], shapes[0][-1]),
        label=lambda args: f"linear {args['out']}",
        fill="#dbe9f6",
        weighted=True,
        overwritable=True,
    )
)

# ---------------------------------------------------------------- input


register(
    OpSpec(
        name="input",
        summary="a network input of a declared shape (batch dimension excluded)",
        infer=lambda args, shapes: args["shape"],
        min_inputs=0,
        max_inputs=0,
        internal=True,
        fill="#fff2cc",
    )
)
