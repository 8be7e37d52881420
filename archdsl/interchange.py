"""The validated graph in formats other tools read: NetworkX node-link JSON and GraphML."""

from __future__ import annotations

import io
from typing import Any

import networkx as nx

from archdsl.expr import show


def _plain_node(data: dict[str, Any]) -> dict[str, Any]:
    span = data["span"]
    return {
        "op": data["op"],
        "args": {k: _plain(v) for k, v in data["args"].items()},
        "inputs": list(data["inputs"]),
        "shape": list(data["shape"]),
        "params": data["params"],
        "macs": data["macs"],
        "role": data["role"],
        "groups": [{"path": g.path, "kind": g.kind, "name": g.name, "repeat": g.repeat} for g in data["groups"]],
        "source": {"file": span.file, "line": span.line, "column": span.column},
    }


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def to_node_link(g: nx.DiGraph) -> dict[str, Any]:
    """A JSON-ready node-link dict (``networkx.node_link_data`` layout) with plain attribute values."""
    plain = nx.DiGraph()
    for key in ("name", "doc", "inputs", "outputs", "total_params", "total_macs"):
        plain.graph[key] = g.graph.get(key)
    plain.graph["params"] = {k: _plain(v) for k, v in g.graph.get("params", {}).items()}
    for node, data in g.nodes(data=True):
        plain.add_node(node, **_plain_node(data))
    for u, v, data in g.edges(data=True):
        plain.add_edge(u, v, kind=data["kind"], position=data["position"])
    return nx.node_link_data(plain, edges="edges")


def to_graphml(g: nx.DiGraph) -> str:
    """GraphML text; list and dict attributes are written in the language's notation."""
    flat = nx.DiGraph()
    flat.graph.update(name=g.graph["name"], total_params=g.graph["total_params"], total_macs=g.graph["total_macs"])
    for node, data in g.nodes(data=True):
        plain = _plain_node(data)
        flat.add_node(
            node,
            op=plain["op"],
            inputs=", ".join(plain["inputs"]),
            args=", ".join(f"{k}={show(v)}" for k, v in data["args"].items()),
            shape="x".join(map(str, plain["shape"])),
            params=plain["params"],
            macs=plain["macs"],
            role=plain["role"] or "",
            group=data["groups"][-1].path if data["groups"] else "",
            source=f"{plain['source']['file']}:{plain['source']['line']}",
        )
    for u, v, data in g.edges(data=True):
        flat.add_edge(u, v, kind=data["kind"], position=data["position"])
    buffer = io.BytesIO()
    nx.write_graphml(flat, buffer)
    return buffer.getvalue().decode("utf-8")
