"""DenseNet training memory and time: archdsl's memory-efficient dense blocks against torchvision's.

Target (issue 7, 2-core CPU): for densenet121 at batch 16, 224x224, one training step of
archdsl.load("densenet121", memory_efficient=True) needs at most the peak memory of torchvision's
densenet121(memory_efficient=True) (gradient checkpointing) and takes at most the time of
torchvision's densenet121(memory_efficient=False); and its memory grows linearly with block depth
where the plain concatenation's grows quadratically.

How memory is measured: every configuration runs in a fresh process (`--worker CONFIG`). On CPU,
the figure is the peak resident set size during the second training step minus the resident set
size just before it: Linux's VmHWM (/proc/self/status) after resetting it through
/proc/self/clear_refs (getrusage's ru_maxrss cannot be reset, and it keeps the parent process's
peak across fork and exec); where that is impossible, ru_maxrss over the first step. Workers run
with glibc's mmap threshold fixed (MALLOC_MMAP_THRESHOLD_), so that freed tensors leave the
resident set. On CUDA it is torch.cuda.max_memory_allocated during the second step minus the
memory allocated before it. Each worker also reports the median time of a few further steps, but
the time target is judged side by side in one process (archdsl memory-efficient against
torchvision plain, alternating, default allocator settings). The depth sweep runs archdsl's
cifar_densenet_bc (k=12) plain and memory-efficient at several depths, each in a fresh process,
and fits the exponent of memory growth against layers per block (1: linear, 2: quadratic).
Writes bench/results/dense_memory.json.

    python -m bench.dense_memory                     # about 4 minutes on an idle 2-core CPU
    python -m bench.dense_memory --networks densenet121 --batch 16 --steps 3
    python -m bench.dense_memory --networks depth_sweep --depths 40 100 160 250
    python -m bench.dense_memory --device cuda       # bf16 autocast, channels_last, allocator peak
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from bench import timing
from bench.timing import RATIO_COLUMNS, Network, prepare, ratio_cells

CHOICES = ["densenet121", "depth_sweep"]
CONFIGS = {
    "torchvision": "torchvision densenet121(memory_efficient=False)",
    "torchvision_me": "torchvision densenet121(memory_efficient=True)",
    "archdsl": 'archdsl.load("densenet121")',
    "archdsl_me": 'archdsl.load("densenet121", memory_efficient=True)',
}
MB = 2**20
# glibc otherwise raises its mmap threshold as blocks are freed and keeps freed memory resident, so
# that a second step would reuse the first step's memory without the resident size showing it.
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def network(zoo: str, batch: int, depth: int = 0) -> Network:
    """densenet121 at 224x224, or cifar_densenet_bc (k=12) of a given depth at 32x32."""
    if zoo == "densenet121":
        return Network("densenet121", "densenet121", batch=batch)
    return Network(f"cifar_densenet_bc-{depth}", "cifar_densenet_bc", {"depth": depth, "growth": 12}, batch, 32, 10)


def build(config: str, net: Network) -> nn.Module:
    """The model of one configuration, with seed-0 weights."""
    torch.manual_seed(0)
    if config.startswith("torchvision"):
        return net.reference(memory_efficient=config.endswith("_me"))
    return net.archdsl(memory_efficient=True) if config.endswith("_me") else net.archdsl()


def _status(field: str) -> int | None:
    """A memory figure of this process from /proc/self/status, in bytes (Linux); None elsewhere."""
    try:
        line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(field + ":"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024


def _rss_now() -> int:
    """Bytes resident now; where /proc is missing, the peak so far (the best getrusage offers)."""
    return _status("VmRSS") or _rss_peak()


def _rss_peak() -> int:
    """Peak resident bytes of this process: VmHWM on Linux, else ru_maxrss (KiB on Linux, bytes on macOS).

    ru_maxrss is not used on Linux because it keeps the parent's peak across fork and exec.
    """
    if (peak := _status("VmHWM")) is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _reset_peak() -> bool:
    """Set the peak resident size to the current one (Linux 4.0+); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure(config: str, net: Network, device: str, steps: int) -> dict:
    """Memory of one training step and median time of ``steps`` more, in this (fresh) process."""
    model = prepare(build(config, net), device)
    x, y = timing.batch(net, device)
    step = timing.train_step(model, x, y, device)
    if device == "cuda":
        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        if _reset_peak():  # a first step pays one-off costs (library pages, thread pools, optimizer state)
            step()
            _reset_peak()
        before = _rss_now()
        step()
        peak = _rss_peak()
    times = [timing.timed(step, device) for _ in range(steps)]
    return {
        "config": config,
        "network": net.label,
        "batch": net.batch,
        "before_bytes": before,
        "peak_bytes": peak,
        "step_growth_bytes": peak - before,
        "step_s": round(statistics.median(times), 4),
        "times_s": [round(t, 4) for t in times],
    }


def worker(config: str, net: Network, args: argparse.Namespace, steps: int) -> dict:
    """Run :func:`measure` for one configuration in a new Python process."""
    depth = str(net.overrides.get("depth", 0))
    options = ["--worker", config, "--worker-network", net.zoo, "--depth", depth, "--batch", str(net.batch)]
    options += ["--steps", str(steps), "--device", args.device]
    return timing.in_fresh_process("bench.dense_memory", options, env=FIXED_MMAP_THRESHOLD)


def densenet121(args: argparse.Namespace) -> dict:
    """Peak memory and step time of each configuration, then the alternating time comparison."""
    net = network("densenet121", 2 if args.quick else args.batch)
    configs = [c for c in CONFIGS if c != "archdsl_me" or timing.supports("memory_efficient")]
    workers = []
    for config in configs:
        with timing.progress(f"densenet121 {config}: fresh process, batch {net.batch}"):
            workers.append(worker(config, net, args, args.steps))
    contender = "archdsl_me" if "archdsl_me" in configs else "archdsl"
    with timing.progress(f"densenet121: {contender} against torchvision, alternating"):
        models = {name: prepare(build(name, net), args.device) for name in (contender, "torchvision")}
        x, y = timing.batch(net, args.device)
        steps = {name: timing.train_step(m, x, y, args.device) for name, m in models.items()}
        times = timing.alternate(steps, args.device, reps=args.reps, warmup=args.warmup, budget=args.budget)
    return {
        "batch": net.batch,
        "configs": CONFIGS,
        "workers": workers,
        "side_by_side": timing.summary(times, "torchvision"),
    }


def exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of log y against log x: 1 for linear growth, 2 for quadratic."""
    lx, ly = [math.log(v) for v in xs], [math.log(max(v, 1)) for v in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def depth_sweep(args: argparse.Namespace) -> dict:
    """Step memory of cifar_densenet_bc, plain and memory-efficient, against block depth."""
    depths = [40, 100] if args.quick else args.depths
    configs = [c for c in ("archdsl", "archdsl_me") if c == "archdsl" or timing.supports("memory_efficient")]
    rows = []
    for depth in depths:
        net = network("cifar_densenet_bc", 4 if args.quick else args.sweep_batch, depth)
        for config in configs:
            with timing.progress(f"{net.label} {config}: fresh process, batch {net.batch}"):
                rows.append(worker(config, net, args, steps=1) | {"layers_per_block": (depth - 4) // 6})
    fits = {}
    for config in configs:
        mine = [r for r in rows if r["config"] == config]
        fits[config] = round(exponent([r["layers_per_block"] for r in mine], [r["step_growth_bytes"] for r in mine]), 2)
    return {"growth": 12, "rows": rows, "growth_exponent": fits}


PARTS = {"densenet121": densenet121, "depth_sweep": depth_sweep}


def print_tables(results: dict, device: str) -> None:
    """The tables of the measured parts."""
    memory = "peak allocated" if device == "cuda" else "peak RSS"
    if "densenet121" in results:
        part = results["densenet121"]
        timing.print_table(
            f"densenet121, one training step at batch {part['batch']}, each in a fresh process ({device})",
            [
                "configuration ",
                f"step {memory} growth (MiB)",
                f"{memory} (MiB)",
                "step (s)" if device == "cuda" else "step (s), fixed mmap threshold",
            ],
            [
                [
                    CONFIGS[w["config"]],
                    f"{w['step_growth_bytes'] / MB:,.0f}",
                    f"{w['peak_bytes'] / MB:,.0f}",
                    f"{w['step_s']:.2f}",
                ]
                for w in part["workers"]
            ],
        )
        side = part["side_by_side"]
        for name, r in side["ratio_to_torchvision"].items():
            timing.print_table(
                f"densenet121 step time, {name} / torchvision plain, alternating in one process (target <= 1)",
                [f"{name} (s)", "torchvision (s)", *RATIO_COLUMNS],
                [[f"{side['median_s'][name]:.2f}", f"{side['median_s']['torchvision']:.2f}", *ratio_cells(r)]],
            )
    if "depth_sweep" in results:
        part = results["depth_sweep"]
        by = {(r["layers_per_block"], r["config"]): r["step_growth_bytes"] / MB for r in part["rows"]}
        layers = sorted({r["layers_per_block"] for r in part["rows"]})
        configs = list(part["growth_exponent"])
        timing.print_table(
            f"cifar_densenet_bc (k=12), step {memory} growth (MiB) against depth, each in a fresh process",
            ["depth", "layers per block", *configs],
            [[6 * n + 4, n, *(f"{by[n, c]:,.0f}" for c in configs)] for n in layers]
            + [["fitted exponent", "", *(str(part["growth_exponent"][c]) for c in configs)]],
        )


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the selected parts (or, with --worker, one configuration), write the JSON, print the tables."""
    p = timing.parser("dense_memory", __doc__, CHOICES)
    p.add_argument("--batch", type=int, default=16, help="densenet121 batch (default 16)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per fresh process (default 3)")
    p.add_argument("--depths", type=int, nargs="+", default=[40, 100, 160, 250], help="depths of the sweep")
    p.add_argument("--sweep-batch", type=int, default=8, help="batch of the depth sweep (default 8)")
    p.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    p.add_argument("--worker-network", default="densenet121", help=argparse.SUPPRESS)
    p.add_argument("--depth", type=int, default=0, help=argparse.SUPPRESS)
    args = timing.parse(p, argv)
    if args.worker:
        net = network(args.worker_network, args.batch, args.depth)
        print(json.dumps(measure(args.worker, net, args.device, args.steps)))
        return
    if not timing.supports("memory_efficient"):
        print("archdsl.load has no `memory_efficient` option yet: measuring the other configurations only")
    results = {name: PARTS[name](args) for name in args.networks}
    path = timing.write_results(
        "dense_memory", args, {"memory": "allocator" if args.device == "cuda" else "rss", **results}
    )
    print_tables(results, args.device)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
