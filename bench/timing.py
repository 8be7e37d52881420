"""Shared helpers of the model-speed benchmarks: networks and their references, devices,
alternating side-by-side timing, ratio statistics, tables and JSON results.

Every comparison runs its contenders in one process, in turn (AB BA AB ...: the order reverses
every round), after warm-up rounds, and is reported as the median of the per-round ratios with
their spread, because absolute times on shared machines drift.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

import archdsl

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results"
MIN_REPS, MAX_REPS = 5, 20
MIN_SAMPLE_S = 0.1


@dataclass(frozen=True)
class Network:
    """A zoo network at a benchmark's batch and input size, with its hand-written reference.

    An image classifier takes ``[3, size, size]`` images and ``classes`` labels; a language model
    (``tokens``) takes ``size`` token ids below ``classes`` and is scored at every position.
    """

    label: str
    zoo: str
    overrides: dict[str, Any] = field(default_factory=dict)
    batch: int = 8
    size: int = 224
    classes: int = 1000
    tokens: bool = False

    def archdsl(self, **options: Any) -> nn.Module:
        """The zoo network compiled by archdsl (seed 0), with compile options such as ``fuse``."""
        return archdsl.load(self.zoo, seed=0, **self.overrides, **options)

    @property
    def reference_kind(self) -> str:
        """Where the reference comes from: "torchvision" or "hand-written"."""
        return "hand-written" if self.zoo.startswith("cifar_") or self.zoo == "gpt" else "torchvision"

    def reference(self, **options: Any) -> nn.Module:
        """torchvision's model, or the hand-written CIFAR network or GPT-2, with random weights."""
        if self.zoo.startswith("cifar_"):
            from bench.reference_cifar import reference

            return reference(self.zoo, **self.overrides)
        if self.zoo == "gpt":
            from tests.gpt_reference import GPT  # the module gpt.arch is tested against

            return GPT(**self.overrides, **options)
        import torchvision

        if self.zoo == "vit":  # vit.arch takes VisionTransformer's parameters; the zoo's builder names are fixed sizes
            return torchvision.models.VisionTransformer(**self.overrides, **options)
        if self.zoo == "googlenet":  # as benchmarked: no auxiliary classifiers, no input transform
            options = {"aux_logits": False, "init_weights": True, "transform_input": False, **options}
        return getattr(torchvision.models, self.zoo)(**options)

    def quick(self) -> Network:
        """The same network at a tiny batch, for checking that a script runs."""
        return dataclasses.replace(self, batch=max(2, self.batch // 8))


# Small transformers, a few tens of milliseconds per training step on 2 CPU cores.
VIT_SMALL = {
    "image_size": 64,
    "patch_size": 8,
    "num_layers": 4,
    "num_heads": 4,
    "hidden_dim": 128,
    "mlp_dim": 256,
    "num_classes": 10,
}
GPT_SMALL = {"vocab_size": 512, "block_size": 64, "n_layer": 4, "n_head": 4, "n_embd": 128}

NETWORKS = {
    n.label: n
    for n in [
        Network("resnet50", "resnet50"),
        Network("densenet121", "densenet121"),
        Network("googlenet", "googlenet", {"aux_logits": False}),  # as measured before the auxiliary classifiers
        Network("vgg16", "vgg16"),
        Network("vgg16_bn", "vgg16_bn"),
        Network("mobilenet_v2", "mobilenet_v2"),
        Network("efficientnet_b0", "efficientnet_b0"),  # a builder name: efficientnet.arch with variant="b0"
        Network("cifar_resnet20", "cifar_resnet", {"depth": 20}, 64, 32, 10),
        Network("cifar_resnet110", "cifar_resnet", {"depth": 110}, 64, 32, 10),
        Network("cifar_densenet_bc", "cifar_densenet_bc", {"depth": 100, "growth": 12}, 64, 32, 10),
        Network("vit", "vit", VIT_SMALL, 16, VIT_SMALL["image_size"], VIT_SMALL["num_classes"]),
        Network("gpt", "gpt", GPT_SMALL, 16, GPT_SMALL["block_size"], GPT_SMALL["vocab_size"], tokens=True),
    ]
}


def supports(keyword: str) -> bool:
    """Whether ``archdsl.load`` takes a compile option (``fuse``, ``memory_efficient``) of its own."""
    return keyword in inspect.signature(archdsl.load).parameters


# --- command line --------------------------------------------------------------------------------


def parser(
    name: str, doc: str, networks: Sequence[str], default: Sequence[str] | None = None, budget: float = 20.0
) -> argparse.ArgumentParser:
    """The options every benchmark shares: device, networks, repetitions, quick mode."""
    p = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc.strip().splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--networks",
        nargs="+",
        choices=list(networks),
        default=list(default or networks),
        metavar="NET",
        help=f"a subset of: {', '.join(networks)}",
    )
    p.add_argument(
        "--reps",
        type=int,
        help=f"timed rounds per comparison (default: as many as fit in --budget, {MIN_REPS} to {MAX_REPS})",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=budget,
        help=f"seconds of timed rounds per comparison when --reps is not given (default {budget:g})",
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run that checks the script works: small batches, 2 rounds; figures are not meaningful",
    )
    return p


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse options (the command line's when ``argv`` is None), check the device."""
    if argv is None:
        argv = sys.argv[1:]
    args = p.parse_args(list(argv))
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)", file=sys.stderr)
        sys.exit(2)
    if args.quick and args.reps is None:
        args.reps = 2
    args.command = " ".join([p.prog, *argv])
    return args


# --- devices and steps ---------------------------------------------------------------------------


def sync(device: str) -> None:
    """Wait for queued GPU work, so that a timer measures it."""
    if device == "cuda":
        torch.cuda.synchronize()


def autocast(device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing on CPU (fp32)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()


def prepare(model: nn.Module, device: str, train: bool = True) -> nn.Module:
    """The model on the device (channels_last on CUDA), in train or eval mode."""
    model = model.to(device, memory_format=torch.channels_last) if device == "cuda" else model.to(device)
    return model.train(train)


def batch(net: Network, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded input batch and fixed labels for a network (for a language model, a label per token)."""
    gen = torch.Generator().manual_seed(seed)
    if net.tokens:
        x = torch.randint(0, net.classes, (net.batch, net.size), generator=gen)
        y = torch.randint(0, net.classes, (net.batch, net.size), generator=gen)
        return x.to(device), y.to(device)
    x = torch.randn(net.batch, 3, net.size, net.size, generator=gen)
    y = torch.randint(0, net.classes, (net.batch,), generator=gen)
    x = x.to(device, memory_format=torch.channels_last) if device == "cuda" else x
    return x, y.to(device)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str) -> Callable[[], torch.Tensor]:
    """One forward, cross-entropy backward and SGD step (momentum 0.9) per call; returns the loss.

    ``[N, T, V]`` logits (a language model's) are scored against ``[N, T]`` labels at every position.
    """
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with autocast(device):
            loss = F.cross_entropy(model(x).flatten(0, -2), y.flatten())
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def eval_step(model: nn.Module, x: torch.Tensor, device: str) -> Callable[[], torch.Tensor]:
    """One eval-mode forward under ``torch.inference_mode`` per call; returns the output."""

    def step() -> torch.Tensor:
        with torch.inference_mode(), autocast(device):
            return model(x)

    return step


def in_fresh_process(module: str, options: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m MODULE OPTIONS`` in a new process; return the JSON object its last output line holds."""
    command = [sys.executable, "-m", module, *options]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=os.environ | (env or {}))
    if done.returncode != 0:
        raise RuntimeError(f"python -m {module} {' '.join(options)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(fn: Callable[[], object], device: str) -> float:
    """Seconds one call takes, GPU work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


# --- side-by-side timing and statistics ----------------------------------------------------------


def alternate(
    contenders: dict[str, Callable[[], object]], device: str, *, reps: int | None, warmup: int, budget: float
) -> dict[str, list[float]]:
    """Seconds per call of each contender, called in turn after ``warmup`` untimed rounds.

    The order reverses every round (AB BA AB ...), so that neither contender always runs first:
    on a shared CPU the first call after another model's step pays for its cache and allocator state.

    Without ``reps``, rounds continue until ``budget`` seconds have passed, at least MIN_REPS
    and at most MAX_REPS of them. Calls faster than MIN_SAMPLE_S are repeated within a round
    (the same number of times for every contender) so that timer noise stays small.
    """
    fastest = min((timed(fn, device) for _ in range(warmup) for fn in contenders.values()), default=MIN_SAMPLE_S)
    calls = max(1, math.ceil(MIN_SAMPLE_S / fastest))
    times: dict[str, list[float]] = {name: [] for name in contenders}
    start = time.perf_counter()
    for rounds in range(1, (reps or MAX_REPS) + 1):
        order = list(contenders.items())
        for name, fn in order if rounds % 2 else reversed(order):
            times[name].append(timed(lambda fn=fn: [fn() for _ in range(calls)], device) / calls)
        if reps is None and rounds >= MIN_REPS and time.perf_counter() - start >= budget:
            break
    return times


def ratio(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """Median, quartiles and extremes of the per-round ratios numerator / denominator."""
    ratios = sorted(a / b for a, b in zip(numerator, denominator, strict=True))
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    stats = {"median": statistics.median(ratios), "q1": q1, "q3": q3, "min": ratios[0], "max": ratios[-1]}
    return {k: round(v, 4) for k, v in stats.items()} | {"rounds": len(ratios)}


def summary(times: dict[str, list[float]], baseline: str) -> dict[str, Any]:
    """Median seconds of every contender and the ratio of each to the baseline."""
    return {
        "median_s": {name: round(statistics.median(t), 5) for name, t in times.items()},
        "ratio_to_" + baseline: {name: ratio(t, times[baseline]) for name, t in times.items() if name != baseline},
        "times_s": {name: [round(s, 5) for s in t] for name, t in times.items()},
    }


RATIO_COLUMNS = ["ratio", "IQR", "min-max"]


def ratio_cells(r: dict[str, float]) -> list[str]:
    """A ratio's median, interquartile range and extremes, as table cells (see RATIO_COLUMNS)."""
    return [f"{r['median']:.3f}", f"{r['q1']:.3f}-{r['q3']:.3f}", f"{r['min']:.3f}-{r['max']:.3f}"]


# --- output --------------------------------------------------------------------------------------


def machine(device: str) -> dict[str, Any]:
    """Where the figures were measured."""
    import torchvision

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": cpus,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "archdsl": archdsl.__version__,
        "device": device,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["precision"] = "bf16 autocast, channels_last"
    return info


def results_stem(name: str, args: argparse.Namespace) -> str:
    """NAME[-cuda][-quick]: the results file of a benchmark run with these options, without its suffix."""
    return name + ("-cuda" if args.device == "cuda" else "") + ("-quick" if args.quick else "")


def write_results(name: str, args: argparse.Namespace, payload: dict[str, Any]) -> Path:
    """Write bench/results/NAME[-cuda][-quick].json with the machine, the command and the settings."""
    path = RESULTS / f"{results_stem(name, args)}.json"
    settings = {k: v for k, v in vars(args).items() if k != "command"}
    document = {"benchmark": name, "command": args.command, "machine": machine(args.device), "settings": settings}
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(document | payload, indent=1) + "\n")
    return path


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A rich table; columns whose name ends in a space are left-aligned."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col.strip(), justify="left" if col.endswith(" ") else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@contextlib.contextmanager
def progress(what: str) -> Iterator[None]:
    """Print what is being measured and how long it took."""
    print(f"{what} ...", end="", flush=True)
    start = time.perf_counter()
    yield
    print(f" {time.perf_counter() - start:.0f} s", flush=True)
