"""Channel shuffle (ShuffleNet): interleave the channels of ``groups`` groups.

``channel_shuffle(g)`` on ``[C, ...]`` views the channels as ``[g, C/g]``,
transposes that to ``[C/g, g]`` and flattens it back, so that the next
grouped or split layer sees channels from every group. It is
:func:`torch.nn.functional.channel_shuffle`, which computes exactly
``torchvision.models.shufflenetv2.channel_shuffle`` (a permutation: the same
values, bit for bit, and the same gradients). Unlike torchvision's function it
is one aten op, which ``torch.compile``, ``torch.export`` (decomposed to
view, permute, clone, view), ONNX (Reshape, Transpose, Reshape) and
TorchScript all take, at any batch and spatial size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch.nn import functional as F

from archdsl.expr import Shape
from archdsl.ops.dims import layout
from archdsl.ops.registry import ArgSpec, OpSpec, ShapeProblem, register

Args = Mapping[str, Any]


def _channel_shuffle_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    (shape,) = shapes
    if len(shape) < 2:
        raise ShapeProblem(
            f"`channel_shuffle` takes channels followed by at least one more dim ([C, H, W], [C, L], ...), "
            f"got {layout(shape)}",
            hint="`unsqueeze(-1)` makes a flat [C] a [C, 1]",
        )
    channels, groups = shape[0], args["groups"]
    if channels % groups:
        raise ShapeProblem(
            f"`channel_shuffle`'s groups={groups} does not divide the {channels} channels of {layout(shape)}",
            arg="groups",
            hint="the channels are cut into `groups` groups of equal size",
        )
    return shape


register(
    OpSpec(
        name="channel_shuffle",
        summary="interleave the channels of `groups` equal groups, as ShuffleNet does (F.channel_shuffle)",
        args=(ArgSpec("groups", "int", minimum=1, doc="how many groups; divides the channels"),),
        infer=_channel_shuffle_infer,
        emit=lambda call, inputs, args: call(F.channel_shuffle, (inputs[0], args["groups"])),
        label=lambda args: f"channel_shuffle {args['groups']}",
    )
)
