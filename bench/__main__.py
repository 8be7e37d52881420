"""Run benchmarks by name, on their defaults: ``python -m bench render compiler``.

For options, run one as a module: ``python -m bench.train_step --networks resnet50 --device cuda``.
"""

import importlib
import sys

if __name__ == "__main__":
    names = sys.argv[1:] or ["render"]
    for name in names:
        importlib.import_module(f"bench.{name}").main()
