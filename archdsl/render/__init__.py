"""Stage 5: connection diagrams. Fold the graph to a level of detail, emit DOT, run Graphviz."""

from __future__ import annotations

import os
from typing import Any

import networkx as nx

from archdsl.outputs import input_files
from archdsl.pipeline import graph_of_source
from archdsl.render.dot import ArchRenderError, run_dot, to_dot, write
from archdsl.render.view import LEVELS, View, fold

__all__ = ["LEVELS", "ArchRenderError", "View", "fold", "render", "render_dot", "run_dot", "write"]

DRAWING_OPTIONS = ("level", "expand", "rankdir", "clusters", "legend", "dense_bus")


def render_dot(
    graph_or_source: nx.DiGraph | str | os.PathLike[str],
    *,
    level: str = "block",
    expand: tuple[str, ...] | list[str] = (),
    rankdir: str = "TB",
    clusters: bool = True,
    legend: bool = True,
    dense_bus: bool = True,
    **overrides: Any,
) -> str:
    """DOT text of a network's connection diagram.

    ``level`` is "block" (the default: blocks folded, identical repeats shown
    once as ``x N``), "stage" or "layer"; ``expand`` opens chosen stages or
    blocks by path; ``rankdir`` is "TB" or "LR"; ``dense_bus=False`` draws
    every concatenation edge of dense blocks instead of the feature bus.
    """
    g = graph_of_source(graph_or_source, **overrides)
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ArchRenderError(f"rankdir must be TB, LR, BT or RL, got `{rankdir}`", None)
    if level not in LEVELS:
        raise ArchRenderError(f"unknown level `{level}`", None, "use " + ", ".join(LEVELS))
    view = fold(g, level, tuple(expand), dense_bus=dense_bus)
    return to_dot(g, view, rankdir=rankdir, clusters=clusters, legend=legend)


def render(
    graph_or_source: nx.DiGraph | str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    **options: Any,
) -> str:
    """Render a diagram; write it to ``output`` (format from the suffix) when given. Returns the DOT text.

    ``options`` are :func:`render_dot`'s; the others are network parameters.
    ``output`` may not be one of the network's source files.
    """
    drawing = {name: value for name, value in options.items() if name in DRAWING_OPTIONS}
    overrides = {name: value for name, value in options.items() if name not in DRAWING_OPTIONS}
    g = graph_of_source(graph_or_source, **overrides)
    source = render_dot(g, **drawing)
    if output is not None:
        write(source, output, input_files(g.graph))
    return source
