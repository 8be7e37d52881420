"""Dimensions and layouts as ops see them: the batch dimension is never written.

A shape in archdsl leaves out the batch: an image is ``[C, H, W]``, a token
sequence ``[T, D]``, a feature vector ``[F]``. A ``dim`` argument counts in
that shape: ``0`` is the first dimension after the batch (channels, or
tokens), ``-1`` the last. :func:`axis` checks one against a shape and
:func:`torch_dim` turns it into the dimension of the batched tensor the
compiled module sees.
"""

from __future__ import annotations

from archdsl.expr import Shape
from archdsl.ops.registry import ShapeProblem

LAYOUTS = {1: "a flat [F]", 2: "a sequence [T, D]", 3: "an image [C, H, W]"}


def layout(shape: Shape) -> str:
    """How an error names a shape's layout: ``an image [C, H, W] input [64, 56, 56]``."""
    name = LAYOUTS.get(len(shape), f"a rank-{len(shape)}")
    return f"{name} input {list(shape)}"


def needs_rank(op: str, shape: Shape, ranks: tuple[int, ...], hint: str | None = None) -> Shape:
    """``shape`` when its rank is one of ``ranks``; otherwise a shape error naming the layouts ``op`` takes."""
    if len(shape) in ranks:
        return shape
    wanted = " or ".join(LAYOUTS.get(r, f"a rank-{r}") for r in ranks)
    raise ShapeProblem(f"`{op}` takes {wanted} input, got {layout(shape)}", hint=hint)


def axis(dim: int, shape: Shape, op: str, arg: str = "dim") -> int:
    """``dim`` (negative counts from the end) as an index into ``shape``; out of range is a shape error."""
    rank = len(shape)
    index = dim + rank if dim < 0 else dim
    if not 0 <= index < rank:
        raise ShapeProblem(
            f"`{op}`'s {arg}={dim} is outside {layout(shape)}, whose dims are {-rank} to {rank - 1}",
            arg=arg,
            hint="dims leave out the batch: 0 is the first dimension after it, -1 the last",
        )
    return index


def torch_dim(dim: int) -> int:
    """The dimension of the batched tensor for a batch-free ``dim``: ``0`` -> ``1``; from the end (``-1``), the same."""
    return dim + 1 if dim >= 0 else dim
