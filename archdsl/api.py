"""The public entry points: source -> graph, source -> module, checkpoints."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from torch import fx

from archdsl.compile import compile_graph
from archdsl.elaborate import Elaborator, elaborate
from archdsl.errors import ArchCheckpointError, ArchError, ArchNameError, ArchTypeError, combine, did_you_mean
from archdsl.limits import DEFAULT as DEFAULT_LIMITS
from archdsl.limits import Limits
from archdsl.limits import current as current_limits
from archdsl.limits import using as using_limits
from archdsl.loader import Program, load_program, resolve_source
from archdsl.optimize import fuse_batchnorm, memory_efficient_dense
from archdsl.shapes import infer_shapes
from archdsl.validate import check_module_paths, check_reachability, find_cycles, lint, topological_order

Source = str | os.PathLike[str]

FINAL_ATTRS = ("op", "args", "path", "shape", "input_shapes", "params", "macs", "groups", "span", "label_span", "role")
CHECKPOINT_FORMAT = "archdsl-checkpoint"
CHECKPOINT_VERSION = 1


def load_source(source: Source, sources: dict[str, str] | None = None) -> Program:
    """Read a path, zoo name or source text, and its imports, into a Program."""
    text, file, real = resolve_source(source)
    with gc_paused():
        return load_program(text, file, real, sources)


def graph(
    source: Source,
    *,
    network: str | None = None,
    limits: Limits | None = None,
    params: dict[str, Any] | None = None,
    **overrides: Any,
) -> nx.DiGraph:
    """Parse, elaborate and validate a network; returns its ``networkx.DiGraph``.

    ``source`` is a path, a zoo name (``"resnet50"``) or ``.arch`` text;
    ``overrides`` set network parameters (``num_classes=10``); ``params`` is
    the same as a dict, for names that clash with this function's keywords
    (a network parameter called ``seed``). Node ids are
    module paths; node attributes: ``op``, ``args``, ``path``, ``shape``
    (batch dimension excluded), ``input_shapes``, ``params``, ``macs``,
    ``groups`` (the stages and blocks it belongs to) and ``span``. Edge
    attributes: ``kind`` (flow, skip, concat, gate) and ``position``.
    ``limits`` replaces the default :class:`~archdsl.limits.Limits` (repeat
    counts, node count, nesting, integer size) for this call.
    Raises an :class:`~archdsl.errors.ArchError` carrying every problem found.
    """
    with using_limits(limits):
        return graph_of_program(load_source(source), network, _merged(params, overrides))


def _merged(params: dict[str, Any] | None, overrides: dict[str, Any]) -> dict[str, Any]:
    both = sorted(set(params or {}) & set(overrides))
    if both:
        raise TypeError(f"network parameter {both[0]!r} given both in params= and as a keyword")
    return {**(params or {}), **overrides}


def graph_of_program(
    program: Program, network: str | None = None, overrides: dict[str, Any] | None = None
) -> nx.DiGraph:
    """:func:`graph` for an already loaded :class:`Program`."""
    try:
        with gc_paused():
            return _build(program, network, dict(overrides or {}))
    except RecursionError:
        raise ArchTypeError("the input nests too deeply to process", None, code="E323").with_sources(
            program.sources
        ) from None


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


def _build(program: Program, network: str | None, overrides: dict[str, Any]) -> nx.DiGraph:
    structural, elaborator = elaborate(program, network, overrides)
    return validate(structural, elaborator, program)


def validate(structural: nx.DiGraph, elaborator: Elaborator, program: Program) -> nx.DiGraph:
    """Stage 3: cycles, shape inference, reachability and module paths; the final, linted graph."""
    errors = elaborator.errors
    cycles = find_cycles(structural)
    if cycles:
        raise combine(errors + cycles, program.sources)
    ordering = [
        (data["target"], node)
        for node, data in structural.nodes(data=True)
        if data["op"] == "shortcut" and data["target"] is not None
    ]
    try:
        order = topological_order(structural, ordering)
    except nx.NetworkXUnfeasible:
        raise combine(find_cycles(_with_edges(structural, ordering)), program.sources) from None
    infer_shapes(structural, elaborator, order)
    if errors:
        raise combine(errors, program.sources)
    final = _finalize(structural, program)
    problems = check_reachability(final) + check_module_paths(final) + check_size(final)
    if problems:
        raise combine(problems, program.sources)
    lint(final)
    return final


def _with_edges(g: nx.DiGraph, edges: list[tuple[str, str]]) -> nx.DiGraph:
    h = g.copy()
    for u, v in edges:
        h.add_edge(u, v, kind="flow", position=0, span=g.nodes[v]["span"])
    return h


def check_size(g: nx.DiGraph) -> list[ArchError]:
    """A network too large to allocate is an error before any weight is (E326)."""
    most = current_limits().max_params
    if g.graph["total_params"] <= most:
        return []
    largest = max(g.nodes, key=lambda n: g.nodes[n]["params"])
    message = f"the network has {g.graph['total_params']:,} parameters, more than the limit of {most:,}"
    hint = f"`{largest}` alone has {g.nodes[largest]['params']:,}; raise the limit with archdsl.Limits(max_params=...)"
    return [ArchTypeError(message, g.nodes[largest]["span"], hint, code="E326")]


def title_of(g: nx.DiGraph) -> str:
    """The first line of a network's docstring, or its name."""
    lines = (g.graph.get("doc") or "").strip().splitlines()
    return lines[0].strip() if lines else g.graph["name"]


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
        from archdsl.render import ArchRenderError, render_dot, run_dot

        try:
            return run_dot(render_dot(self), "svg").decode("utf-8")
        except ArchRenderError:  # no Graphviz: let the notebook fall back to text
            return None


def _finalize(g: nx.DiGraph, program: Program) -> nx.DiGraph:
    """The validated graph: nodes in a deterministic topological order, each node's in-edges by position."""
    final = ArchGraph()
    final.graph.update(g.graph)
    final.graph["sources"] = dict(program.sources)
    final.graph["file"] = program.main.file
    order = topological_order(g)
    for node in order:
        data = g.nodes[node]
        attrs = {key: data[key] for key in FINAL_ATTRS if key in data}
        attrs["path"] = node
        attrs.setdefault("input_shapes", ())
        attrs.setdefault("params", 0)
        attrs.setdefault("macs", 0)
        attrs.setdefault("role", None)
        attrs.setdefault("label_span", None)
        if data["op"] == "input":
            attrs["shape"] = tuple(data["args"]["shape"])
        final.add_node(node, **attrs)
    for node in order:
        for src, _, data in sorted(g.in_edges(node, data=True), key=lambda e: e[2]["position"]):
            final.add_edge(src, node, **data)
    final.graph["total_params"] = sum(d["params"] for _, d in final.nodes(data=True))
    final.graph["total_macs"] = sum(d["macs"] for _, d in final.nodes(data=True))
    return final


def load(
    source: Source,
    *,
    network: str | None = None,
    seed: int | None = None,
    outputs: list[str] | dict[str, str] | None = None,
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
    self-contained checkpoint.
    """
    options = {"memory_efficient": memory_efficient, "fuse": fuse}
    with using_limits(limits):
        return _compile(load_source(source), network, seed, _merged(params, overrides), outputs, options)


def _compile(
    program: Program,
    network: str | None,
    seed: int | None,
    overrides: dict[str, Any],
    outputs: list[str] | dict[str, str] | None = None,
    options: dict[str, bool] | None = None,
) -> fx.GraphModule:
    g = graph_of_program(program, network, overrides)
    options = {name: bool(on) for name, on in (options or {}).items() if on}
    meta = {
        "file": program.main.file,
        "network": g.graph["name"],
        "sources": dict(program.sources),
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
    with gc_paused():
        module = compile_graph(g, seed=seed, meta=meta, outputs=selected)
    if options.get("fuse"):
        fuse_batchnorm(module)
    if options.get("memory_efficient"):
        memory_efficient_dense(module)
    return module


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


def checkpoint_payload(module: fx.GraphModule) -> dict[str, Any]:
    """What a checkpoint holds about a module: its sources, overrides, outputs and weights."""
    meta = module.meta.get("archdsl")
    if not meta:
        raise ArchCheckpointError("this module was not compiled by archdsl (no sources to save)", None, code="E602")
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "file": meta["file"],
        "network": meta["network"],
        "sources": meta["sources"],
        "overrides": meta["overrides"],
        "outputs": meta.get("outputs"),
        "options": meta.get("options", {}),
        "limits": meta.get("limits"),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }


def atomic_save(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves a truncated checkpoint."""
    target = Path(path)
    if not target.parent.is_dir():
        raise ArchCheckpointError(
            f"cannot write {target}: the folder {target.parent} does not exist", None, code="E606"
        )
    tmp = target.with_name(target.name + ".tmp")
    try:
        with open(tmp, "wb") as stream:
            torch.save(payload, stream)
        os.replace(tmp, target)
    except (OSError, RuntimeError) as err:  # torch's writer reports a full disk as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise ArchCheckpointError(f"cannot write {target}: {reason}", None, code="E606") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(module: fx.GraphModule, path: str | os.PathLike[str]) -> None:
    """Write (sources, overrides, state_dict) so that :func:`load_checkpoint` restores the module."""
    atomic_save(checkpoint_payload(module), path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The payload of an archdsl checkpoint, read with ``torch.load(weights_only=True)``."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArchCheckpointError(f"no such checkpoint: {path}", None, code="E601") from None
    except Exception as err:  # torch raises many types for corrupt files
        raise ArchCheckpointError(f"cannot read checkpoint {path}: {err}", None, code="E601") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ArchCheckpointError(f"{path} is not an archdsl checkpoint", None, code="E603")
    return payload


def program_of(meta: dict[str, Any]) -> Program:
    """The program stored in a module's meta or a checkpoint payload (no disk access for its sources)."""
    sources = dict(meta["sources"])
    return load_program(sources[meta["file"]], meta["file"], None, sources)


def stored_limits(meta: dict[str, Any]) -> Limits | None:
    """The limits a module was compiled under, when they were not the defaults."""
    stored = meta.get("limits")
    return Limits(**stored) if stored else None


def graph_of_meta(meta: dict[str, Any]) -> nx.DiGraph:
    """The validated graph a compiled module (``module.meta["archdsl"]``) or a checkpoint was built from."""
    with using_limits(stored_limits(meta)):
        return graph_of_program(program_of(meta), meta["network"], dict(meta["overrides"]))


def rebuild(meta: dict[str, Any], **options: bool) -> fx.GraphModule:
    """A fresh module from a module's meta or a checkpoint payload: its sources, overrides, outputs,
    options (``options`` replace some) and limits, with newly initialised weights."""
    overrides, stored = meta["overrides"], meta.get("options") or {}
    if not isinstance(overrides, dict) or not isinstance(stored, dict):
        raise TypeError("overrides and options must be dicts")
    with using_limits(stored_limits(meta)):
        return _compile(
            program_of(meta), meta["network"], None, dict(overrides), meta.get("outputs"), {**stored, **options}
        )


def load_checkpoint(path: str | os.PathLike[str]) -> fx.GraphModule:
    """Rebuild a module from a checkpoint written by :func:`save_checkpoint` (``weights_only`` loading)."""
    payload = read_checkpoint(path)
    try:
        module = rebuild(payload)
    except KeyError as err:
        raise ArchCheckpointError(f"checkpoint {path} lacks the entry {err}", None, code="E603") from None
    except (TypeError, ValueError, AttributeError) as err:
        raise ArchCheckpointError(f"checkpoint {path} is malformed: {err}", None, code="E603") from None
    except ArchError as err:
        raise ArchCheckpointError(
            f"the architecture stored in {path} no longer builds:\n{err}", None, code="E604"
        ) from None
    _load_state(module, payload.get("state_dict"), path)
    return module


def _load_state(module: fx.GraphModule, state: Any, path: Any) -> None:
    if not isinstance(state, dict):
        raise ArchCheckpointError(f"checkpoint {path} has no state_dict", None, code="E603")
    expected = module.state_dict(keep_vars=True)
    for key, tensor in expected.items():
        if key not in state:
            raise ArchCheckpointError(f"checkpoint {path} lacks the weight `{key}`", None, code="E605")
        if not isinstance(state[key], torch.Tensor):
            raise ArchCheckpointError(f"weight `{key}` in {path} is not a tensor", None, code="E605")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ArchCheckpointError(
                f"weight `{key}` has shape {list(state[key].shape)} in {path}, "
                f"but the network needs {list(tensor.shape)}",
                None,
                code="E605",
            )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise ArchCheckpointError(f"checkpoint {path} has the unexpected weight `{unexpected[0]}`", None, code="E605")
    # Keys and shapes are checked above; copying directly avoids load_state_dict,
    # whose cost grows with the square of a module's children (10,000 blocks: 11 s).
    with torch.no_grad():
        for key, tensor in expected.items():
            tensor.copy_(state[key])
