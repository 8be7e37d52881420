"""Graph checks: cycles (before shapes), reachability and invariants (after).

:func:`lint` states what every finished graph guarantees; the compiler and
the renderer rely on it, so it runs before either sees a graph.
"""

from __future__ import annotations

import networkx as nx
from torch import fx, nn

from archdsl.errors import ArchError, ArchGraphError, Label
from archdsl.ops import lookup


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
    """A deterministic topological order: ties broken by creation order."""
    index = {n: i for i, n in enumerate(g.nodes)}
    deps = nx.DiGraph()
    deps.add_nodes_from(g.nodes)
    deps.add_edges_from(g.edges)
    deps.add_edges_from(extra_edges)
    return list(nx.lexicographical_topological_sort(deps, key=index.__getitem__))


def check_reachability(g: nx.DiGraph) -> list[ArchError]:
    """Nodes that no input reaches, and nodes whose result never reaches an output."""
    errors: list[ArchError] = []
    inputs = g.graph.get("inputs", [])
    outputs = g.graph.get("outputs", [])
    fed = set(inputs).union(*(nx.descendants(g, i) for i in inputs)) if inputs else set()
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
    stateful = {n for n, d in g.nodes(data=True) if (spec := lookup(d["op"])) is not None and spec.stateful}
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
    if not nx.is_directed_acyclic_graph(g):
        problems.append("the graph has a cycle")
    for node, data in g.nodes(data=True):
        spec = lookup(data.get("op", ""))
        if spec is None:
            problems.append(f"node `{node}` has the unknown op `{data.get('op')}`")
            continue
        for key in ("args", "shape", "params", "macs", "span", "groups", "path"):
            if key not in data:
                problems.append(f"node `{node}` lacks the attribute `{key}`")
        shape = data.get("shape", ())
        if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            problems.append(f"node `{node}` has the invalid shape {shape!r}")
        if not all(p.isidentifier() or p.isdigit() for p in node.split(".")):
            problems.append(f"node `{node}` is not a valid module path")
        edges = sorted(g.in_edges(node, data=True), key=lambda e: e[2]["position"])
        positions = [d["position"] for _, _, d in edges] + [p for _, _, d in edges for _, p in d.get("extra", ())]
        if sorted(positions) != list(range(len(positions))):
            problems.append(f"inputs of `{node}` have positions {sorted(positions)}, not 0..{len(positions) - 1}")
        if len(positions) < spec.min_inputs or (spec.max_inputs is not None and len(positions) > spec.max_inputs):
            problems.append(f"`{node}` ({spec.name}) has {len(positions)} inputs")
        for src, _, d in edges:
            if d.get("kind") not in ("flow", "skip", "concat", "gate"):
                problems.append(f"edge `{src}` -> `{node}` has the kind {d.get('kind')!r}")
            if position_of[src] >= position_of[node]:
                problems.append(f"`{src}` comes after its consumer `{node}` in node order")
    if problems:
        raise ArchGraphError(
            "internal error: the graph breaks its invariants: " + "; ".join(problems[:10]),
            None,
            "this is a bug in archdsl; please report it with the .arch file",
            code="E590",
        )
