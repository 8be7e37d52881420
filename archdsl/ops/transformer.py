"""The ops transformers and ConvNeXt are made of: layer and group norms, attention, embeddings.

Each compiles to the module PyTorch or torchvision uses, so that their
``state_dict``s load into archdsl models with ``strict=True``: ``attention``
*is* an ``nn.MultiheadAttention`` (keys ``in_proj_weight``, ``in_proj_bias``,
``out_proj.weight``, ``out_proj.bias``), ``layernorm2d`` computes what
torchvision's ConvNeXt ``LayerNorm2d`` computes. archdsl does not import
torchvision; the tests compare the two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from archdsl import limits
from archdsl.expr import Shape
from archdsl.ops.dims import layout, needs_rank
from archdsl.ops.registry import ArgSpec, OpSpec, ShapeProblem, register

Args = Mapping[str, Any]

NORM_FILL = "#eeeeee"  # batchnorm's
WEIGHT_FILL = "#dbe9f6"  # conv's and linear's


def _same(args: Args, shapes: Sequence[Shape]) -> Shape:
    return shapes[0]


def _norm_args(eps: float) -> tuple[ArgSpec, ...]:
    return (
        ArgSpec("eps", "float", eps, minimum=0.0, doc="added to the variance"),
        ArgSpec("affine", "bool", True, doc="learn a weight (and a bias)"),
        ArgSpec("bias", "bool", True, doc="learn a bias (when affine)"),
    )


def _layernorm_params(args: Args, shapes: Sequence[Shape], channels: int) -> int:
    if not args["affine"]:
        return 0
    return channels * (2 if args["bias"] else 1)


def _layernorm_label(op: str):
    def label(args: Args) -> str:
        return op if args["eps"] == 1e-5 else f"{op} eps {args['eps']:g}"

    return label


# ------------------------------------------------------------ layernorm


register(
    OpSpec(
        name="layernorm",
        summary="layer normalisation over the last dim (torch.nn.LayerNorm), of any rank: [T, D] normalises D",
        args=_norm_args(1e-5),
        infer=_same,
        count_params=lambda args, shapes: _layernorm_params(args, shapes, shapes[0][-1]),
        build=lambda args, shapes: nn.LayerNorm(
            shapes[0][-1], eps=args["eps"], elementwise_affine=args["affine"], bias=args["bias"]
        ),
        label=_layernorm_label("layernorm"),
        fill=NORM_FILL,
        overwritable=True,  # its backward reads the input and the statistics, not the output
    )
)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of ``[N, C, H, W]`` (torchvision's ConvNeXt ``LayerNorm2d``, the same code).

    Permutes to channels-last, normalises the last dim, permutes back; its
    parameters are nn.LayerNorm's (``weight``, ``bias``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        x = x.permute(0, 3, 1, 2)
        return x


def _layernorm2d_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    hint = "on a sequence [T, D] or a channels-last tensor, `layernorm` normalises the last dim"
    return needs_rank("layernorm2d", shapes[0], (3,), hint)


register(
    OpSpec(
        name="layernorm2d",
        summary="layer normalisation over the channels of an image [C, H, W] (torchvision's ConvNeXt LayerNorm2d)",
        args=_norm_args(1e-5),
        infer=_layernorm2d_infer,
        count_params=lambda args, shapes: _layernorm_params(args, shapes, shapes[0][0]),
        build=lambda args, shapes: LayerNorm2d(
            shapes[0][0], eps=args["eps"], elementwise_affine=args["affine"], bias=args["bias"]
        ),
        label=_layernorm_label("layernorm2d"),
        fill=NORM_FILL,
    )
)

# ------------------------------------------------------------ groupnorm


def _groupnorm_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    (shape,) = shapes
    channels, groups = shape[0], args["groups"]
    if channels % groups:
        raise ShapeProblem(
            f"`groups={groups}` must divide the {channels} channels of {layout(shape)}",
            arg="groups",
            hint="groupnorm splits the first dimension (the channels) into `groups` equal groups",
        )
    return shape


register(
    OpSpec(
        name="groupnorm",
        summary="group normalisation over the channels of [C, ...] (torch.nn.GroupNorm)",
        args=(
            ArgSpec("groups", "int", minimum=1, doc="channel groups; must divide C"),
            ArgSpec("eps", "float", 1e-5, minimum=0.0),
            ArgSpec("affine", "bool", True, doc="learn a per-channel weight and bias"),
        ),
        infer=_groupnorm_infer,
        count_params=lambda args, shapes: 2 * shapes[0][0] if args["affine"] else 0,
        build=lambda args, shapes: nn.GroupNorm(args["groups"], shapes[0][0], eps=args["eps"], affine=args["affine"]),
        label=lambda args: f"groupnorm {args['groups']}",
        fill=NORM_FILL,
        overwritable=True,
    )
)

# ------------------------------------------------------------ embedding


def _embedding_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    (shape,) = shapes
    most = limits.current().max_rank
    if len(shape) >= most:
        raise ShapeProblem(
            f"`embedding` adds a dim to its input of ids, and {layout(shape)} already has {len(shape)},"
            f" the most a tensor may have",
        )
    return (*shape, args["dim"])


register(
    OpSpec(
        name="embedding",
        summary="a table of `num` learned vectors of size `dim` (torch.nn.Embedding): integer ids [T] -> [T, dim]",
        args=(
            ArgSpec("num", "int", minimum=1, doc="the number of ids (vocabulary size)"),
            ArgSpec("dim", "int", minimum=1, doc="the size of each vector"),
        ),
        infer=_embedding_infer,
        count_params=lambda args, shapes: args["num"] * args["dim"],
        build=lambda args, shapes: nn.Embedding(args["num"], args["dim"]),
        weight_shape=lambda args, shapes: (args["num"], args["dim"]),
        label=lambda args: f"embedding {args['num']}×{args['dim']}",
        fill=WEIGHT_FILL,
        token_ids="embed",
    )
)

# ------------------------------------------------------------ attention


def causal_mask(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``nn.Transformer.generate_square_subsequent_mask(size)``: -inf above the diagonal, 0 elsewhere."""
    return torch.triu(torch.full((size, size), float("-inf"), dtype=dtype, device=device), diagonal=1)


class SelfAttention(nn.MultiheadAttention):
    """Self-attention on ``[N, T, D]``: ``nn.MultiheadAttention(D, heads, batch_first=True)`` called as ``(x, x, x)``.

    Its parameters, their names and initialisation are nn.MultiheadAttention's
    (torchvision's ViT and nn.TransformerEncoderLayer hold one), and ``forward``
    is ``super().forward(x, x, x, need_weights=False)[0]``: the same code,
    fast path included. ``causal`` passes the mask
    ``nn.Transformer.generate_square_subsequent_mask`` makes with
    ``is_causal=True``, as nn.TransformerEncoderLayer does for a causal mask.
    TorchScript cannot call ``super()``; a scripted one runs ``_scripted``.
    """

    def __init__(
        self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, causal: bool = False
    ) -> None:
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, batch_first=True)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if torch.jit.is_scripting():
            return self._scripted(x)
        return self._eager(x)

    @torch.jit.unused
    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal:
            mask = causal_mask(x.size(1), x.device, x.dtype)
            return super().forward(x, x, x, need_weights=False, attn_mask=mask, is_causal=True)[0]
        return super().forward(x, x, x, need_weights=False)[0]

    def _scripted(self, x: torch.Tensor) -> torch.Tensor:
        """TorchScript cannot call ``super()``: there, the path nn.MultiheadAttention takes outside its fast path."""
        mask: torch.Tensor | None = causal_mask(x.size(1), x.device, x.dtype) if self.causal else None
        query = x.transpose(1, 0)
        out_proj_bias: torch.Tensor | None = self.out_proj.bias
        out, _ = F.multi_head_attention_forward(
            query,
            query,
            query,
            self.embed_dim,
            self.num_heads,
            self.in_proj_weight,
            self.in_proj_bias,
            None,
            None,
            False,
            self.dropout,
            self.out_proj.weight,
            out_proj_bias,
            training=self.training,
            need_weights=False,
            attn_mask=mask,
            is_causal=self.causal,
        )
        return out.transpose(1, 0)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, causal={self.causal}"


def _attention_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    image = len(shapes[0]) == 3
    hint = "make the image a sequence [H·W, C] of tokens first: `flatten(1) -> transpose(0, 1)`" if image else None
    tokens, width = needs_rank("attention", shapes[0], (2,), hint)
    heads = args["heads"]
    if width % heads:
        raise ShapeProblem(
            f"`heads={heads}` must divide the token width {width} of {layout(shapes[0])}",
            arg="heads",
            hint="each head takes width / heads of every token",
        )
    return shapes[0]


def _attention_params(args: Args, shapes: Sequence[Shape]) -> int:
    width = shapes[0][-1]
    return 4 * width * width + (4 * width if args["bias"] else 0)


def _attention_macs(args: Args, shapes: Sequence[Shape], out: Shape) -> int:
    tokens, width = shapes[0]
    # q, k and v projections; scores q·kᵀ and their weighted sum of v (all T² of them, masked or not,
    # as FlopCounterMode counts them); the output projection
    return 3 * tokens * width * width + 2 * tokens * tokens * width + tokens * width * width


register(
    OpSpec(
        name="attention",
        summary="multi-head self-attention on a sequence [T, D] (torch.nn.MultiheadAttention, batch_first)",
        args=(
            ArgSpec("heads", "int", minimum=1, doc="attention heads; must divide D"),
            ArgSpec("dropout", "float", 0.0, minimum=0.0, maximum=1.0, doc="on the attention weights, in training"),
            ArgSpec("causal", "bool", False, doc="a token attends to itself and the tokens before it only"),
            ArgSpec("bias", "bool", True, doc="biases of the input and output projections"),
        ),
        infer=_attention_infer,
        count_params=_attention_params,
        count_macs=_attention_macs,
        build=lambda args, shapes: SelfAttention(
            shapes[0][-1], args["heads"], dropout=args["dropout"], bias=args["bias"], causal=args["causal"]
        ),
        label=lambda args: f"attention {args['heads']} heads" + (", causal" if args["causal"] else ""),
        fill=WEIGHT_FILL,
        weighted=True,
    )
)

# ----------------------------------------------------------------- sdpa


class ScaledDotProductAttention(nn.Module):
    """``F.scaled_dot_product_attention(q, k, v)``, with its dropout in training mode only (as MultiheadAttention)."""

    def __init__(self, dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        self.dropout = dropout
        self.causal = causal

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        dropout = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, is_causal=self.causal)

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}, causal={self.causal}"


def _sdpa_infer(args: Args, shapes: Sequence[Shape]) -> Shape:
    names = ("query", "key", "value")
    for index, shape in enumerate(shapes):
        if len(shape) < 2:
            raise ShapeProblem(
                f"`sdpa`'s {names[index]} must be [..., T, d] (rank 2 or more), got {layout(shape)}",
                input_index=index,
            )
    query, key, value = shapes
    for index, shape in ((1, key), (2, value)):
        if shape[:-2] != query[:-2]:
            raise ShapeProblem(
                f"`sdpa`'s {names[index]} {list(shape)} and query {list(query)} differ in their leading dims"
                f" {list(shape[:-2])} and {list(query[:-2])}",
                hint="query, key and value are [..., T, d] with the same dims before T (heads, for instance)",
                input_index=index,
            )
    if key[-1] != query[-1]:
        raise ShapeProblem(
            f"`sdpa`'s key {list(key)} has width {key[-1]} but the query {list(query)} has width {query[-1]}",
            hint="scores are dot products of query and key rows: their last dims must agree",
            input_index=1,
        )
    if value[-2] != key[-2]:
        raise ShapeProblem(
            f"`sdpa`'s value {list(value)} has {value[-2]} tokens but the key {list(key)} has {key[-2]}",
            hint="each key token weighs the value token at its place: their second-to-last dims must agree",
            input_index=2,
        )
    return (*query[:-1], value[-1])


def _sdpa_macs(args: Args, shapes: Sequence[Shape], out: Shape) -> int:
    query, key, value = shapes
    # scores: T_q·T_k dot products of width d; weighted sum: T_q·T_k multiply-adds of width d_v
    return math.prod(query[:-2]) * query[-2] * key[-2] * (query[-1] + value[-1])


register(
    OpSpec(
        name="sdpa",
        summary="scaled dot-product attention of (query, key, value) [..., T, d] (F.scaled_dot_product_attention)",
        args=(
            ArgSpec("causal", "bool", False, doc="query token i attends to key tokens 0..i only"),
            ArgSpec("dropout", "float", 0.0, minimum=0.0, maximum=1.0, doc="on the attention weights, in training"),
        ),
        min_inputs=3,
        max_inputs=3,
        inputs_in_args=True,
        infer=_sdpa_infer,
        count_macs=_sdpa_macs,
        build=lambda args, shapes: ScaledDotProductAttention(args["dropout"], args["causal"]),
        label=lambda args: "sdpa, causal" if args["causal"] else "sdpa",
        fill="#d9f0d3",  # mul's: a product of activations
    )
)
