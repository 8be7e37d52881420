"""The embedded default: the zoo's CIFAR ResNet-20 trained with the CLI defaults on the bundled digits.

Target: at least 97% test accuracy within a few minutes on a 2-core CPU.
Writes bench/results/train_digits.json and prints the per-epoch figures.

    python -m bench train_digits
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

from archdsl.train import TrainConfig, train

RESULTS = Path(__file__).parent / "results" / "train_digits.json"


def main() -> None:
    """Train with the defaults of `archdsl train cifar_resnet` and record accuracy and time."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = train(TrainConfig(arch="cifar_resnet", out=out))
    seconds = time.perf_counter() - began
    best = max(h["test_acc"] for h in result.history)
    final = result.history[-1]["test_acc"]
    report = {
        "network": "cifar_resnet (ResNet-20)",
        "data": "digits",
        "epochs": len(result.history),
        "final_test_acc": final,
        "best_test_acc": best,
        "seconds": round(seconds, 1),
        "python": platform.python_version(),
        "history": result.history,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    for h in result.history:
        print(f"epoch {h['epoch']:>2}: test accuracy {h['test_acc']:.2%}, {h['seconds']:.1f} s")
    print(f"final test accuracy {final:.2%} in {seconds:.0f} s (target: >= 97%)")


if __name__ == "__main__":
    main()
