"""The validated node record and the ``networkx`` view built from it.

As in ``torch.fx.Node``, a node's inputs are one ordered tuple (the same
source may appear twice, ``add(a, a)``), typed fields sit beside each other
in one frozen record, and the edges of the graph are derived from the inputs.
:func:`to_networkx` turns a network's records into the ``networkx.DiGraph``
that :func:`archdsl.graph` returns: one node per record with the record's
fields as attributes, and one edge per (source, consumer) pair carrying the
kind and position of that source's first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import networkx as nx

from archdsl.errors import Span
from archdsl.frames import Group

Shape = tuple[int, ...]
EDGE_KINDS = ("flow", "skip", "concat", "gate", "size")  # size: an op reads only the shape (`like=`)


@dataclass(frozen=True)
class Input:
    """One input of a node: where it comes from, how it is drawn (its edge kind) and what made it."""

    source: str
    kind: str  # one of EDGE_KINDS
    span: Span


@dataclass(frozen=True)
class Node:
    """One node of a validated network: its op, resolved arguments, ordered inputs, shape and counts."""

    path: str  # module path, also the node id and the state_dict prefix
    op: str
    args: Mapping[str, Any]
    inputs: tuple[Input, ...]
    shape: Shape  # batch dimension excluded
    input_shapes: tuple[Shape, ...]
    params: int
    macs: int
    groups: tuple[Group, ...]  # stages and blocks it belongs to, outermost first
    span: Span
    label_span: Span | None = None
    role: str | None = None  # "shortcut" (made by a skip policy), "dense" (a dense stage's concat)
    tie: str | None = None  # the node whose weight this one uses (`tie=wte`)

    @property
    def sources(self) -> tuple[str, ...]:
        """The input node paths, in order (a node used twice appears twice)."""
        return tuple(i.source for i in self.inputs)


# Attributes of a networkx node: the record's fields, with ``inputs`` as a tuple of source paths.
NODE_ATTRS = tuple(f.name for f in fields(Node))


def to_networkx(
    nodes: Iterable[Node], graph_attrs: Mapping[str, Any], cls: type[nx.DiGraph] = nx.DiGraph
) -> nx.DiGraph:
    """The ``networkx`` view of ``nodes`` (given in topological order) with ``graph_attrs`` as ``g.graph``."""
    g = cls()
    g.graph.update(graph_attrs)
    records = list(nodes)
    # In bulk, then each attribute dict filled from the record's own __dict__: big graphs are built fastest so.
    g.add_nodes_from(node.path for node in records)
    attributes = g.nodes
    for node in records:
        attributes[node.path].update(vars(node), inputs=node.sources, record=node)
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    for node in records:
        for position, item in enumerate(node.inputs):
            if (item.source, node.path) not in edges:  # an edge records a source's first use
                edges[item.source, node.path] = {"kind": item.kind, "position": position, "span": item.span}
    g.add_edges_from((source, target, attrs) for (source, target), attrs in edges.items())
    g.graph["total_params"] = sum(n.params for n in records)
    g.graph["total_macs"] = sum(n.macs for n in records)
    return g


def record(g: nx.DiGraph, path: str) -> Node:
    """The :class:`Node` record behind node ``path`` of a validated graph."""
    return g.nodes[path]["record"]


def title_of(g: nx.DiGraph) -> str:
    """The first line of a network's docstring, or its name."""
    lines = (g.graph.get("doc") or "").strip().splitlines()
    return lines[0].strip() if lines else g.graph["name"]
