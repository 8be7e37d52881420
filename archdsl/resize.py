"""Inputs of another size than the declared one.

The declared input shape is what validation, ``summary`` and diagrams use. A
compiled module also runs at any other size its layers can take: the
convolutions, pools and ``upsample(like=...)`` follow the tensor they are
given. At a size they cannot take, the module refuses the input before
running (E412), naming the first op that cannot take it and why, instead of a
torch traceback from generated code. :func:`check_input_sizes` is the
module's forward pre-hook; it re-runs the shape rules (microseconds per node)
once per new size, and costs one tuple comparison at the declared size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from archdsl.errors import ArchShapeError, Span
from archdsl.expr import Shape
from archdsl.node import record
from archdsl.ops import lookup
from archdsl.ops.registry import ShapeProblem
from archdsl.shapes import line_up


def size_check_hook(inputs: int):
    """The forward pre-hook that runs :func:`check_input_sizes` for a network of ``inputs`` inputs.

    TorchScript compiles a module's hooks too, and needs their argument types:
    hence one typed hook per number of inputs, which skips the check when scripted.
    """
    return _TYPED_HOOKS.get(inputs, check_input_sizes)


def _hook_1(module: torch.nn.Module, args: tuple[Tensor]) -> None:
    if not torch.jit.is_scripting():
        check_input_sizes(module, args)


def _hook_2(module: torch.nn.Module, args: tuple[Tensor, Tensor]) -> None:
    if not torch.jit.is_scripting():
        check_input_sizes(module, args)


def _hook_3(module: torch.nn.Module, args: tuple[Tensor, Tensor, Tensor]) -> None:
    if not torch.jit.is_scripting():
        check_input_sizes(module, args)


_TYPED_HOOKS = {1: _hook_1, 2: _hook_2, 3: _hook_3}


def check_input_sizes(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
    """Refuse inputs whose size the network's layers cannot take (E412); nothing under torch.compile or export."""
    if torch.compiler.is_compiling():
        return  # traced code is specialised or checked by the tracer
    meta = getattr(module, "meta", {}).get("archdsl")
    if not meta or len(args) != len(meta["input_shapes"]):
        return
    sizes = tuple(tuple(a.shape[1:]) if isinstance(a, torch.Tensor) else None for a in args)
    declared = tuple(tuple(shape) for shape in meta["input_shapes"])
    checked = meta.setdefault("sizes_checked", set())
    if sizes == declared or sizes in checked or None in sizes:
        return
    graph = meta["graph"].graph
    shapes_at(graph, dict(zip(graph.graph["inputs"], sizes, strict=True)))
    checked.add(sizes)


def shapes_at(g: nx.DiGraph, sizes: dict[str, Shape]) -> dict[str, Shape]:
    """Every node's shape when the inputs have ``sizes`` (batch left out); raises ArchShapeError (E412)."""
    shapes: dict[str, Shape] = {}
    where = ", ".join(f"{name} {list(size)}" for name, size in sizes.items())
    for node in g:
        data = g.nodes[node]
        op = data["op"]
        if op == "input":
            shapes[node] = _input_size(g, node, sizes[node], where)
            continue
        if lookup(op).learned:
            shapes[node] = tuple(data["shape"])
            continue
        given = [shapes[src] for src in data["inputs"]]
        if op == "piece":
            (producer,) = data["inputs"]
            made = record(g, producer)
            shapes[node] = tuple(lookup(made.op).pieces(made.args, _given(g, made.path, shapes))[data["args"]["index"]])
            continue
        spec = lookup(op)
        try:
            seen = _lined_up(g, node, spec, given)
            shapes[node] = tuple(spec.infer(data["args"], seen))
            _same_weights(node, spec, data, seen)
        except ShapeProblem as problem:
            raise _refused(data, problem.message, problem.hint, where, g) from None
        if any(d < 1 for d in shapes[node]):
            raise _refused(data, f"`{op}` would produce the empty shape {list(shapes[node])}", None, where, g)
    return shapes


def _input_size(g: nx.DiGraph, node: str, size: Shape, where: str) -> Shape:
    declared = tuple(g.nodes[node]["shape"])
    if len(size) != len(declared):
        data = g.nodes[node]
        message = f"the input `{node}` is declared {list(declared)} (batch left out), so it takes {len(declared)} dims"
        raise _refused(data, message, "give it a tensor of shape [batch, *declared dims]", where, g)
    return size


def _given(g: nx.DiGraph, node: str, shapes: dict[str, Shape]) -> list[Shape]:
    return _lined_up(g, node, lookup(g.nodes[node]["op"]), [shapes[src] for src in g.nodes[node]["inputs"]])


def _lined_up(g: nx.DiGraph, node: str, spec, given: list[Shape]) -> list[Shape]:
    is_param = [lookup(g.nodes[src]["op"]).learned for src in g.nodes[node]["inputs"]]
    return line_up(spec, given, is_param) if any(is_param) else given


def _same_weights(node: str, spec, data: dict, seen: Sequence[Shape]) -> None:
    """A layer's weights were made for its declared input; an input that would need others is refused."""
    if spec.count_params(data["args"], seen) != spec.count_params(data["args"], data["input_shapes"]):
        declared = " and ".join(str(list(shape)) for shape in data["input_shapes"])
        now = " and ".join(str(list(shape)) for shape in seen)
        raise ShapeProblem(
            f"`{node}` ({spec.name}) has weights for an input of {declared}, and would get {now}",
            hint=(
                "weights fix the sizes a layer reads (a convolution's channels, a linear layer's features); "
                "to free the image size, pool to a fixed size (adaptive_avgpool) before a flatten"
            ),
        )


def _refused(data: dict, message: str, hint: str | None, where: str, g: nx.DiGraph) -> ArchShapeError:
    span: Span = data["span"]
    return ArchShapeError(
        f"at input size {where}: {message}",
        span,
        hint,
        code="E412",
        sources=g.graph.get("sources"),
    )
