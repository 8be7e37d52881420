"""Run a benchmark by name: ``python -m bench render``."""

import importlib
import sys

if __name__ == "__main__":
    names = sys.argv[1:] or ["render"]
    for name in names:
        importlib.import_module(f"bench.{name}").main()
