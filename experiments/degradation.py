"""The ResNet paper's degradation experiment (He et al. 2015, Fig. 1 and Fig. 6), from the zoo.

Trains plain-20, plain-56, ResNet-20 and ResNet-56 (CIFAR layouts, option A
shortcuts) with identical settings and seeds on the bundled digits data, and
plots their training error per epoch side by side. The paper's claim: the
deeper plain net trains worse than the shallower one; the deeper residual
net does not.

    python experiments/degradation.py [--epochs 10] [--out docs/experiments]

Writes OUT/degradation.png and OUT/degradation.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from archdsl.train import TrainConfig, train

RUNS = {
    "plain-20": ("cifar_plain", {"depth": 20}),
    "plain-56": ("cifar_plain", {"depth": 56}),
    "ResNet-20": ("cifar_resnet", {"depth": 20}),
    "ResNet-56": ("cifar_resnet", {"depth": 56}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=0, help="epochs at lr/10 first (the paper's warm-up)")
    parser.add_argument("--out", default="docs/experiments")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    runs = tempfile.mkdtemp(prefix="degradation-")  # checkpoints and per-run files stay out of the repository
    for label, (arch, overrides) in RUNS.items():
        began = time.perf_counter()
        config = TrainConfig(
            arch=arch,
            overrides=overrides,
            data=args.data,
            epochs=args.epochs,
            lr=args.lr,
            seed=args.seed,
            warmup=args.warmup,
            out=str(Path(runs) / label),
            device="cpu",
        )
        result = train(config)
        results[label] = {
            "train_error": [round(100 * (1 - h["train_acc"]), 2) for h in result.history],
            "test_error": [round(100 * (1 - h["test_acc"]), 2) for h in result.history],
            "seconds": round(time.perf_counter() - began, 1),
        }
        print(label, results[label])
    (out / "degradation.json").write_text(json.dumps({"settings": vars(args), "runs": results}, indent=1) + "\n")
    plot(results, out / "degradation.png", args)


def plot(results: dict, path: Path, args) -> None:
    """Training error per epoch, plain nets left and residual nets right (as the paper's Fig. 6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, family in zip(axes, ("plain", "ResNet"), strict=True):
        for label, run in results.items():
            if label.startswith(family):
                epochs = range(1, len(run["train_error"]) + 1)
                style = "-" if label.endswith("56") else "--"
                ax.plot(epochs, run["train_error"], style, label=f"{label} (train)")
        ax.set_title(f"{family} nets on {args.data}")
        ax.set_xlabel("epoch")
        ax.legend()
    axes[0].set_ylabel("training error (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
