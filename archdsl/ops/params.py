"""Learned tensors that are no layer's weight (``param`` statements), and the pieces of multi-output ops.

A ``param`` node has no inputs; the compiler registers an ``nn.Parameter``
of exactly the declared shape at the node's path and reads it with a
``get_attr`` node. A ``piece`` node takes one element of a multi-output op's
tuple (``qkv.1`` after ``qkv: chunk(3, dim=-1)``); its shape comes from the
producer's ``pieces`` rule (see :class:`archdsl.shapes.ShapeInference`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from archdsl.ops.registry import OpSpec, ShapeProblem, register

Args = Mapping[str, Any]


def make_parameter(args: Args, shapes: Any = ()) -> nn.Parameter:
    """The declared tensor, initialised as its ``init`` says (on the default device)."""
    kind, values = args["init"][0], dict(args["init"][1])
    tensor = torch.empty(args["shape"])
    with torch.no_grad():
        if kind == "zeros":
            tensor.zero_()
        elif kind == "ones":
            tensor.fill_(1.0)
        elif kind == "constant":
            tensor.fill_(values["value"])
        elif kind == "normal":
            tensor.normal_(values["mean"], values["std"])
        elif kind == "trunc_normal":
            nn.init.trunc_normal_(tensor, values["mean"], values["std"], values["a"], values["b"])
        elif kind == "uniform":
            tensor.uniform_(values["low"], values["high"])
        else:  # pragma: no cover - declarations.INITS and this list agree
            raise ValueError(kind)
    return nn.Parameter(tensor)


register(
    OpSpec(
        name="param",
        summary="a learned tensor of a declared shape (`param name: [dims], init=...`)",
        infer=lambda args, shapes: args["shape"],
        min_inputs=0,
        max_inputs=0,
        internal=True,
        learned=True,
        build=make_parameter,
        count_params=lambda args, shapes: math.prod(args["shape"]),
        label=lambda args: "param",
        fill="#fde9c9",
    )
)


def _not_inferred(args: Args, shapes: Any) -> Any:  # pragma: no cover - shape inference reads the producer
    raise ShapeProblem("a piece's shape comes from the op it is a piece of")


register(
    OpSpec(
        name="piece",
        summary="one output of an op with several (`qkv.1` after `qkv: chunk(3)`)",
        infer=_not_inferred,
        internal=True,
        emit=lambda call, inputs, args: call(operator.getitem, (inputs[0], args["index"])),
        label=lambda args: f"[{args['index']}]",
    )
)


def param_view(shape: tuple[int, ...], like: tuple[int, ...]) -> tuple[int, ...]:
    """How a learned tensor of ``shape`` lines up with an activation of batch-free shape ``like``.

    As PyTorch broadcasts, from the right: a tensor of fewer dims gets leading
    1s; one of exactly one more dim has the batch's place first, which must be
    1 (``[1, 197, 768]`` beside ``[197, 768]``). Raises :class:`ShapeProblem`.
    """
    if len(shape) == len(like) + 1:
        if shape[0] != 1:
            raise ShapeProblem(
                f"the parameter's shape {list(shape)} has one dim more than the activation {list(like)}, "
                f"so its first dim stands for the batch and must be 1",
                hint=f"declare it as {[1, *shape[1:]]} or {list(shape[1:])}",
            )
        return shape[1:]
    if len(shape) > len(like):
        raise ShapeProblem(
            f"the parameter's shape {list(shape)} has more dims than the activation {list(like)} and its batch",
            hint="a parameter lines up with an activation from the right, as PyTorch broadcasts",
        )
    return (1,) * (len(like) - len(shape)) + shape


def stretch(view: tuple[int, ...], like: tuple[int, ...], declared: tuple[int, ...]) -> tuple[int, ...]:
    """``view`` (of a parameter ``declared``) with its 1s stretched to ``like``'s sizes, or a problem."""
    for mine, theirs in zip(view, like, strict=True):
        if mine not in (1, theirs):
            raise ShapeProblem(
                f"the parameter {list(declared)} does not broadcast against the activation {list(like)}",
                hint="sizes must be equal or 1 in each dim",
            )
    return like


def batched(param: torch.Tensor, like: torch.Tensor, view: list[int]) -> torch.Tensor:
    """``param`` as a batch of the activation ``like``'s size (a view, as ``class_token.expand(n, -1, -1)``).

    Written so that TorchScript compiles it too (a list, no star-arguments).
    """
    return param.reshape(view).expand([like.shape[0]] + view)
