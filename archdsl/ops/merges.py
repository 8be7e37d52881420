"""Ops with several inputs (sum, concat, gates) and the shortcut ops a skip inserts."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.nn import functional as F

from archdsl.expr import Shape
from archdsl.ops.dims import axis, torch_dim
from archdsl.ops.registry import ArgSpec, OpSpec, ShapeProblem, register

Args = Mapping[str, Any]


def _all_equal(op: str, shapes: Sequence[Shape]) -> Shape:
    first = shapes[0]
    for index, shape in enumerate(shapes[1:], start=1):
        if shape != first:
            raise ShapeProblem(
                f"`{op}` needs inputs of one shape, "
                f"but input 1 is {list(first)} and input {index + 1} is {list(shape)}",
                hint=f"make the shapes agree before the `{op}` (e.g. a 1x1 `conv`), or use a `skip` with a policy",
                input_index=index,
            )
    return first


def _emit_add(call, inputs, args):
    node = inputs[0]
    for other in inputs[1:]:
        node = call(operator.add, (node, other))
    return node


register(
    OpSpec(
        name="add",
        elementwise=True,
        summary="elementwise sum of its inputs (a residual merge)",
        min_inputs=2,
        max_inputs=None,
        inputs_in_args=True,
        infer=lambda args, shapes: _all_equal("add", shapes),
        emit=_emit_add,
        edge_kind=lambda position: "flow" if position == 0 else "skip",
        fill="#f9d6d5",
        merge_note="skip sums",
        overwritable=True,
    )
)


def _concat_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise ShapeProblem(f"`concat` cannot join inputs of different ranks: {[list(s) for s in shapes]}")
    first = shapes[0]
    d = axis(args["dim"], first, "concat")
    for index, shape in enumerate(shapes[1:], start=1):
        if shape[:d] + shape[d + 1 :] == first[:d] + first[d + 1 :]:
            continue
        if d == 0 and len(first) == 3:
            raise ShapeProblem(
                f"`concat` joins channels, so spatial sizes must agree: input 1 is {list(first)}"
                f" but input {index + 1} is {list(shape)}",
                hint="pool or stride the larger input so the spatial sizes match",
                input_index=index,
            )
        raise ShapeProblem(
            f"`concat` joins along dim {args['dim']}, so the other dims must agree: input 1 is {list(first)}"
            f" but input {index + 1} is {list(shape)}",
            hint="make the other dims agree before the `concat`, or join along another dim with `dim=`",
            input_index=index,
        )
    return (*first[:d], sum(s[d] for s in shapes), *first[d + 1 :])


register(
    OpSpec(
        name="concat",
        token_ids="keep",
        summary="concatenate inputs in the order given, along channels or the `dim` given",
        args=(ArgSpec("dim", "int", 0, doc="the dim to join along (0: channels, or tokens); the batch is left out"),),
        min_inputs=1,
        max_inputs=None,
        inputs_in_args=True,
        infer=_concat_infer,
        emit=lambda call, inputs, args: call(torch.cat, (list(inputs),), {"dim": torch_dim(args["dim"])}),
        label=lambda args: "concat" if args["dim"] == 0 else f"concat dim {args['dim']}",
        edge_kind=lambda position: "concat",
        fill="#d5e5f5",
        merge_note="concats",
        overwritable=True,
    )
)


def _broadcast(op: str, shapes: Sequence[Shape]) -> Shape:
    a, b = shapes
    if len(a) != len(b):
        raise ShapeProblem(f"`{op}` needs inputs of the same rank, got {list(a)} and {list(b)}", input_index=1)
    out = []
    for x, y in zip(a, b, strict=False):
        if x != y and 1 not in (x, y):
            raise ShapeProblem(
                f"`{op}` cannot broadcast {list(a)} with {list(b)}",
                hint="sizes must be equal or 1 in each dimension",
                input_index=1,
            )
        out.append(max(x, y))
    return tuple(out)


register(
    OpSpec(
        name="mul",
        elementwise=True,
        summary="elementwise product, broadcasting sizes of 1 (squeeze-and-excitation scaling)",
        min_inputs=2,
        max_inputs=2,
        inputs_in_args=True,
        infer=lambda args, shapes: _broadcast("mul", shapes),
        emit=lambda call, inputs, args: call(operator.mul, tuple(inputs)),
        edge_kind=lambda position: "flow" if position == 0 else "gate",
        fill="#d9f0d3",
        merge_note="products",
    )
)


def highway_gate(t: torch.Tensor, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Highway merge ``t * h + (1 - t) * x`` (Srivastava et al. 2015)."""
    return x + t * (h - x)


register(
    OpSpec(
        name="gate",
        elementwise=True,
        summary="highway merge gate(t, h, x) = t * h + (1 - t) * x",
        min_inputs=3,
        max_inputs=3,
        inputs_in_args=True,
        infer=lambda args, shapes: _all_equal("gate", shapes),
        emit=lambda call, inputs, args: call(highway_gate, tuple(inputs)),
        edge_kind=lambda position: ("gate", "flow", "skip")[position] if position < 3 else "flow",
        fill="#d9f0d3",
        merge_note="gates",
    )
)


def zero_pad_shortcut(x: torch.Tensor, stride: int, pad_before: int, pad_after: int) -> torch.Tensor:
    """ResNet option A: subsample by ``stride`` and zero-pad the channels."""
    return F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, pad_before, pad_after))


def _zeropad_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    c, h, w = shapes[0]
    s = args["stride"]
    return (c + args["pad_before"] + args["pad_after"], -(-h // s), -(-w // s))


register(
    OpSpec(
        name="zeropad_shortcut",
        summary="parameter-free shortcut: subsample, then zero-pad channels (ResNet option A)",
        args=(
            ArgSpec("stride", "int", 1, minimum=1),
            ArgSpec("pad_before", "int", 0, minimum=0),
            ArgSpec("pad_after", "int", 0, minimum=0),
        ),
        infer=_zeropad_infer,
        emit=lambda call, inputs, args: call(
            zero_pad_shortcut,
            tuple(inputs),
            {"stride": args["stride"], "pad_before": args["pad_before"], "pad_after": args["pad_after"]},
        ),
        internal=True,
        label=lambda args: "zero-pad shortcut",
        shortcut_kind="zero-pad",
    )
)
