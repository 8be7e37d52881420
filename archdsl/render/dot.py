"""A folded :class:`View` -> Graphviz DOT, and DOT -> SVG/PNG/PDF files."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import graphviz
import networkx as nx

from archdsl.errors import ArchError
from archdsl.expr import show
from archdsl.node import title_of
from archdsl.ops import lookup
from archdsl.outputs import check_output, replacing
from archdsl.render.view import Edge, Unit, View

EDGE_STYLE = {
    "flow": {"color": "#444444", "penwidth": "1.2", "weight": "10"},
    "skip": {
        "color": "#d62728",
        "style": "dashed",
        "penwidth": "2",
        "weight": "0",
        "arrowhead": "empty",
        "tailport": "e",
        "headport": "e",
    },
    "concat": {"color": "#1f77b4", "penwidth": "2", "weight": "2", "arrowhead": "diamond"},
    "gate": {"color": "#2ca02c", "style": "dotted", "penwidth": "2", "weight": "0", "arrowhead": "odot"},
    "tie": {"color": "#9467bd", "style": "dashed", "penwidth": "1.5", "constraint": "false", "dir": "both"},
    "size": {"color": "#888888", "style": "dotted", "penwidth": "1.2", "weight": "0", "arrowhead": "odiamond"},
}
EDGE_MEANING = {
    "flow": "flow",
    "skip": "skip (summed)",
    "concat": "concat (channels joined)",
    "gate": "gate (multiplies)",
    "tie": "tied weights (one tensor)",
    "size": "size taken from (like=)",
}
# Folded boxes; a layer's box takes its op's `fill` from the registry.
FILL = {
    "block": "#fde9c9",
    "run": "#fcd9a5",
    "stage": "#f6c28b",
}
FORMATS = ("svg", "png", "pdf", "dot")


class ArchRenderError(ArchError):
    """A diagram cannot be written (Graphviz missing, unknown format)."""

    default_code = "E701"


def to_dot(g: nx.DiGraph, view: View, *, rankdir: str = "TB", clusters: bool = True, legend: bool = True) -> str:
    """DOT text for a folded view of ``g``; the same input always gives the same text."""
    dot = graphviz.Digraph(name=g.graph["name"], strict=False)
    title = _title(g)
    dot.attr(rankdir=rankdir, label=title, labelloc="t", fontname="Helvetica", fontsize="16", newrank="true")
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11", fillcolor="white")
    dot.attr("edge", fontname="Helvetica", fontsize="9", arrowsize="0.7")
    tree = _cluster_tree(view.units) if clusters else {(): [u for u in view.units]}
    _emit_clusters(dot, g, tree, ())
    for edge in view.edges:
        dot.edge(edge.source, edge.target, **_edge_attrs(edge))
    if legend:
        _legend(dot, view)
    return dot.source


def _title(g: nx.DiGraph) -> str:
    doc = title_of(g)
    totals = f"{g.graph['total_params']:,} parameters · {_si(g.graph['total_macs'])}MACs per input"
    return _escape(f"{doc}\n{totals}")


def _cluster_tree(units: list[Unit]) -> dict[tuple, list]:
    """Units grouped by their enclosing groups: {path-tuple: [units]} (a group shown only if it holds two boxes)."""
    counts: dict[str, int] = {}
    for unit in units:
        for group in unit.clusters:
            counts[group.path] = counts.get(group.path, 0) + 1
    tree: dict[tuple, list] = {}
    for unit in units:
        chain = tuple(group for group in unit.clusters if counts[group.path] > 1)
        tree.setdefault(chain, []).append(unit)
    return tree


def _emit_clusters(dot: graphviz.Digraph, g: nx.DiGraph, tree: dict[tuple, list], prefix: tuple) -> None:
    for unit in tree.get(prefix, []):
        dot.node(unit.id, **_node_attrs(g, unit, prefix[-1].path if prefix else ""))
    children: list[tuple] = []
    for chain in tree:
        if len(chain) == len(prefix) + 1 and chain[: len(prefix)] == prefix:
            children.append(chain)
        elif len(chain) > len(prefix) + 1 and chain[: len(prefix)] == prefix:
            child = chain[: len(prefix) + 1]
            if child not in children and child not in tree:
                children.append(child)
    for chain in children:
        group = chain[-1]
        with dot.subgraph(name="cluster_" + group.path) as sub:
            label = f"{group.path}: {group.name}" + (" (stage)" if group.kind == "stage" else "")
            sub.attr(label=_escape(label), style="rounded,dashed", color="#999999", fontsize="10", fontname="Helvetica")
            _emit_clusters(sub, g, tree, chain)


def _node_attrs(g: nx.DiGraph, unit: Unit, within: str) -> dict[str, str]:
    """Label, colour and tooltip of a box; names are shown relative to the cluster drawn around it."""
    last = unit.nodes[-1]
    shape = g.nodes[last]["shape"]
    params = sum(g.nodes[n]["params"] for n in unit.nodes)
    if unit.kind == "layer":
        data = g.nodes[last]
        spec = lookup(data["op"])
        lines = [_relative(unit.id, within), spec.describe(data["args"])]
        fill = spec.fill or "white"
        tooltip = _layer_tooltip(g, last)
    else:
        group = unit.group
        call = f"{group.name}({', '.join(f'{k}={v}' for k, v in group.args)})" if group.args else group.name
        if unit.kind == "run":
            first, last_name = unit.first_repeat.rsplit(".", 1)[1], unit.last_repeat.rsplit(".", 1)[1]
            stage = unit.first_repeat.rsplit(".", 1)[0]
            lines = [_relative(f"{stage}.{first}–{last_name}", within), f"{call}  × {unit.count}"]
        elif unit.kind == "stage":
            repeats = len({grp.path for n in unit.nodes for grp in g.nodes[n]["groups"] if grp.repeat is not None})
            lines = [_relative(unit.id, within), f"{group.name} × {repeats}" if repeats else call]
        else:
            lines = [_relative(unit.id, within), call]
        fill = FILL[unit.kind]
        tooltip = _group_tooltip(g, unit)
    lines.append(_shape_text(shape) + (f" · {_si(params)}params" if params else ""))
    specs = [(g.nodes[n], lookup(g.nodes[n]["op"])) for n in unit.nodes]
    merges = Counter(spec.name for _, spec in specs if spec.merge_note)
    shortcuts = Counter(spec.shortcut_kind for data, spec in specs if data["role"] == "shortcut" and spec.shortcut_kind)
    if merges and unit.kind != "layer":
        notes = [f"{lookup(op).merge_note} ×{n}" for op, n in sorted(merges.items())]
        notes += [f"{kind} shortcut ×{n}" for kind, n in sorted(shortcuts.items())]
        lines.append(", ".join(notes))
    return {"label": _escape("\n".join(lines)), "fillcolor": fill, "tooltip": _escape(tooltip)}


def _edge_attrs(edge: Edge) -> dict[str, str]:
    attrs = dict(EDGE_STYLE[edge.kind])
    if edge.kind == "concat" and edge.channels:
        attrs["label"] = f"{edge.channels}"
    if edge.uses > 1:  # one source filling several inputs of a merge: `add(a, a)`
        attrs["label"] = f"{attrs['label']} ×{edge.uses}" if "label" in attrs else f"×{edge.uses}"
    attrs["tooltip"] = EDGE_MEANING[edge.kind]
    return attrs


def _layer_tooltip(g: nx.DiGraph, node: str) -> str:
    data = g.nodes[node]
    shown = dict(data["args"])
    spec = lookup(data["op"])
    named = [a.name for a in (spec.args if spec else ()) if a.kind == "node" and shown.get(a.name)]
    if named:  # an argument that names a node is the node's last inputs: show their names (`like=enc3`)
        shown.update(zip(named, data["inputs"][-len(named) :], strict=True))
    args = ", ".join(f"{k}={v if k in named else _plain(v)}" for k, v in shown.items())
    return f"{data['op']}({args})\n{_source_line(g, data['span'])}"


def _group_tooltip(g: nx.DiGraph, unit: Unit) -> str:
    group = unit.group
    args = ", ".join(f"{k}={v}" for k, v in group.args)
    layers = f"{len(unit.nodes)} layers" + (f" in {unit.count} repeats" if unit.count > 1 else "")
    return f"{group.name}({args}): {layers}\n{_source_line(g, group.span)}"


def _source_line(g: nx.DiGraph, span) -> str:
    if span is None:
        return ""
    text = g.graph.get("sources", {}).get(span.file)
    line = text.split("\n")[span.line - 1].strip() if text and span.line <= text.count("\n") + 1 else ""
    return f"{span.file}:{span.line}: {line}"


def _legend(dot: graphviz.Digraph, view: View) -> None:
    kinds = [k for k in EDGE_STYLE if any(e.kind == k for e in view.edges)]
    if len(kinds) < 2:
        return
    with dot.subgraph(name="cluster_legend") as legend:
        legend.attr(label="edges", fontsize="10", style="rounded", color="#bbbbbb", fontname="Helvetica")
        for kind in kinds:
            a, b = f"legend_{kind}_a", f"legend_{kind}_b"
            legend.node(a, label="", shape="point", width="0.05", style="invis")
            legend.node(b, label=EDGE_MEANING[kind], shape="plaintext", style="", fontsize="9")
            legend.edge(a, b, **{k: v for k, v in EDGE_STYLE[kind].items() if k not in ("weight", "constraint")})


def _relative(name: str, within: str) -> str:
    return name[len(within) + 1 :] if within and name.startswith(within + ".") else name


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def _si(value: int) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix} "
    return f"{value} "


def _plain(value) -> str:
    if isinstance(value, tuple) and len(set(value)) == 1:
        return show(value[0])
    return show(value)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def write(dot_source: str, path: str | Path, inputs: Iterable[str] = ()) -> Path:
    """Write DOT text to ``path`` as the format its suffix names (svg, png, pdf or dot), atomically.

    ``path`` may not be one of ``inputs`` (the network's source files), a
    folder or a special file (:func:`archdsl.outputs.check_output`).
    """
    path = check_output(path, inputs)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ArchRenderError(
            f"cannot write `{path.name}`: unknown format `{fmt or '(none)'}`", None, "use .svg, .png, .pdf or .dot"
        )
    if not path.parent.is_dir():
        raise ArchRenderError(f"cannot write {path}: the folder {path.parent} does not exist", None)
    data = dot_source.encode("utf-8") if fmt == "dot" else run_dot(dot_source, fmt)
    try:
        with replacing(path) as stream:
            stream.write(data)
    except OSError as err:
        raise ArchRenderError(f"cannot write {path}: {err.strerror or err}", None) from None
    return path


def run_dot(dot_source: str, fmt: str) -> bytes:
    """Lay out DOT text with Graphviz's ``dot`` binary."""
    binary = shutil.which("dot")
    if binary is None:
        raise ArchRenderError(
            f"Graphviz's `dot` program is needed to write {fmt.upper()} files, and it is not installed",
            None,
            "install Graphviz (`sudo apt-get install graphviz`, `brew install graphviz` or `conda install graphviz`), "
            "or write a .dot file instead",
        )
    result = subprocess.run([binary, f"-T{fmt}"], input=dot_source.encode("utf-8"), capture_output=True, check=False)
    if result.returncode != 0:
        raise ArchRenderError(f"Graphviz failed: {result.stderr.decode(errors='replace').strip()}", None)
    return result.stdout
