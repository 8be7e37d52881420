"""Long files: a 100,000-line file through ``archdsl.graph`` stage by stage, and a file of 20,000 errors.

Targets (issue 13), on a 2-core CPU:
- ``archdsl.graph`` of a 100,000-line file (one layer statement a line, the
  file of tests/test_big_graphs.py) in under 5 s; it took 14 s;
- a file of 20,000 error lines reported (the first 100 diagnostics and a
  count of the rest) in a couple of seconds; it took 35 s.

Stages: parse (read the file into the typed AST), elaborate, validate (shape
inference, records, the networkx graph, reachability, lint); ``graph`` is the
whole ``archdsl.graph`` call, one collection of the garbage collector
included, measured in a fresh interpreter as ``archdsl check`` runs it (the
stages run in this one). Each figure is the median of ``--reps`` runs, in CPU seconds
(process time, which a busy machine inflates less than wall time) and in
wall seconds; the load average at the start is recorded with them.

    python -m bench.parse_speed [--reps 3] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import archdsl
from archdsl.elaborate import elaborate
from archdsl.pipeline import gc_paused, load_source
from archdsl.validate import validate
from bench.timing import parse, print_table, write_results

LINES = 100_000
ERROR_LINES = 20_000
TARGET_S = 5.0


def long_file(lines: int) -> str:
    """A valid file of exactly ``lines`` lines: a network with one layer statement a line."""
    head = "# A network written out longhand: one layer statement a line.\nnetwork long_file {\n    input x: [4]\n"
    body = "".join("    fc: linear(4)\n" if i == 0 else "    relu\n" for i in range(lines - 5))
    return head + body + "    out: linear(2)\n}\n"


def error_file(lines: int) -> str:
    """A file of ``lines`` statements that are each an error (an unknown op, with a did-you-mean)."""
    return "network many_errors {\n    input x: [4]\n" + "    conv2(4)\n" * lines + "    fc: linear(2)\n}\n"


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """CPU seconds, wall seconds and the result of ``fn()``."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, result


GRAPH_ONCE = """
import json, sys, time
import archdsl
archdsl.graph("network warm_up {\\n    input x: [4]\\n    relu\\n}\\n")  # imports and the parsers' tables
cpu, wall = time.process_time(), time.perf_counter()
g = archdsl.graph(sys.argv[1])
print(json.dumps({"graph_cpu_s": time.process_time() - cpu, "graph_wall_s": time.perf_counter() - wall,
                  "nodes": g.number_of_nodes()}))
"""


def stages(path: Path) -> dict[str, float]:
    """CPU seconds of each stage for one build of ``path``; then ``archdsl.graph`` alone, in a fresh interpreter.

    The whole call runs as ``archdsl check`` runs it: once in its process,
    with no garbage of earlier builds around (whose collection it would pay).
    """
    times: dict[str, float] = {}
    gc.collect()
    with gc_paused():  # as archdsl.graph runs them
        times["parse_s"], _, program = timed(lambda: load_source(path))
        times["elaborate_s"], _, structure = timed(functools.partial(elaborate, program, None, {}))
        times["validate_s"], _, _ = timed(functools.partial(validate, structure))
    del program, structure
    gc.collect()
    once = subprocess.run([sys.executable, "-c", GRAPH_ONCE, str(path)], capture_output=True, text=True, check=True)
    times.update(json.loads(once.stdout.strip().splitlines()[-1]))
    return times


def errors(text: str) -> dict[str, float]:
    """CPU and wall seconds to build a file full of errors and render what is reported."""

    def report() -> archdsl.ArchError:
        try:
            archdsl.graph(text)
        except archdsl.ArchError as error:
            str(error)
            return error
        raise AssertionError("the file of errors built")

    cpu, wall, error = timed(report)
    return {"cpu_s": cpu, "wall_s": wall, "shown": len(error.diagnostics), "omitted": error.omitted}


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over the runs (rounded)."""
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}


def main(argv: list[str] | None = None) -> None:
    """Print the stage table and the targets, and write bench/results/parse_speed.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.parse_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, help="runs of each workload (default 3)")
    parser.add_argument("--quick", action="store_true", help="2 runs of a 20,000-line file: checks the script works")
    parser.set_defaults(device="cpu")
    args = parse(parser, argv)
    repeats = args.reps or 3
    lines = LINES // 5 if args.quick else LINES
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    archdsl.graph("network warm_up {\n    input x: [4]\n    relu\n}\n")  # the parsers' tables, imports
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "long_file.arch"
        path.write_text(long_file(lines), encoding="utf-8")
        long_runs = [stages(path) for _ in range(repeats)]
    error_runs = [errors(error_file(ERROR_LINES)) for _ in range(repeats)]
    long, many = median(long_runs), median(error_runs)
    columns = ["file", "nodes", "parse (s)", "elaborate (s)", "validate (s)", "graph CPU (s)", "graph wall (s)"]
    row = [f"{lines:,} lines", int(long["nodes"]), long["parse_s"], long["elaborate_s"], long["validate_s"]]
    row += [long["graph_cpu_s"], long["graph_wall_s"]]
    print_table("archdsl.graph of a long file (median seconds)", columns, [row])
    targets = {f"{lines:,}-line file: archdsl.graph, CPU (s)": (long["graph_cpu_s"], f"< {TARGET_S:g}")}
    targets[f"{ERROR_LINES:,} error lines: graph and render, CPU (s)"] = (many["cpu_s"], "a couple of seconds")
    print_table("Targets", ["target ", "measured", "bound"], [[k, v, b] for k, (v, b) in targets.items()])
    print(f"load average at the start: {load}; errors shown {many['shown']:.0f}, counted {many['omitted']:.0f}")
    payload = {
        "repeats": repeats,
        "lines": lines,
        "load_average_1min": load,
        "long_file": long,
        "long_file_runs": long_runs,
        "many_errors": many,
        "many_errors_runs": error_runs,
        "targets": {k: {"measured": v, "bound": b} for k, (v, b) in targets.items()},
    }
    write_results("parse_speed", args, payload)


if __name__ == "__main__":
    main()
