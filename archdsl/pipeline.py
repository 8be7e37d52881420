"""The pipeline in one place: source -> program -> structure -> validated graph -> module, each stage run once.

:func:`build` runs every stage and returns a :class:`Built`; a compiled
module carries its graph (``module.meta["archdsl"]["graph"]``), input shapes
and output names, so later steps (training, export, checkpoints) never parse
or elaborate again. :mod:`archdsl.api` is the public face of this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
from collections.abc import Iterator
from typing import Any

import networkx as nx
import torch
from torch import fx

from archdsl.compile import compile_graph
from archdsl.elaborate import elaborate
from archdsl.errors import ArchLimitError, ArchNameError, did_you_mean
from archdsl.limits import DEFAULT as DEFAULT_LIMITS
from archdsl.limits import Limits
from archdsl.limits import current as current_limits
from archdsl.limits import stricter as stricter_limits
from archdsl.limits import using as using_limits
from archdsl.loader import Program, load_program, resolve_source
from archdsl.optimize import fuse_batchnorm, memory_efficient_dense
from archdsl.resize import size_check_hook
from archdsl.resources import expand_alias
from archdsl.validate import validate

Source = str | os.PathLike[str]
Outputs = list[str] | dict[str, str] | None
OPTIONS = ("memory_efficient", "fuse")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a graph is built.

    A build allocates many small, long-lived objects; every full collection
    walks all of them, which made the cost per node grow with the network
    (ResNet-1202: 147 us per node with the collector, 90 us without).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_source(source: Source, sources: dict[str, str] | None = None) -> Program:
    """Stage 1: read a path, zoo name or source text, and its imports, into a Program.

    An alias (``resnext101_32x8d``) reads its zoo file; its parameter values
    are applied by :func:`build` and :func:`graph_of_source`, which see the overrides.
    """
    text, file, real = resolve_source(expand_alias(source, {})[0])
    with gc_paused():
        return load_program(text, file, real, sources)


def merged(params: dict[str, Any] | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """``params=`` and keyword overrides as one dict; a name given in both is a TypeError."""
    both = sorted(set(params or {}) & set(overrides))
    if both:
        raise TypeError(f"network parameter {both[0]!r} given both in params= and as a keyword")
    return {**(params or {}), **overrides}


def graph_of_program(
    program: Program,
    network: str | None = None,
    overrides: dict[str, Any] | None = None,
    graph_class: type[nx.DiGraph] = nx.DiGraph,
) -> nx.DiGraph:
    """Stages 2 and 3: elaborate and validate a loaded :class:`Program`; the validated graph."""
    try:
        with gc_paused():
            return validate(elaborate(program, network, dict(overrides or {})), graph_class)
    except RecursionError:
        raise ArchLimitError("the input nests too deeply to process", None, code="E323").with_sources(
            program.sources
        ) from None


def graph_of_source(source: Source | nx.DiGraph, **overrides: Any) -> nx.DiGraph:
    """A validated graph from a graph (returned as it is), a path, a zoo name or ``.arch`` text."""
    if isinstance(source, nx.DiGraph):
        return source
    source, overrides = expand_alias(source, overrides)
    return graph_of_program(load_source(source), None, overrides)


@dataclasses.dataclass(frozen=True)
class Sources:
    """The main file's name and the text of every file of a program, as a module's meta keeps them."""

    file: str
    sources: dict[str, str]

    @classmethod
    def of(cls, meta: dict[str, Any]) -> Sources:
        """The sources recorded in a module's meta or a checkpoint payload."""
        return cls(meta["file"], dict(meta["sources"]))


@dataclasses.dataclass(frozen=True)
class Built:
    """Everything one run of the pipeline made: the program, the validated graph and (if asked) the module."""

    program: Program
    graph: nx.DiGraph
    overrides: dict[str, Any]
    module: fx.GraphModule | None = None

    @property
    def name(self) -> str:
        """The network's name."""
        return self.graph.graph["name"]

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each input's declared shape (batch dimension excluded), in argument order."""
        return {node: tuple(self.graph.nodes[node]["shape"]) for node in self.graph.graph["inputs"]}

    def compile(
        self, *, seed: int | None = None, outputs: Outputs = None, memory_efficient: bool = False, fuse: bool = False
    ) -> Built:
        """This build with a module compiled from its graph (no stage before compilation runs again)."""
        options = {"memory_efficient": memory_efficient, "fuse": fuse}
        sources = Sources(self.program.main.file, self.program.sources)
        module = compile_network(self.graph, sources, self.overrides, seed, outputs, options)
        return dataclasses.replace(self, module=module)


def build(
    source: Source,
    *,
    network: str | None = None,
    overrides: dict[str, Any] | None = None,
    compile: bool = True,
    seed: int | None = None,
    outputs: Outputs = None,
    memory_efficient: bool = False,
    fuse: bool = False,
    graph_class: type[nx.DiGraph] = nx.DiGraph,
) -> Built:
    """Run the pipeline once on ``source``: the validated graph and, unless ``compile=False``, its module.

    An alias (``resnext101_32x8d``) builds its zoo file with its parameter
    values, which ``overrides`` replace where they name the same parameter;
    ``Built.overrides`` holds both, so a checkpoint rebuilds the same variant.
    """
    source, overrides = expand_alias(source, overrides or {})
    with gc_paused():  # one pause for parsing and building: each resumption costs a full collection
        program = load_source(source)
        built = Built(program, graph_of_program(program, network, overrides, graph_class), overrides)
    if not compile:
        return built
    return built.compile(seed=seed, outputs=outputs, memory_efficient=memory_efficient, fuse=fuse)


def compile_network(
    g: nx.DiGraph,
    sources: Sources,
    overrides: dict[str, Any],
    seed: int | None = None,
    outputs: Outputs = None,
    options: dict[str, bool] | None = None,
) -> fx.GraphModule:
    """Stage 4 and the optional rewrites: a module from a validated graph, remembering what it was built from.

    ``module.meta["archdsl"]`` holds the file, network name, sources,
    overrides, options, limits (when not the defaults) and outputs, which a
    checkpoint saves, and the validated ``graph``, ``input_shapes`` and
    ``output_names``, which later steps read instead of building again.
    """
    options = {name: bool(on) for name, on in (options or {}).items() if on}
    meta: dict[str, Any] = {
        "file": sources.file,
        "network": g.graph["name"],
        "sources": dict(sources.sources),
        "overrides": dict(overrides),
        "options": options,
    }
    if current_limits() != DEFAULT_LIMITS:  # a checkpoint must rebuild under the same limits
        meta["limits"] = dataclasses.asdict(current_limits())
    selected = None
    if outputs is not None:
        named = dict(outputs) if isinstance(outputs, dict) else {name: name for name in outputs}
        selected = {name: output_node(g, path) for name, path in named.items()}
        meta["outputs"] = named
    meta["graph"] = GraphOf(g)
    meta["input_shapes"] = [tuple(g.nodes[node]["shape"]) for node in g.graph["inputs"]]
    inputs = [g.nodes[node]["args"] for node in g.graph["inputs"]]
    meta["input_kinds"] = [(args.get("dtype", "float"), args.get("high")) for args in inputs]
    meta["output_names"] = list(selected) if selected is not None else list(g.graph["outputs"])
    with gc_paused():
        module = compile_graph(g, seed=seed, meta=meta, outputs=selected)
    module.register_forward_pre_hook(size_check_hook(len(g.graph["inputs"])))
    if options.get("fuse"):
        fuse_batchnorm(module)
    if options.get("memory_efficient"):
        memory_efficient_dense(module)
    return module


def example_inputs(
    meta: dict[str, Any], batch: int = 1, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, ...]:
    """Random inputs for a compiled module, one per network input: floats from N(0, 1), token ids below ``high``."""
    kinds = meta.get("input_kinds") or [("float", None)] * len(meta["input_shapes"])
    made = []
    for shape, (dtype, high) in zip(meta["input_shapes"], kinds, strict=True):
        size = (batch, *shape)
        if dtype == "int":
            made.append(torch.randint(0, high, size, generator=generator))
        else:
            made.append(torch.randn(size, generator=generator))
    return tuple(made)


class GraphOf:
    """The validated graph a module was compiled from, shared (not copied) by the module's deep copies.

    The graph describes the architecture, not the weights, so copies of a
    module may share it; copying it with every ``copy.deepcopy`` of the
    module would cost as much as the copy of a small module's weights.
    """

    __slots__ = ("graph",)

    def __init__(self, graph: nx.DiGraph) -> None:
        self.graph = graph

    def __deepcopy__(self, memo: dict) -> GraphOf:
        return self


def graph_of_module(module: fx.GraphModule) -> nx.DiGraph | None:
    """The validated graph an archdsl module was compiled from, or None for other modules."""
    meta = getattr(module, "meta", {}).get("archdsl") if isinstance(module, fx.GraphModule) else None
    held = (meta or {}).get("graph")
    return held.graph if isinstance(held, GraphOf) else None


def output_node(g: nx.DiGraph, path: str) -> str:
    """The node whose value a path stands for: a node itself, or the output of a stage or block."""
    if path in g:
        return path
    members = [n for n in g.nodes if n.startswith(path + ".")]
    exits = [
        n for n in members if n in g.graph["outputs"] or any(not s.startswith(path + ".") for s in g.successors(n))
    ]
    if members and len(exits) == 1:
        return exits[0]
    if members:
        return members[-1]  # nodes are in topological order
    groups = {grp.path for _, d in g.nodes(data=True) for grp in d["groups"]}
    hint = did_you_mean(path, [*g.nodes, *groups]) or "give a node path or a stage/block path, e.g. `layer2`"
    raise ArchNameError(
        f"`{path}` names no node, stage or block of network `{g.graph['name']}`", None, hint, code="E229"
    )


def program_of(meta: dict[str, Any]) -> Program:
    """The program stored in a module's meta or a checkpoint payload (no disk access for its sources)."""
    sources = dict(meta["sources"])
    return load_program(sources[meta["file"]], meta["file"], None, sources)


def stored_limits(meta: dict[str, Any]) -> Limits | None:
    """The limits a module was compiled under, when they were not the defaults."""
    stored = meta.get("limits")
    return Limits(**stored) if stored else None


def rebuild(meta: dict[str, Any], graph_class: type[nx.DiGraph] = nx.DiGraph) -> fx.GraphModule:
    """A fresh module from a checkpoint payload (or a module's meta): its sources, overrides, outputs,
    options and limits, with newly initialised weights.

    It is built under the stricter of the stored limits and the limits in
    force, field by field: what a file stores can lower them, never raise them.
    """
    overrides, options = meta["overrides"], meta.get("options") or {}
    if not isinstance(overrides, dict) or not isinstance(options, dict):
        raise TypeError("overrides and options must be dicts")
    with using_limits(stricter_limits(current_limits(), stored_limits(meta))):
        program = program_of(meta)
        g = graph_of_program(program, meta["network"], dict(overrides), graph_class)
        return compile_network(g, Sources.of(meta), dict(overrides), None, meta.get("outputs"), options)


def without_rewrites(module: fx.GraphModule, *names: str) -> fx.GraphModule:
    """The module compiled again from its own graph without the rewrites ``names``, with the same weights.

    Used by export for ``memory_efficient``, whose autograd function only
    helps training and cannot be scripted: a choice made on the graph the
    module carries, so nothing is parsed or elaborated again.
    """
    meta = module.meta["archdsl"]
    g = graph_of_module(module)
    options = {name: on for name, on in (meta.get("options") or {}).items() if name not in names}
    with using_limits(stored_limits(meta)):
        plain = compile_network(g, Sources.of(meta), dict(meta["overrides"]), None, meta.get("outputs"), options)
    plain.load_state_dict(module.state_dict())
    plain.train(module.training)
    return plain
