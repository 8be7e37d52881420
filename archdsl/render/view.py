"""What a diagram shows: the graph folded to a level of detail.

A *unit* is one box of the diagram: a single layer, a block instance, a run
of identical repeats of a stage (``x N``), or a whole stage. Edges between
units keep their kind; edges inside a folded unit become annotations.

Dense stages are drawn as a *feature bus*: each concatenation point takes the
previous one and the newest layer's output (concatenation is associative), so
a block of L layers needs 2L edges instead of L(L+1)/2.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import networkx as nx

from archdsl.frames import Group

LEVELS = ("stage", "block", "layer")


@dataclass
class Unit:
    """One box of the diagram."""

    id: str
    kind: str  # "layer", "block", "run" or "stage"
    nodes: list[str]
    group: Group | None = None
    count: int = 1  # repeats folded into a run
    first_repeat: str = ""
    last_repeat: str = ""
    clusters: tuple[Group, ...] = ()  # enclosing groups shown as clusters, outermost first
    internal: Counter = field(default_factory=Counter)  # edge kinds folded inside


@dataclass(frozen=True)
class Edge:
    """An edge between two units."""

    source: str
    target: str
    kind: str
    channels: int | None = None  # for concat edges: the channels carried
    uses: int = 1  # how many inputs of one consumer the same source fills (`add(a, a)`: 2)


@dataclass
class View:
    """Units in topological order and the edges between them."""

    units: list[Unit]
    edges: list[Edge]
    unit_of: dict[str, str]


def fold(g: nx.DiGraph, level: str = "block", expand: tuple[str, ...] = (), dense_bus: bool = True) -> View:
    """Fold ``g`` to ``level`` ("stage", "block" or "layer"), keeping ``expand`` ed groups open.

    ``dense_bus=False`` draws every concatenation edge of dense stages (L(L+1)/2 per block).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    opened = set(expand)
    key_of: dict[str, str] = {}
    group_of: dict[str, Group] = {}
    for node, data in g.nodes(data=True):
        group = _folding_group(data["groups"], level, opened)
        key_of[node] = group.path if group else node
        if group:
            group_of[group.path] = group
    runs = _runs(g, key_of, group_of, level, opened)
    for node, data in g.nodes(data=True):
        # a dense stage's concatenation feeding repeat R folds with R when R is folded into a run
        owner = node[: -len(".in")]
        if data["role"] == "dense" and node.endswith(".in") and owner in runs:
            key_of[node] = owner
    units: dict[str, Unit] = {}
    for node, data in g.nodes(data=True):
        key = runs.get(key_of[node], key_of[node])
        unit = units.get(key)
        if unit is None:
            group = group_of.get(key_of[node])
            kind = "layer" if group is None else ("stage" if group.kind == "stage" else "block")
            enclosing = tuple(grp for grp in data["groups"] if group is None or len(grp.path) < len(group.path))
            unit = units[key] = Unit(key, kind, [], group, clusters=enclosing)
        unit.nodes.append(node)
    for run_key, members in _run_members(runs).items():
        unit = units[run_key]
        unit.kind, unit.count = "run", len(members)
        unit.first_repeat, unit.last_repeat = members[0], members[-1]
    unit_of = {node: key for key, unit in units.items() for node in unit.nodes}
    edges: dict[tuple[str, str, str], Edge] = {}
    uses: Counter = Counter()  # (source node, consumer node, kind): a node that feeds one merge twice
    for source, target, kind in _display_edges(g) if dense_bus else _all_edges(g):
        a, b = unit_of[source], unit_of[target]
        if a == b:
            units[a].internal[kind] += 1
            continue
        uses[source, target, kind] += 1
        channels = _joined_size(g, source, target) if kind == "concat" else None
        edge = edges.setdefault((a, b, kind), Edge(a, b, kind, channels))
        if uses[source, target, kind] > edge.uses:
            edges[a, b, kind] = replace(edge, uses=uses[source, target, kind])
    return View(list(units.values()), list(edges.values()), unit_of)


def _folding_group(groups: tuple[Group, ...], level: str, opened: set[str]) -> Group | None:
    if level == "layer":
        return None
    for group in groups:
        if group.path in opened:
            continue
        if level == "stage" or group.kind == "block":
            return group
    return None


def _runs(g: nx.DiGraph, key_of, group_of, level: str, opened: set[str]) -> dict[str, str]:
    """Map repeat-unit keys to run keys, for consecutive identical repeats of a stage."""
    if level != "block":
        return {}
    members: dict[str, list[str]] = {}
    for node, data in g.nodes(data=True):
        key = key_of[node]
        group = group_of.get(key)
        if group is None or group.repeat is None:
            continue
        stage = next((grp for grp in data["groups"] if grp.kind == "stage" and key.startswith(grp.path + ".")), None)
        if stage is None or stage.path in opened:
            continue
        members.setdefault(key, []).append(node)
    signatures = {key: _signature(g, group_of[key], nodes) for key, nodes in members.items()}
    runs: dict[str, str] = {}
    previous: tuple[str, object] | None = None
    run_key = ""
    for key in members:  # repeats in node order
        stage_path = key.rsplit(".", 1)[0]
        current = (stage_path, signatures[key])
        if previous != current:
            run_key = f"{key}+"
        runs[key] = run_key
        previous = current
    # a run of one repeat is just that block
    counts = Counter(runs.values())
    return {key: run for key, run in runs.items() if counts[run] > 1}


def _run_members(runs: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, run in runs.items():
        out.setdefault(run, []).append(key)
    return out


def _signature(g: nx.DiGraph, group: Group, nodes: list[str]) -> tuple:
    """What makes two repeats "identical": the same block, arguments and layers (shapes aside)."""
    key = group.path
    layers = tuple(
        (node[len(key) :], g.nodes[node]["op"], tuple(sorted(g.nodes[node]["args"].items())))
        for node in nodes
        if node.startswith(key + ".") and g.nodes[node]["role"] != "dense"
    )
    return (group.name, group.args, layers)


def _joined_size(g: nx.DiGraph, source: str, target: str) -> int:
    """How much a concat's input adds along the dim it joins (channels by default), as its edge is labelled."""
    record = g.nodes[target]["record"]
    shape = g.nodes[source]["shape"]
    if record.op != "concat" or source not in record.sources:  # a dense stage's bus joins channels
        return shape[0]
    shape = record.input_shapes[record.sources.index(source)]  # a parameter as the concat sees it
    return shape[record.args["dim"]]


def _all_edges(g: nx.DiGraph):
    """Every input of every node, in order (a node used twice gives two edges), and every weight tie."""
    for node, data in g.nodes(data=True):
        for item in data["record"].inputs:
            yield item.source, node, item.kind
        if data.get("tie") is not None:
            yield data["tie"], node, "tie"


def _display_edges(g: nx.DiGraph):
    """Graph edges as drawn: dense concatenations become a bus (previous point + newest output); weight ties too."""
    bus_by_inputs: dict[tuple[str, ...], str] = {}
    for node, data in g.nodes(data=True):
        inputs = tuple(data["inputs"])
        if data["role"] == "dense" and len(inputs) > 2:
            previous = bus_by_inputs.get(inputs[:-1])
            if previous is not None:
                bus_by_inputs[inputs] = node
                yield previous, node, "concat"
                yield inputs[-1], node, "concat"
                continue
        if data["role"] == "dense":
            bus_by_inputs[inputs] = node
        for item in data["record"].inputs:
            yield item.source, node, item.kind
        if data.get("tie") is not None:
            yield data["tie"], node, "tie"
