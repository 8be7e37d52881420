"""Stage 3: validation. Structural graph -> the validated ``networkx.DiGraph`` of node records.

:func:`validate` is the stage: cycles (before shapes), shape inference
(:mod:`archdsl.shapes`), then reachability, module paths and size, all into
one error list. :func:`lint` states what every finished graph guarantees; the
compiler and the renderer rely on it, so it runs before either sees a graph.
"""

from __future__ import annotations

import heapq
import itertools
import math

import networkx as nx
from torch import fx, nn

from archdsl.elaborate import Structure
from archdsl.errors import ArchError, ArchGraphError, ArchLimitError, ArchShapeError, Label, combine
from archdsl.frames import module_name_problem
from archdsl.limits import current as current_limits
from archdsl.node import EDGE_KINDS, Node, to_networkx
from archdsl.ops import lookup
from archdsl.shapes import infer_shapes


def validate(structure: Structure, graph_class: type[nx.DiGraph] = nx.DiGraph) -> nx.DiGraph:
    """Check and annotate a structural graph; returns the validated graph or raises every error found."""
    errors, structural, sources = structure.errors, structure.graph, structure.sources
    ordering = [
        (data["target"], node)
        for node, data in structural.nodes(data=True)
        if data["op"] == "shortcut" and data["target"] is not None
    ]
    try:
        order = topological_order(structural, ordering)
    except nx.NetworkXUnfeasible:  # only now look for the cycles, which costs more than ordering
        cycles = find_cycles(structural)
        if cycles:
            raise combine(errors + cycles, sources) from None
        raise combine(find_cycles(_with_edges(structural, ordering)), sources) from None
    created = {node: index for index, node in enumerate(structural)}
    infer_shapes(structural, errors, structure.poisoned, order)
    if not errors:
        errors.extend(apply_ties(structural))
    if errors:
        raise combine(errors, sources)
    attrs = {**structural.graph, "sources": dict(sources), "file": structure.file}
    attrs["module_order"] = _module_order(structural, created)
    # Inference rewrites the graph only to expand skip shortcuts; without one, the order found above still holds.
    final = to_networkx(_records(structural, None if ordering else order), attrs, graph_class)
    problems = check_reachability(final) + check_module_paths(final) + check_size(final)
    if problems:
        raise combine(problems, sources)
    lint(final)
    return final


def apply_ties(g: nx.DiGraph) -> list[ArchError]:
    """Check each ``tie=``: the tied node has a weight of the same shape, which is then counted once (E411)."""
    errors: list[ArchError] = []
    for node, data in g.nodes(data=True):
        tied = data.get("tie")
        if tied is None:
            continue
        mine, theirs = _weight_shape(g, node), _weight_shape(g, tied)
        problem = None
        if theirs is None:
            problem = f"`{tied}` ({g.nodes[tied]['op']}) has no weight to share"
        elif mine != theirs:
            problem = f"`{node}` needs a weight of shape {list(mine)}, but `{tied}`'s is {list(theirs)}"
        if problem:
            errors.append(ArchShapeError(problem, data["tie_span"], "tie layers whose weights agree", code="E411"))
        else:
            data["params"] -= math.prod(mine)
    return errors


def _weight_shape(g: nx.DiGraph, node: str) -> tuple[int, ...] | None:
    data = g.nodes[node]
    spec = lookup(data["op"])
    if spec is None or spec.weight_shape is None:
        return None
    return tuple(spec.weight_shape(data["args"], data["input_shapes"]))


def _module_order(g: nx.DiGraph, created: dict[str, int]) -> list[str]:
    """The nodes with weights, in the order the source writes them (the compiled module registers them so).

    A skip's projection, made during shape inference, takes the place of the skip that made it.
    """

    def written(node: str) -> int:
        origin = g.nodes[node].get("origin")
        return created[origin] if origin in created else created.get(node, len(created))

    weighted = [n for n, data in g.nodes(data=True) if lookup(data["op"]).stateful]
    return sorted(weighted, key=written)


def _with_edges(g: nx.DiGraph, edges: list[tuple[str, str]]) -> nx.DiGraph:
    h = g.copy()
    for u, v in edges:
        h.add_edge(u, v, span=g.nodes[v]["span"])
    return h


def _records(g: nx.DiGraph, order: list[str] | None = None) -> list[Node]:
    """The node records of an inferred structural graph, in its deterministic topological ``order`` (found if None)."""
    records = []
    nodes = g.nodes
    for node in topological_order(g) if order is None else order:
        data = nodes[node]
        shape = tuple(data["args"]["shape"]) if data["op"] == "input" else data["shape"]
        records.append(
            Node(
                path=node,
                op=data["op"],
                args=data["args"],
                inputs=tuple(data["inputs"]),
                shape=shape,
                input_shapes=data.get("input_shapes", ()),
                params=data.get("params", 0),
                macs=data.get("macs", 0),
                groups=tuple(data["groups"]),
                span=data["span"],
                label_span=data.get("label_span"),
                role=data.get("role"),
                tie=data.get("tie"),
            )
        )
    return records


def check_size(g: nx.DiGraph) -> list[ArchError]:
    """A network too large to allocate is an error before any weight is (E326)."""
    most = current_limits().max_params
    if g.graph["total_params"] <= most:
        return []
    largest = max(g.nodes, key=lambda n: g.nodes[n]["params"])
    message = f"the network has {g.graph['total_params']:,} parameters, more than the limit of {most:,}"
    hint = f"`{largest}` alone has {g.nodes[largest]['params']:,}; raise the limit with archdsl.Limits(max_params=...)"
    return [ArchLimitError(message, g.nodes[largest]["span"], hint, code="E326")]


def find_cycles(g: nx.DiGraph) -> list[ArchError]:
    """One error per strongly connected component that loops, naming its edges and their lines."""
    errors: list[ArchError] = []
    index = {n: i for i, n in enumerate(g.nodes)}
    components = sorted(
        (
            sorted(c, key=index.__getitem__)
            for c in nx.strongly_connected_components(g)
            if len(c) > 1 or g.has_edge(next(iter(c)), next(iter(c)))
        ),
        key=lambda c: index[c[0]],
    )
    for component in components:
        cycle = nx.find_cycle(g.subgraph(component), source=component[0])
        path = " -> ".join([cycle[0][0], *(v for _, v in cycle)])
        labels = tuple(Label(g.edges[u, v]["span"], f"edge `{u}` -> `{v}` is made") for u, v in cycle)
        errors.append(
            ArchGraphError(
                f"the graph has a cycle: {path}",
                g.edges[cycle[0]]["span"],
                "data must flow one way; a merge may only take nodes defined upstream of it",
                code="E501",
                labels=labels,
            )
        )
    return errors


def topological_order(g: nx.DiGraph, extra_edges: list[tuple[str, str]] = ()) -> list[str]:
    """A deterministic topological order: ties broken by creation order (raises NetworkXUnfeasible on a cycle).

    The order of ``nx.lexicographical_topological_sort`` keyed by creation
    order, worked out on integers: several times faster on big graphs.
    """
    nodes = list(g.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    successors: list[list[int]] = [[] for _ in nodes]
    waiting = [0] * len(nodes)  # predecessors not yet placed
    for source, target in itertools.chain(g.edges, extra_edges):
        successors[index[source]].append(index[target])
        waiting[index[target]] += 1
    ready = [i for i, count in enumerate(waiting) if count == 0]  # increasing, so already a heap
    order: list[str] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for j in successors[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) < len(nodes):
        raise nx.NetworkXUnfeasible("the graph has a cycle")
    return order


def check_reachability(g: nx.DiGraph) -> list[ArchError]:
    """Nodes that no input reaches, and nodes whose result never reaches an output."""
    errors: list[ArchError] = []
    inputs = g.graph.get("inputs", [])
    outputs = [*g.graph.get("outputs", []), *g.graph.get("training_outputs", [])]
    fed = set(inputs).union(*(nx.descendants(g, i) for i in inputs)) if inputs else set()
    # A parameter is a source too; whatever reads one also reads an activation (E409), so only it is added.
    fed.update(n for n, data in g.nodes(data=True) if lookup(data["op"]).learned)
    used = set(outputs).union(*(nx.ancestors(g, o) for o in outputs)) if outputs else set()
    for node, data in g.nodes(data=True):
        if node not in fed:
            errors.append(
                ArchGraphError(
                    f"`{node}` does not depend on any input",
                    data["span"],
                    code="E502",
                )
            )
        elif node not in used:
            errors.append(
                ArchGraphError(
                    f"`{node}` is computed but never reaches the output",
                    data["span"],
                    "feed it into a later node, list it in `output`, or remove it",
                    code="E503",
                )
            )
    return errors


# Attributes of every GraphModule (class and instance): a submodule may not shadow them.
_MODULE_ATTRIBUTES = set(dir(fx.GraphModule)) | set(vars(nn.Module())) | {"graph", "code", "meta"}


def check_module_paths(g: nx.DiGraph) -> list[ArchError]:
    """Paths that cannot become submodules: ``x`` above ``x.y``, or names PyTorch modules already use."""
    errors: list[ArchError] = []
    stateful = {n for n, d in g.nodes(data=True) if lookup(d["op"]).stateful}
    for node in stateful:
        taken = [part for part in node.split(".") if part in _MODULE_ATTRIBUTES]
        if taken:
            data = g.nodes[node]
            errors.append(
                ArchGraphError(
                    f"`{node}` cannot be a module path: `{taken[0]}` is a name every PyTorch module already has",
                    data.get("label_span") or data["span"],
                    f"rename it, e.g. `{taken[0]}_`",
                    code="E230",
                )
            )
    for node in g.nodes:
        parts = node.split(".")
        for cut in range(1, len(parts)):
            parent = ".".join(parts[:cut])
            if parent in stateful:
                first, second = sorted((parent, node), key=lambda n: g.nodes[n]["span"])
                where = {n: g.nodes[n].get("label_span") or g.nodes[n]["span"] for n in (first, second)}
                errors.append(
                    ArchGraphError(
                        f"`{parent}` is both a node and the parent of `{node}`",
                        where[second],
                        f"`{first}` is defined at {where[first]}; a node cannot contain other nodes",
                        code="E228",
                    )
                )
                break
    return errors


def lint(g: nx.DiGraph) -> None:
    """Check the invariants of a finished graph; raises ArchGraphError (an internal bug) if one fails."""
    problems: list[str] = []
    order = list(g.nodes)
    position_of = {n: i for i, n in enumerate(order)}
    # Every edge going forward in node order is what makes the graph acyclic (and cheaper to check than a search).
    if any(position_of[source] >= position_of[target] for source, target in g.edges):
        problems.append("the graph has a cycle, or its nodes are not in topological order")
    required = ("args", "shape", "params", "macs", "span", "groups", "path")
    required_set = set(required)
    for node, data in g.nodes(data=True):
        spec = lookup(data.get("op", ""))
        if spec is None:
            problems.append(f"node `{node}` has the unknown op `{data.get('op')}`")
            continue
        if not data.keys() >= required_set:
            problems.extend(f"node `{node}` lacks the attribute `{key}`" for key in required if key not in data)
        shape = data.get("shape", ())
        if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            problems.append(f"node `{node}` has the invalid shape {shape!r}")
        if not (node.isidentifier() or not any(module_name_problem(p) for p in node.split("."))):
            problems.append(f"node `{node}` is not a valid module path")
        inputs = data.get("inputs", ())
        in_edges = g.pred[node]
        if set(inputs) != in_edges.keys():
            problems.append(f"the inputs of `{node}` ({list(inputs)}) are not its in-edges")
        if len(inputs) < spec.min_inputs or (spec.max_inputs is not None and len(inputs) > spec.max_inputs):
            problems.append(f"`{node}` ({spec.name}) has {len(inputs)} inputs")
        for position, src in enumerate(inputs):
            d = in_edges.get(src, {})
            if d.get("kind") not in EDGE_KINDS:
                problems.append(f"edge `{src}` -> `{node}` has the kind {d.get('kind')!r}")
            if inputs.index(src) == position and d.get("position") != position:
                problems.append(f"edge `{src}` -> `{node}` has position {d.get('position')}, not {position}")
            if position_of.get(src, len(order)) >= position_of[node]:
                problems.append(f"`{src}` comes after its consumer `{node}` in node order")
    if problems:
        raise ArchGraphError(
            "internal error: the graph breaks its invariants: " + "; ".join(problems[:10]),
            None,
            "this is a bug in archdsl; please report it with the .arch file",
            code="E590",
        )
