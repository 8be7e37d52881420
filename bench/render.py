"""Render time per zoo network and level of detail.

For every zoo file and level (stage, block, layer) it measures, as the median
of REPEATS runs: building the validated graph, folding it and writing DOT,
and Graphviz's `dot -Tsvg` layout. Targets (2-core CPU): the default view of
any zoo network under 1 s, the layer view of densenet201 under 10 s, resnet152
under 5 s. Writes bench/results/render.json and prints a Markdown table.

    python -m bench render
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import archdsl
from archdsl.render import LEVELS, fold, render_dot, run_dot

REPEATS = 3
RESULTS = Path(__file__).parent / "results" / "render.json"


def _median_time(action) -> tuple[float, object]:
    times, result = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(name: str, level: str) -> dict:
    """Seconds for graph, DOT and layout of one network at one level."""
    build, g = _median_time(lambda: archdsl.graph(name))
    emit, dot = _median_time(lambda: render_dot(g, level=level))
    layout, _ = _median_time(lambda: run_dot(dot, "svg"))
    return {
        "network": name,
        "level": level,
        "nodes": g.number_of_nodes(),
        "graph_s": round(build, 4),
        "dot_s": round(emit, 4),
        "layout_s": round(layout, 4),
        "total_s": round(build + emit + layout, 4),
    }


NAIVE_TIMEOUT_S = 120


def naive_dense(name: str) -> dict:
    """The layer view of a DenseNet with every concat edge drawn (no bus), as other tools draw it."""
    import subprocess

    g = archdsl.graph(name)
    dot = render_dot(g, level="layer", dense_bus=False)
    edges = len(fold(g, "layer", dense_bus=False).edges)
    start = time.perf_counter()
    try:
        subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, timeout=NAIVE_TIMEOUT_S, check=True)
        seconds = round(time.perf_counter() - start, 2)
    except subprocess.TimeoutExpired:
        seconds = None
    return {"network": name, "edges_drawn": edges, "layout_s": seconds}


def main() -> None:
    """Measure everything, write the JSON, print the table."""
    rows = [measure(name, level) for name in archdsl.zoo_names() for level in LEVELS]
    naive = naive_dense("densenet121")
    bus_edges = len(fold(archdsl.graph("densenet121"), "layer").edges)
    machine = {"python": platform.python_version(), "machine": platform.machine(), "cpus": _cpus()}
    RESULTS.parent.mkdir(exist_ok=True)
    payload = {"machine": machine, "repeats": REPEATS, "rows": rows, "naive_densenet121": naive}
    RESULTS.write_text(json.dumps(payload, indent=1) + "\n")
    print("| network | level | graph nodes | graph (s) | DOT (s) | dot layout (s) | total (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['network']} | {r['level']} | {r['nodes']} | {r['graph_s']:.3f} | {r['dot_s']:.3f} "
            f"| {r['layout_s']:.3f} | {r['total_s']:.3f} |"
        )
    worst_default = max((r for r in rows if r["level"] == "block"), key=lambda r: r["total_s"])
    print(f"\nslowest default view: {worst_default['network']} {worst_default['total_s']:.2f} s")
    for name in ("densenet201", "resnet152"):
        row = next(r for r in rows if r["network"] == name and r["level"] == "layer")
        print(f"{name} layer view: {row['total_s']:.2f} s")
    taken = f"{naive['layout_s']} s" if naive["layout_s"] is not None else f"over {NAIVE_TIMEOUT_S} s (stopped)"
    print(
        f"densenet121 layer view with every concat edge ({naive['edges_drawn']} edges): dot layout {taken}; "
        f"with the feature bus ({bus_edges} edges): see the table"
    )


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    main()
