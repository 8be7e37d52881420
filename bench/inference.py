"""Inference speed: archdsl with batch norm folded into the convolutions, unfused, and torchvision.

Target (issue 7, inference, 2-core CPU): archdsl.load(name, fuse=True) computes the unfused
module's outputs within 1e-4, and we report its eval speed against torchvision's. For resnet50,
densenet121, googlenet and vgg16_bn at batch 8, 224x224, one run times an eval forward under
torch.inference_mode of the fused module, the unfused module and torchvision's (with the unfused
module's weights), in turn (ABC ABC ...) after a warm-up round, and reports the ratios to
torchvision and the largest output difference, fused against unfused, on the same batch (seed-0
weights, batch norm at its initial statistics), absolute and relative to the largest output.
Writes bench/results/inference.json.

    python -m bench.inference                        # about 3 minutes on an idle 2-core CPU
    python -m bench.inference --networks resnet50 --reps 20
    python -m bench.inference --device cuda          # bf16 autocast, channels_last
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from bench import timing
from bench.timing import NETWORKS, Network, prepare, ratio_cells

CHOICES = ["resnet50", "densenet121", "googlenet", "vgg16_bn"]
TOLERANCE = 1e-4


def max_difference(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Largest absolute difference of two eval-mode modules' outputs on one batch (no autocast), also
    relative to the largest output of ``b``: at initialisation, eval outputs can be huge (densenet121's
    reach 1e7, since batch norm's running statistics are still 0 and 1)."""
    with torch.inference_mode():
        ya, yb = a(x).float(), b(x).float()
    diff = (ya - yb).abs().max().item()
    return {"max_abs": diff, "max_rel": diff / max(yb.abs().max().item(), 1e-30)}


def compare(net: Network, args: argparse.Namespace) -> dict:
    """Time fused, unfused and torchvision eval forwards in turn; ratios are to torchvision."""
    plain = prepare(net.archdsl(), args.device, train=False)
    fused = prepare(net.archdsl(fuse=True) if timing.supports("fuse") else net.archdsl(), args.device, train=False)
    reference = prepare(net.reference(), args.device, train=False)
    reference.load_state_dict(plain.state_dict())
    x, _ = timing.batch(net, args.device)
    models = {"fused": fused, "archdsl": plain, "torchvision": reference}
    steps = {name: timing.eval_step(m, x, args.device) for name, m in models.items()}
    times = timing.alternate(steps, args.device, reps=args.reps, warmup=args.warmup, budget=args.budget)
    return {
        "network": net.label,
        "batch": net.batch,
        "size": net.size,
        "fuse_available": timing.supports("fuse"),
        "diff_fused_vs_unfused": max_difference(fused, plain, x),
        "diff_unfused_vs_torchvision": max_difference(plain, reference, x),
    } | timing.summary(times, "torchvision")


def main(argv: Sequence[str] | None = None) -> None:
    """Compare every selected network, write the JSON, print the table."""
    args = timing.parse(timing.parser("inference", __doc__, CHOICES), argv)
    if not timing.supports("fuse"):
        print("archdsl.load has no `fuse` option yet: the `fused` column measures the unfused module")
    rows = []
    for label in args.networks:
        net = NETWORKS[label].quick() if args.quick else NETWORKS[label]
        with timing.progress(f"{label}: eval forwards, batch {net.batch}"):
            rows.append(compare(net, args))
    path = timing.write_results("inference", args, {"tolerance": TOLERANCE, "rows": rows})
    ratios = [r["ratio_to_torchvision"] for r in rows]
    timing.print_table(
        f"Eval forward, ratio to torchvision ({args.device}; min-max in the JSON)",
        [
            "network ",
            "batch",
            "fused (s)",
            "unfused (s)",
            "torchvision (s)",
            "fused ratio",
            "IQR",
            "unfused ratio",
            "IQR",
            "max |fused - unfused|",
            "relative",
        ],
        [
            [
                r["network"],
                r["batch"],
                *(f"{r['median_s'][k]:.3f}" for k in ("fused", "archdsl", "torchvision")),
                *ratio_cells(q["fused"])[:2],
                *ratio_cells(q["archdsl"])[:2],
                *(f"{r['diff_fused_vs_unfused'][k]:.1e}" for k in ("max_abs", "max_rel")),
            ]
            for r, q in zip(rows, ratios, strict=True)
        ],
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
