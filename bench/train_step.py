"""Training-step speed of archdsl's compiled modules against the hand-written PyTorch they replace.

Target (issue 7, 2-core CPU): one training step (forward, cross-entropy backward, SGD step with
momentum 0.9) of archdsl.load(name) takes at most 1.02x the reference's, measured side by side in
one run: torchvision's resnet50, densenet121, googlenet, vgg16, mobilenet_v2 and efficientnet_b0
(issue 14) at batch 8, 224x224, and the CIFAR networks (ResNet-20, ResNet-110, DenseNet-BC-100
k=12) at batch 64, 32x32 against the hand-written ones in bench/reference_cifar.py; and (issue 15)
small transformers: vit (64x64 images, patches of 8, 4 layers of width 128) at batch 16 against
torchvision's VisionTransformer of the same parameters, and gpt (64 tokens of a 512-word
vocabulary, 4 layers of width 128) at batch 16 against tests/gpt_reference.GPT, its cross-entropy
taken at every position. Both models are in train mode, start from the same weights (archdsl's,
loaded into the reference) and train on the same seeded batch and labels; the steps alternate
(AB BA ...) after a warm-up round.

Writes bench/results/train_step.json, merged: a run replaces the rows of the networks it measured
and keeps the others, and "runs" lists the command and date that measured each row.

    python -m bench.train_step                       # about 4.5 minutes on an idle 2-core CPU
    python -m bench.train_step --networks resnet50 --reps 10
    python -m bench.train_step --networks vit gpt    # the transformers only
    python -m bench.train_step --device cuda         # bf16 autocast, channels_last
"""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Sequence
from typing import Any

from bench import timing
from bench.timing import NETWORKS, RATIO_COLUMNS, Network, prepare, ratio_cells

CHOICES = [
    "resnet50",
    "densenet121",
    "googlenet",
    "vgg16",
    "mobilenet_v2",
    "efficientnet_b0",
    "cifar_resnet20",
    "cifar_resnet110",
    "cifar_densenet_bc",
    "vit",
    "gpt",
]
TARGET = 1.02


def compare(net: Network, args: argparse.Namespace) -> dict:
    """Time archdsl's and the reference's training steps in turn; ratios are archdsl / reference."""
    ours = prepare(net.archdsl(), args.device)
    reference = prepare(net.reference(), args.device)
    reference.load_state_dict(ours.state_dict())
    x, y = timing.batch(net, args.device)
    steps = {name: timing.train_step(m, x, y, args.device) for name, m in [("archdsl", ours), ("reference", reference)]}
    times = timing.alternate(steps, args.device, reps=args.reps, warmup=args.warmup, budget=args.budget)
    row = {"network": net.label, "batch": net.batch, "size": net.size, "reference": net.reference_kind}
    return row | ({"overrides": net.overrides} if net.overrides else {}) | timing.summary(times, "reference")


def merged(args: argparse.Namespace, rows: list[dict]) -> dict[str, Any]:
    """This run's rows with the earlier results file's rows of the networks it did not measure, in CHOICES order.

    "runs" says which command measured which rows and when; a run whose rows have all been
    measured again since is dropped from it.
    """
    path = timing.RESULTS / f"{timing.results_stem('train_step', args)}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    measured = {r["network"] for r in rows}
    kept = [r for r in previous.get("rows", []) if r["network"] not in measured and r["network"] in CHOICES]
    runs = previous.get("runs") or (  # a file from before "runs": its command measured every row
        [{"command": previous["command"], "networks": [r["network"] for r in previous["rows"]]}] if previous else []
    )
    runs = [run | {"networks": [n for n in run["networks"] if n not in measured]} for run in runs]
    today = datetime.date.today().isoformat()
    runs = [run for run in runs if run["networks"]] + [
        {"command": args.command, "date": today, "networks": [r["network"] for r in rows]}
    ]
    order = {name: i for i, name in enumerate(CHOICES)}
    return {"target_ratio": TARGET, "rows": sorted(kept + rows, key=lambda r: order[r["network"]]), "runs": runs}


def main(argv: Sequence[str] | None = None) -> None:
    """Compare every selected network, write the JSON, print the table."""
    args = timing.parse(timing.parser("train_step", __doc__, CHOICES), argv)
    rows = []
    for label in args.networks:
        net = NETWORKS[label].quick() if args.quick else NETWORKS[label]
        with timing.progress(f"{label}: training steps, batch {net.batch}"):
            rows.append(compare(net, args))
    path = timing.write_results("train_step", args, merged(args, rows))
    timing.print_table(
        f"Training step, archdsl / reference ({args.device}; target <= {TARGET})",
        ["network ", "batch", "reference ", "archdsl (s)", "reference (s)", *RATIO_COLUMNS, "target "],
        [
            [
                r["network"],
                r["batch"],
                r["reference"],
                f"{r['median_s']['archdsl']:.3f}",
                f"{r['median_s']['reference']:.3f}",
                *ratio_cells(r["ratio_to_reference"]["archdsl"]),
                "met" if r["ratio_to_reference"]["archdsl"]["median"] <= TARGET else "missed",
            ]
            for r in rows
        ],
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
