"""Layout ops for tensors of any rank: reshape, flatten, permute, transpose, select, squeeze,
unsqueeze, chunk, split, and matmul between activations.

Every ``dim`` counts in the batch-free shape (:mod:`archdsl.ops.dims`); the
compiled module keeps the batch first and never moves it. None of these ops
has parameters; only ``matmul`` counts multiply-accumulates.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from archdsl import limits
from archdsl.expr import Shape
from archdsl.ops.dims import axis, layout, torch_dim
from archdsl.ops.registry import ArgSpec, OpSpec, ShapeProblem, register

Args = Mapping[str, Any]

DIMS_HINT = "dims leave out the batch: 0 is the first dimension after it, -1 the last"


def _one(shapes: Sequence[Shape]) -> Shape:
    (shape,) = shapes
    return shape


def _dims_note(dim: int) -> str:
    """How a label names a dim other than the default 0: ``", dim -1"``."""
    return f", dim {dim}" if dim else ""


def _within_rank(op: str, rank: int, arg: str | None = None) -> None:
    most = limits.current().max_rank
    if rank > most:
        raise ShapeProblem(
            f"`{op}` would make a tensor of {rank} dims (the batch left out), more than the limit of {most}",
            arg=arg,
            hint="raise the limit with archdsl.Limits(max_rank=...)",
        )


def _needs_two_dims(op: str, shape: Shape, why: str) -> None:
    if len(shape) < 2:
        raise ShapeProblem(
            f"`{op}` takes an input of 2 or more dims (a sequence [T, D], an image [C, H, W], ...), "
            f"got {layout(shape)}",
            hint=why,
        )


# ------------------------------------------------------------- reshape


def resolve_shape(op: str, target: Sequence[int], shape: Shape) -> Shape:
    """``target`` with its ``-1`` (if any) worked out so that it holds as many values as ``shape``."""
    target = tuple(target)
    if not target:
        raise ShapeProblem(f"`{op}` needs at least one size, got []", arg="shape", hint=DIMS_HINT)
    _within_rank(op, len(target), "shape")
    inferred = [i for i, size in enumerate(target) if size == -1]
    if len(inferred) > 1:
        raise ShapeProblem(
            f"`{op}`'s shape {list(target)} has {len(inferred)} sizes of -1, but only one may be inferred",
            arg="shape",
            hint="write all sizes but one",
        )
    bad = next((size for size in target if size < 1 and size != -1), None)
    if bad is not None:
        raise ShapeProblem(
            f"`{op}`'s shape {list(target)} has the size {bad}; sizes are positive, or -1 for the one inferred",
            arg="shape",
        )
    values = math.prod(shape)
    known = math.prod(size for size in target if size != -1)
    if inferred:
        if values % known:
            raise ShapeProblem(
                f"`{op}` cannot fit {layout(shape)}, {values:,} values, into {list(target)}: "
                f"{values:,} is not a multiple of {known:,}",
                arg="shape",
                hint=f"the sizes other than -1 must multiply to a divisor of {values:,}; {DIMS_HINT}",
            )
        return tuple(values // known if size == -1 else size for size in target)
    if known != values:
        raise ShapeProblem(
            f"`{op}` cannot turn {layout(shape)}, {values:,} values, into {list(target)}, {known:,} values",
            arg="shape",
            hint=f"the sizes must multiply to {values:,}, or one of them may be -1 to infer it; {DIMS_HINT}",
        )
    return target


def _reshape_infer(op: str):
    def infer(args: Args, shapes: Sequence[Shape]) -> Shape:
        return resolve_shape(op, args["shape"], _one(shapes))

    return infer


def batch_size(x: torch.Tensor) -> int:
    """The batch size of ``x`` (its first dim), as the generated code reads it."""
    return x.shape[0]


def _emit_reshape(call, inputs, args):
    target = tuple(args["shape"])
    if -1 not in target:
        return call(torch.reshape, (inputs[0], (-1, *target)))
    # A reshape infers one -1 only: the written one stays (the size it stands for may differ at another
    # input size), and the batch is read from the tensor. One reshape: a view wherever torch can make one.
    batch = call(batch_size, (inputs[0],), step="batch")
    return call(torch.reshape, (inputs[0], (batch, *target)))


RESHAPE = register(
    OpSpec(
        name="reshape",
        token_ids="keep",
        summary="give the values a new shape (batch left out), one size of -1 inferred (torch.reshape)",
        args=(ArgSpec("shape", "ints", minimum=-1, doc="the new shape without the batch; one size may be -1"),),
        infer=_reshape_infer("reshape"),
        emit=_emit_reshape,
        label=lambda args: f"reshape {list(args['shape'])}",
    )
)
register(
    dataclasses.replace(
        RESHAPE,
        name="view",
        token_ids="keep",
        summary="another name for `reshape` (copies only where torch.reshape would)",
        infer=_reshape_infer("view"),
        label=lambda args: f"view {list(args['shape'])}",
    )
)


# ------------------------------------------------------------- flatten


def _flatten_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    shape = _one(shapes)
    start = axis(args["start"], shape, "flatten", "start")
    end = axis(args["end"], shape, "flatten", "end")
    if start > end:
        raise ShapeProblem(
            f"`flatten`'s start={args['start']} comes after its end={args['end']} in {layout(shape)}",
            arg="end",
            hint="`start` is the first dim to merge and `end` the last",
        )
    return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])


def _emit_flatten(call, inputs, args):
    kwargs = {"start_dim": torch_dim(args["start"])}
    if args["end"] != -1:
        kwargs["end_dim"] = torch_dim(args["end"])
    return call(torch.flatten, tuple(inputs), kwargs)


def _flatten_label(args: Args) -> str:
    if (args["start"], args["end"]) == (0, -1):
        return "flatten"
    return f"flatten {args['start']}..{args['end']}"


register(
    OpSpec(
        name="flatten",
        token_ids="keep",
        summary="merge dims start to end (default: everything after the batch) into one (torch.flatten)",
        args=(
            ArgSpec("start", "int", 0, doc="the first dim to merge"),
            ArgSpec("end", "int", -1, doc="the last dim to merge"),
        ),
        infer=_flatten_infer,
        emit=_emit_flatten,
        label=_flatten_label,
    )
)


# ------------------------------------------------------ permute, transpose


def _permute_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    shape = _one(shapes)
    dims = args["dims"]
    rank = len(shape)
    if len(dims) != rank:
        raise ShapeProblem(
            f"`permute` needs each of the {rank} dims of {layout(shape)} once, got {len(dims)}: {list(dims)}",
            arg="dims",
            hint=f"list the dims 0 to {rank - 1} in their new order; the batch stays first and is not written",
        )
    order = [axis(dim, shape, "permute", "dims") for dim in dims]
    for position, index in enumerate(order):
        if index in order[:position]:
            raise ShapeProblem(
                f"`permute`'s dims {list(dims)} name dim {index} of {layout(shape)} twice",
                arg="dims",
                hint=f"list the dims 0 to {rank - 1} once each, in their new order",
            )
    return tuple(shape[index] for index in order)


def _emit_permute(call, inputs, args):
    rank = len(args["dims"])
    return call(torch.permute, (inputs[0], (0, *(torch_dim(dim % rank) for dim in args["dims"]))))


register(
    OpSpec(
        name="permute",
        token_ids="keep",
        summary="reorder the dims (the batch stays first) (torch.permute)",
        args=(ArgSpec("dims", "ints", doc="every dim once, in its new order"),),
        infer=_permute_infer,
        emit=_emit_permute,
        label=lambda args: f"permute {list(args['dims'])}",
    )
)


def _transpose_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    shape = _one(shapes)
    a = axis(args["dim0"], shape, "transpose", "dim0")
    b = axis(args["dim1"], shape, "transpose", "dim1")
    swapped = list(shape)
    swapped[a], swapped[b] = shape[b], shape[a]
    return tuple(swapped)


register(
    OpSpec(
        name="transpose",
        token_ids="keep",
        summary="swap two dims (torch.transpose)",
        args=(ArgSpec("dim0", "int"), ArgSpec("dim1", "int")),
        infer=_transpose_infer,
        emit=lambda call, inputs, args: call(
            torch.transpose, (inputs[0], torch_dim(args["dim0"]), torch_dim(args["dim1"]))
        ),
        label=lambda args: f"transpose {args['dim0']}, {args['dim1']}",
    )
)


# ------------------------------------------------- select, squeeze, unsqueeze


def _select_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    shape = _one(shapes)
    _needs_two_dims("select", shape, "it drops the dim it selects from, and a shape keeps at least one dim")
    index = axis(args["dim"], shape, "select")
    size, at = shape[index], args["index"]
    if not -size <= at < size:
        raise ShapeProblem(
            f"`select`'s index={at} is outside dim {args['dim']} of {layout(shape)}, "
            f"of size {size}: it takes {-size} to {size - 1}",
            arg="index",
            hint="a negative index counts from the end: -1 is the last",
        )
    return (*shape[:index], *shape[index + 1 :])


register(
    OpSpec(
        name="select",
        token_ids="keep",
        summary="take one index of a dim and drop that dim, e.g. a sequence's first token (torch.select)",
        args=(
            ArgSpec("index", "int", doc="the index to take; negative counts from the end"),
            ArgSpec("dim", "int", 0, doc="the dim to take it from"),
        ),
        infer=_select_infer,
        emit=lambda call, inputs, args: call(torch.select, (inputs[0], torch_dim(args["dim"]), args["index"])),
        label=lambda args: f"select {args['index']}{_dims_note(args['dim'])}",
    )
)


def _unsqueeze_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    shape = _one(shapes)
    rank, dim = len(shape) + 1, args["dim"]
    _within_rank("unsqueeze", rank)
    index = dim + rank if dim < 0 else dim
    if not 0 <= index < rank:
        raise ShapeProblem(
            f"`unsqueeze`'s dim={dim} is outside the {rank} dims of its output from {layout(shape)}, "
            f"which are {-rank} to {rank - 1}",
            arg="dim",
            hint=DIMS_HINT,
        )
    return (*shape[:index], 1, *shape[index:])


register(
    OpSpec(
        name="unsqueeze",
        token_ids="keep",
        summary="insert a dim of size 1 at `dim` of the output (torch.unsqueeze)",
        args=(ArgSpec("dim", "int", doc="where the new dim stands in the output"),),
        infer=_unsqueeze_infer,
        emit=lambda call, inputs, args: call(torch.unsqueeze, (inputs[0], torch_dim(args["dim"]))),
        label=lambda args: f"unsqueeze {args['dim']}",
    )
)


def _squeeze_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    shape = _one(shapes)
    _needs_two_dims("squeeze", shape, "it removes a dim, and a shape keeps at least one")
    index = axis(args["dim"], shape, "squeeze")
    if shape[index] != 1:
        raise ShapeProblem(
            f"`squeeze` removes a dim of size 1, but dim {args['dim']} of {layout(shape)} has size {shape[index]}",
            arg="dim",
            hint="`select` takes one index of a longer dim; `reshape` or `flatten` merge dims",
        )
    return (*shape[:index], *shape[index + 1 :])


register(
    OpSpec(
        name="squeeze",
        token_ids="keep",
        summary="remove a dim of size 1 (torch.squeeze)",
        args=(ArgSpec("dim", "int", doc="the dim to remove; its size must be 1"),),
        infer=_squeeze_infer,
        emit=lambda call, inputs, args: call(torch.squeeze, (inputs[0], torch_dim(args["dim"]))),
        label=lambda args: f"squeeze {args['dim']}",
    )
)


# ------------------------------------------------------------ chunk, split


def _whole(pieces):
    """The shape drawn on the box of an op with ``pieces``: its input's, once the pieces are checked."""

    def infer(args: Args, shapes: Sequence[Shape]) -> Shape:
        pieces(args, shapes)
        return _one(shapes)

    return infer


def _chunk_pieces(args: Args, shapes: Sequence[Shape]) -> tuple[Shape, ...]:
    """torch.chunk's pieces: ``ceil(size / n)`` each, the last one shorter; fewer than n when they run out."""
    shape = _one(shapes)
    index = axis(args["dim"], shape, "chunk")
    size = shape[index]
    each = -(-size // args["n"])
    count = -(-size // each)
    sizes = [each] * (count - 1) + [size - each * (count - 1)]
    return tuple((*shape[:index], piece, *shape[index + 1 :]) for piece in sizes)


def _split_pieces(args: Args, shapes: Sequence[Shape]) -> tuple[Shape, ...]:
    """torch.split's pieces, of the sizes given, which must add up to the dim."""
    shape = _one(shapes)
    index = axis(args["dim"], shape, "split")
    sizes, total = args["sizes"], sum(args["sizes"])
    if total != shape[index]:
        raise ShapeProblem(
            f"`split`'s sizes {list(sizes)} add up to {total}, but dim {args['dim']} of {layout(shape)} "
            f"has size {shape[index]}",
            arg="sizes",
            hint="the sizes must add up to the size of the dim; `chunk(n)` cuts it into n equal pieces",
        )
    return tuple((*shape[:index], piece, *shape[index + 1 :]) for piece in sizes)


register(
    OpSpec(
        name="chunk",
        token_ids="keep",
        summary="cut a dim into n pieces of ceil(size / n), the last shorter, fewer if they run out (torch.chunk)",
        args=(ArgSpec("n", "int", minimum=1, doc="how many pieces"), ArgSpec("dim", "int", 0)),
        infer=_whole(_chunk_pieces),
        pieces=_chunk_pieces,
        emit=lambda call, inputs, args: call(torch.chunk, (inputs[0], args["n"]), {"dim": torch_dim(args["dim"])}),
        label=lambda args: f"chunk {args['n']}{_dims_note(args['dim'])}",
    )
)
register(
    OpSpec(
        name="split",
        token_ids="keep",
        summary="cut a dim into pieces of the sizes given, which add up to it (torch.split)",
        args=(ArgSpec("sizes", "ints", minimum=1, doc="the size of each piece"), ArgSpec("dim", "int", 0)),
        infer=_whole(_split_pieces),
        pieces=_split_pieces,
        emit=lambda call, inputs, args: call(
            torch.split, (inputs[0], list(args["sizes"])), {"dim": torch_dim(args["dim"])}
        ),
        label=lambda args: f"split {list(args['sizes'])}{_dims_note(args['dim'])}",
    )
)


# ---------------------------------------------------------------- matmul


def _matmul_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    for position, shape in enumerate(shapes):
        if len(shape) < 2:
            raise ShapeProblem(
                f"`matmul` multiplies the matrices in the last two dims of its inputs, "
                f"but input {position + 1} is {layout(shape)}, of one dim",
                hint="`unsqueeze` a flat [F] to [1, F] or [F, 1]",
                input_index=position,
            )
    a, b = shapes
    if len(a) != len(b):
        raise ShapeProblem(
            f"`matmul` needs inputs of the same rank, but input 1 is {layout(a)} and input 2 {layout(b)}",
            hint="`unsqueeze` the one with fewer dims so that the dims before the matrices line up",
            input_index=1,
        )
    if a[-1] != b[-2]:
        raise ShapeProblem(
            f"`matmul` cannot multiply {list(a)} by {list(b)}: input 1 has {a[-1]} columns (its last dim) "
            f"but input 2 has {b[-2]} rows (its next-to-last dim)",
            hint="`transpose(-2, -1)` turns rows into columns",
            input_index=1,
        )
    leading = []
    for x, y in zip(a[:-2], b[:-2], strict=True):
        if x != y and 1 not in (x, y):
            raise ShapeProblem(
                f"`matmul` cannot broadcast the dims before the matrices, {list(a[:-2])} of input 1 "
                f"and {list(b[:-2])} of input 2",
                hint="sizes must be equal or 1 in each dim",
                input_index=1,
            )
        leading.append(max(x, y))
    return (*leading, a[-2], b[-1])


register(
    OpSpec(
        name="matmul",
        summary="matrix product of two activations over their last two dims, broadcasting the dims before "
        "(torch.matmul)",
        min_inputs=2,
        max_inputs=2,
        inputs_in_args=True,
        infer=_matmul_infer,
        count_macs=lambda args, shapes, out: math.prod(out) * shapes[0][-1],
        emit=lambda call, inputs, args: call(torch.matmul, tuple(inputs)),
    )
)
