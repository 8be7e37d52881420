"""The compiler's own cost, stage by stage, and how it scales with network size.

Targets (issue 7), on a 2-core CPU:
- ``archdsl.load("resnet152")`` takes no longer than constructing torchvision's
  resnet152 plus ``torch.fx.symbolic_trace`` of it, measured alternately in one run;
- the cost per node of CIFAR ResNet-1202 is at most 1.5x that of ResNet-110;
- a generated 10,000-layer network (CIFAR ResNet-10004: 35,016 nodes) builds
  and validates in under 10 s.

Stages: parse (read the file and its imports), elaborate (expand stages and
blocks into the structural graph), validate (cycles, shape inference,
reachability, lint), compile (building the GraphModule and its submodules),
init (weight initialisation, measured by re-running every layer's
``reset_parameters()`` and subtracted from compile). Each figure is the
median of ``--reps`` builds.

    python -m bench.compiler [--reps 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import archdsl
from archdsl.compile import compile_graph
from archdsl.elaborate import elaborate
from archdsl.pipeline import gc_paused, load_source
from archdsl.validate import validate
from bench.timing import parse, print_table, write_results

NETWORKS = [
    ("cifar_resnet", {"depth": 20}, "ResNet-20"),
    ("cifar_resnet", {"depth": 110}, "ResNet-110"),
    ("cifar_resnet", {"depth": 1202}, "ResNet-1202"),
    ("cifar_densenet_bc", {"depth": 100, "growth": 12}, "DenseNet-BC-100"),
    ("cifar_densenet_bc", {"depth": 250, "growth": 24}, "DenseNet-BC-250"),
    ("resnet152", {}, "resnet152"),
    ("densenet201", {}, "densenet201"),
    ("cifar_resnet", {"depth": 10004, "width": 4}, "ResNet-10004 (10,000 layers)"),
]
STAGES = ("parse", "elaborate", "validate", "compile", "init")


def time_stages(name: str, overrides: dict) -> tuple[dict[str, float], int]:
    """Seconds per stage for one build of ``name``, and its number of nodes."""
    times: dict[str, float] = {}
    began = time.perf_counter()
    program = load_source(name)
    times["parse"] = time.perf_counter() - began
    with gc_paused():  # as archdsl.graph does
        began = time.perf_counter()
        structure = elaborate(program, None, overrides)
        times["elaborate"] = time.perf_counter() - began
        began = time.perf_counter()
        g = validate(structure)
        times["validate"] = time.perf_counter() - began
        began = time.perf_counter()
        module = compile_graph(g)
        total = time.perf_counter() - began
        began = time.perf_counter()
        with torch.no_grad():
            for leaf in module.modules():
                if hasattr(leaf, "reset_parameters"):
                    leaf.reset_parameters()
        times["init"] = time.perf_counter() - began
        times["compile"] = max(0.0, total - times["init"])
    return times, g.number_of_nodes()


def stage_table(repeats: int, networks) -> list[dict]:
    """The per-stage medians for each network."""
    time_stages("cifar_resnet", {})  # warm-up: imports, the parser's tables, torch's first allocations
    rows = []
    for name, overrides, label in networks:
        runs = [time_stages(name, overrides) for _ in range(repeats)]
        nodes = runs[0][1]
        median = {stage: statistics.median(r[0][stage] for r in runs) for stage in STAGES}
        build = median["parse"] + median["elaborate"] + median["validate"]
        rows.append(
            {
                "network": label,
                "nodes": nodes,
                **{f"{stage}_s": round(median[stage], 4) for stage in STAGES},
                "build_and_validate_s": round(build, 3),
                "us_per_node": round(1e6 * (median["elaborate"] + median["validate"]) / nodes, 1),
            }
        )
    return rows


def resnet152_against_torchvision(repeats: int) -> dict:
    """``archdsl.load("resnet152")`` against torchvision construction + symbolic_trace, alternating."""
    import torchvision

    ours, theirs = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        archdsl.load("resnet152")
        ours.append(time.perf_counter() - began)
        began = time.perf_counter()
        torch.fx.symbolic_trace(torchvision.models.resnet152())
        theirs.append(time.perf_counter() - began)
    ratios = sorted(a / b for a, b in zip(ours, theirs, strict=True))
    return {
        "archdsl_load_s": round(statistics.median(ours), 3),
        "torchvision_plus_trace_s": round(statistics.median(theirs), 3),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(ratios[0], 3),
        "ratio_max": round(ratios[-1], 3),
    }


def main(argv: list[str] | None = None) -> None:
    """Print the stage table and the targets, and write bench/results/compiler.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.compiler", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, help="builds per network (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 builds, without the 10,000-layer network")
    parser.set_defaults(device="cpu")
    args = parse(parser, argv)
    repeats = args.reps or 5
    networks = NETWORKS[:-1] if args.quick else NETWORKS
    rows = stage_table(repeats, networks)
    columns = ["network ", "nodes", *(f"{stage} (s)" for stage in STAGES), "build+validate (s)", "us/node"]
    print_table("Compiler stages (median seconds)", columns, [list(r.values()) for r in rows])
    versus = resnet152_against_torchvision(repeats)
    per_node = {r["network"]: r["us_per_node"] for r in rows}
    targets = {
        "resnet152: archdsl.load / (torchvision + symbolic_trace)": (versus["ratio_median"], "<= 1.0"),
        "cost per node, ResNet-1202 / ResNet-110": (
            round(per_node["ResNet-1202"] / per_node["ResNet-110"], 2),
            "<= 1.5",
        ),
    }
    if not args.quick:
        targets["10,000-layer network: parse + elaborate + validate (s)"] = (rows[-1]["build_and_validate_s"], "< 10")
    print_table("Targets", ["target ", "measured", "bound"], [[k, v, b] for k, (v, b) in targets.items()])
    print_table("resnet152 against torchvision", list(versus), [list(versus.values())])
    payload = {
        "repeats": repeats,
        "stages": rows,
        "resnet152_vs_torchvision": versus,
        "targets": {k: {"measured": v, "bound": b} for k, (v, b) in targets.items()},
    }
    write_results("compiler", args, payload)


if __name__ == "__main__":
    main()
