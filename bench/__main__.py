"""Run benchmarks by name, on their defaults: ``python -m bench render compiler``.

Options after the names go to each of them: ``python -m bench train_step --networks vit gpt``,
``python -m bench train_step --help``. The same as a module: ``python -m bench.train_step --quick``.
"""

import importlib
import inspect
import itertools
import sys


def main(argv: list[str]) -> None:
    """Run every benchmark named before the first option, passing it the options."""
    names = list(itertools.takewhile(lambda arg: not arg.startswith("-"), argv))
    options = argv[len(names) :]
    for name in names or ["render"]:
        run = importlib.import_module(f"bench.{name}").main
        if not inspect.signature(run).parameters:
            if options:
                sys.exit(f"python -m bench {name} takes no options (given: {' '.join(options)})")
            run()
        else:
            run(options)


if __name__ == "__main__":
    main(sys.argv[1:])
