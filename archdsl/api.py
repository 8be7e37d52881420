"""The public entry points: source -> graph, source -> module, source -> both (:func:`build`), checkpoints."""

from __future__ import annotations

import os
from typing import Any

import networkx as nx
from torch import fx

from archdsl import checkpoint, pipeline
from archdsl.checkpoint import atomic_save, checkpoint_payload, read_checkpoint, save_checkpoint, seal
from archdsl.limits import Limits
from archdsl.limits import using as using_limits
from archdsl.node import title_of
from archdsl.pipeline import Built, Outputs, Source, gc_paused, graph_of_module, load_source, merged, output_node
from archdsl.render import ArchRenderError, render_dot, run_dot

__all__ = [
    "ArchGraph",
    "Built",
    "atomic_save",
    "build",
    "checkpoint_payload",
    "gc_paused",
    "graph",
    "graph_of_module",
    "load",
    "load_checkpoint",
    "load_source",
    "output_node",
    "read_checkpoint",
    "save_checkpoint",
    "seal",
    "title_of",
]


class ArchGraph(nx.DiGraph):
    """The validated graph of a network: a ``networkx.DiGraph`` that draws itself in notebooks."""

    def __repr__(self) -> str:
        if "name" not in self.graph:
            return super().__repr__()
        shapes = lambda names: ", ".join(f"{n} {list(self.nodes[n]['shape'])}" for n in names)  # noqa: E731
        return (
            f"<ArchGraph {self.graph['name']}: {self.number_of_nodes()} nodes, "
            f"{self.graph['total_params']:,} parameters, {self.graph['total_macs'] / 1e9:.3f} GMACs; "
            f"{shapes(self.graph['inputs'])} -> {shapes(self.graph['outputs'])}>"
        )

    def _repr_svg_(self) -> str | None:
        try:
            return run_dot(render_dot(self), "svg").decode("utf-8")
        except ArchRenderError:  # no Graphviz: let the notebook fall back to text
            return None


def build(
    source: Source,
    *,
    network: str | None = None,
    compile: bool = True,
    seed: int | None = None,
    outputs: Outputs = None,
    memory_efficient: bool = False,
    fuse: bool = False,
    limits: Limits | None = None,
    params: dict[str, Any] | None = None,
    **overrides: Any,
) -> Built:
    """Run the whole pipeline once; returns a :class:`~archdsl.pipeline.Built` with ``graph`` and ``module``.

    The arguments are those of :func:`graph` and :func:`load`;
    ``compile=False`` stops after validation (``built.compile(...)`` compiles
    later from the same graph). Every command of the CLI goes through here.
    """
    with using_limits(limits):
        return pipeline.build(
            source,
            network=network,
            overrides=merged(params, overrides),
            compile=compile,
            seed=seed,
            outputs=outputs,
            memory_efficient=memory_efficient,
            fuse=fuse,
            graph_class=ArchGraph,
        )


def graph(
    source: Source,
    *,
    network: str | None = None,
    limits: Limits | None = None,
    params: dict[str, Any] | None = None,
    **overrides: Any,
) -> nx.DiGraph:
    """Parse, elaborate and validate a network; returns its ``networkx.DiGraph``.

    ``source`` is a path, a zoo name (``"resnet50"``), a builder name of
    ``architectures/aliases.toml`` (``"resnext50_32x4d"``: a zoo file with
    parameter values) or ``.arch`` text;
    ``overrides`` set network parameters (``num_classes=10``; they win over an
    alias's values); ``params`` is
    the same as a dict, for names that clash with this function's keywords
    (a network parameter called ``seed``). Node ids are
    module paths; node attributes: ``op``, ``args``, ``path``, ``inputs``
    (the input node paths in order; one node may feed a merge twice),
    ``shape`` (batch dimension excluded), ``input_shapes``, ``params``,
    ``macs``, ``groups`` (the stages and blocks it belongs to), ``span``,
    ``label_span``, ``role`` and ``record`` (the typed
    :class:`archdsl.node.Node` they are read from). Edges, one per
    (source, consumer) pair: ``kind`` (flow, skip, concat, gate) and
    ``position`` (of that source's first use).
    ``limits`` replaces the default :class:`~archdsl.limits.Limits` (repeat
    counts, node count, nesting, integer size) for this call.
    Raises an :class:`~archdsl.errors.ArchError` carrying every problem found.
    """
    return build(source, network=network, compile=False, limits=limits, params=params, **overrides).graph


def load(
    source: Source,
    *,
    network: str | None = None,
    seed: int | None = None,
    outputs: Outputs = None,
    memory_efficient: bool = False,
    fuse: bool = False,
    limits: Limits | None = None,
    params: dict[str, Any] | None = None,
    **overrides: Any,
) -> fx.GraphModule:
    """Compile a network into a trainable ``torch.fx.GraphModule``.

    ``outputs`` turns it into a feature extractor: node or stage/block paths
    (``["layer2", "layer3"]``, or ``{"name": "path"}``) whose values the
    module returns as a dict, computing only what they need.
    ``memory_efficient`` makes every ``concat -> batchnorm -> relu -> conv``
    chain (DenseNet layers and transitions) keep only its inputs for
    backward, so training memory grows linearly with block depth; gradients
    are unchanged. ``fuse`` folds batch norms into the convolutions before
    them and returns the module in eval mode, for inference. ``limits`` and
    ``params`` are as for :func:`graph`.
    The module remembers its sources, overrides and options in
    ``module.meta["archdsl"]`` so that :func:`save_checkpoint` can write a
    self-contained checkpoint, and the graph it was compiled from
    (:func:`graph_of_module`).
    """
    built = build(
        source,
        network=network,
        seed=seed,
        outputs=outputs,
        memory_efficient=memory_efficient,
        fuse=fuse,
        limits=limits,
        params=params,
        **overrides,
    )
    return built.module


def load_checkpoint(
    path: str | os.PathLike[str],
    payload: dict[str, Any] | None = None,
    *,
    verify: bool = True,
    limits: Limits | None = None,
) -> fx.GraphModule:
    """Rebuild a module from a checkpoint written by :func:`save_checkpoint` (``weights_only`` loading).

    The file must match the SHA-256 it stores (E607, E608) unless
    ``verify=False``. Its stored limits can lower ``limits`` (default: the
    limits in force), never raise them: a module compiled under raised
    limits is reloaded by passing them again.
    """
    return checkpoint.load_checkpoint(path, payload, ArchGraph, verify=verify, limits=limits)
