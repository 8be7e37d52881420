"""Stochastic depth (``drop_path``): drops a residual branch per sample, in training only.

:class:`DropPath` computes what ``torchvision.ops.StochasticDepth`` computes,
drawing its random numbers with the same calls in the same order, so that
under one ``torch.manual_seed`` both drop the same samples. archdsl does not
import torchvision; the tests compare the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from archdsl.expr import Shape
from archdsl.ops.registry import ArgSpec, ChoiceArg, OpSpec, register

Args = Mapping[str, Any]

MODES = ("row", "batch")


class DropPath(nn.Module):
    """Stochastic depth (torchvision.ops.StochasticDepth): zero the input with probability ``p``, scale the rest.

    ``mode="row"`` draws one Bernoulli(1 - p) per sample, ``"batch"`` one for
    the whole batch; survivors are divided by 1 - p (when it is not 0). The
    identity in eval mode and when ``p == 0``.
    """

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
        if mode not in MODES:
            raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
        self.p = p
        self.mode = mode

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return input
        survival = 1.0 - self.p
        if self.mode == "row":
            size = [input.shape[0]] + [1] * (input.ndim - 1)
        else:
            size = [1] * input.ndim
        noise = torch.empty(size, dtype=input.dtype, device=input.device)
        noise = noise.bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return input * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


def _label(args: Args) -> str:
    return f"drop_path {args['p']:g}" + (" batch" if args["mode"] == "batch" else "")


def _same(args: Args, shapes: Sequence[Shape]) -> Shape:
    return shapes[0]


register(
    OpSpec(
        name="drop_path",
        summary="stochastic depth (torchvision.ops.StochasticDepth): drops whole samples, in training only",
        args=(
            ArgSpec("p", "float", minimum=0.0, maximum=1.0, doc="probability of dropping"),
            ChoiceArg(
                "mode", "str", "row", doc='"row": one draw per sample; "batch": one for the batch', choices=MODES
            ),
        ),
        infer=_same,
        build=lambda args, shapes: DropPath(args["p"], args["mode"]),
        label=_label,
    )
)
