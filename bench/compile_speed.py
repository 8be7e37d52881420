"""torch.compile: archdsl's GraphModules against torchvision's models, both compiled the same way.

Target (issue 7): archdsl's module compiles with torch.compile(model, fullgraph=True), so with
no graph breaks, and its compiled training step and eval forward are as fast as torchvision's
compiled the same way. For each network, each contender is first compiled cold in a fresh
process with an empty Inductor cache (the seconds its first training step and first eval forward
take beyond a steady one are its compile times); then one process times the compiled training
steps (forward, cross-entropy backward, SGD with momentum 0.9) and eval forwards under
torch.inference_mode side by side, alternating, as bench/train_step.py and bench/inference.py do,
loading each contender's kernels from its cold run's cache. Defaults: resnet50 (batch 8, 224x224)
and CIFAR ResNet-20 (batch 64, 32x32, against bench/reference_cifar.py), because Inductor's
compile takes minutes on 2 CPU cores. Writes bench/results/compile_speed.json.

    python -m bench.compile_speed                    # about 6 minutes on an idle 2-core CPU
    python -m bench.compile_speed --networks cifar_resnet20 googlenet
    python -m bench.compile_speed --device cuda      # bf16 autocast, channels_last
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable, Sequence

import torch
from torch import nn

from bench import timing
from bench.timing import NETWORKS, RATIO_COLUMNS, Network, prepare, ratio_cells

CHOICES = ["resnet50", "densenet121", "googlenet", "vgg16", "cifar_resnet20", "cifar_resnet110", "cifar_densenet_bc"]
DEFAULT = ["resnet50", "cifar_resnet20"]
CONTENDERS = ("archdsl", "reference")


def compiled_steps(model: nn.Module, net: Network, device: str) -> tuple[Callable, Callable]:
    """A training step and an eval forward of ``torch.compile(model, fullgraph=True)``; compiled on first call."""
    compiled = torch.compile(model, fullgraph=True)
    x, y = timing.batch(net, device)
    return timing.train_step(compiled, x, y, device), timing.eval_step(compiled, x, device)


def build(contender: str, net: Network, device: str) -> nn.Module:
    """archdsl's module or the reference, on the device, in train mode."""
    return prepare(net.archdsl() if contender == "archdsl" else net.reference(), device)


def cold_compile(contender: str, net: Network, device: str) -> dict:
    """Compile times of one contender, in this process (meant to be fresh, with an empty Inductor cache)."""
    model = build(contender, net, device)
    train, evaluate = compiled_steps(model, net, device)
    train_first, train_steady = timing.timed(train, device), timing.timed(train, device)
    model.eval()
    eval_first, eval_steady = timing.timed(evaluate, device), timing.timed(evaluate, device)
    return {
        "contender": contender,
        "train_compile_s": round(train_first - train_steady, 2),
        "eval_compile_s": round(eval_first - eval_steady, 2),
        "train_first_step_s": round(train_first, 3),
        "eval_first_call_s": round(eval_first, 3),
        "cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
    }


def compare(net: Network, args: argparse.Namespace, caches: str) -> dict:
    """Cold compile times of both contenders, then their compiled speed side by side."""
    cold = {}
    for contender in CONTENDERS:
        cache = tempfile.mkdtemp(prefix=f"{contender}-", dir=caches)
        options = ["--worker", contender, "--networks", net.label, "--device", args.device]
        options += ["--quick"] if args.quick else []
        env = {"TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": os.path.join(cache, "triton")}
        with timing.progress(f"{net.label} {contender}: cold compile in a fresh process"):
            cold[contender] = timing.in_fresh_process("bench.compile_speed", options, env)
    models = {c: build(c, net, args.device) for c in CONTENDERS}
    models["reference"].load_state_dict(models["archdsl"].state_dict())
    steps = {c: compiled_steps(m, net, args.device) for c, m in models.items()}
    times = {}
    for mode, index in (("train", 0), ("eval", 1)):
        with timing.progress(f"{net.label}: compiled {mode} steps, batch {net.batch}"):
            for contender, model in models.items():  # the first call loads the kernels of the cold compile
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = cold[contender]["cache"]
                model.train(mode == "train")
                steps[contender][index]()
            calls = {c: s[index] for c, s in steps.items()}
            times[mode] = timing.alternate(calls, args.device, reps=args.reps, warmup=args.warmup, budget=args.budget)
    return {
        "network": net.label,
        "batch": net.batch,
        "size": net.size,
        "reference": "hand-written" if net.zoo.startswith("cifar_") else "torchvision",
        "compile": {"fullgraph": True, **{c: {k: v for k, v in r.items() if k != "cache"} for c, r in cold.items()}},
        "train": timing.summary(times["train"], "reference"),
        "eval": timing.summary(times["eval"], "reference"),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Compare every selected network, write the JSON, print the table."""
    p = timing.parser("compile_speed", __doc__, CHOICES, DEFAULT, budget=10.0)
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = timing.parse(p, argv)
    nets = [NETWORKS[label].quick() if args.quick else NETWORKS[label] for label in args.networks]
    if args.worker:
        print(json.dumps(cold_compile(args.worker, nets[0], args.device)))
        return
    with tempfile.TemporaryDirectory(prefix="archdsl-bench-inductor-") as caches:
        rows = [compare(net, args, caches) for net in nets]
    path = timing.write_results("compile_speed", args, {"rows": rows})
    timing.print_table(
        f"torch.compile(fullgraph=True), archdsl / reference ({args.device})",
        [
            "network ",
            "batch",
            "compile archdsl (s)",
            "compile reference (s)",
            "mode ",
            "archdsl (s)",
            "reference (s)",
            *RATIO_COLUMNS,
        ],
        [
            [
                r["network"],
                r["batch"],
                *(f"{r['compile'][c][mode + '_compile_s']:.0f}" for c in CONTENDERS),
                mode,
                *(f"{r[mode]['median_s'][c]:.3f}" for c in CONTENDERS),
                *ratio_cells(r[mode]["ratio_to_reference"]["archdsl"]),
            ]
            for r in rows
            for mode in ("train", "eval")
        ],
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
