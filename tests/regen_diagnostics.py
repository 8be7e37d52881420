"""(Re)write tests/fixtures/invalid/*.expected from what archdsl reports today.

Run from the repository root::

    python tests/regen_diagnostics.py                 # every fixture except the known bugs
    python tests/regen_diagnostics.py NAME [NAME ...]  # just these (known bugs included)
    python tests/regen_diagnostics.py --all           # every fixture, known bugs included

Each ``NAME.expected`` receives ``str(err)`` plus one newline, where ``err``
is what ``archdsl.graph("tests/fixtures/invalid/NAME.arch")`` raises with the
repository root as the working folder. The ``.expected`` files of fixtures in
``KNOWN_BUGS`` (tests/test_diagnostics.py) are hand-written and hold the
diagnostic we want, so they are skipped unless named or ``--all`` is given:
after fixing such a bug, drop its entry from ``KNOWN_BUGS`` and regenerate it.
Read every diff before committing: a regenerated file is only as good as
the output it copies.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "invalid"


def known_bugs() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("_test_diagnostics", REPO / "tests" / "test_diagnostics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KNOWN_BUGS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="fixture names (default: all but the known bugs)")
    parser.add_argument("--all", action="store_true", help="also overwrite the hand-written known-bug files")
    args = parser.parse_args(argv)

    os.chdir(REPO)
    import archdsl

    available = sorted(p.stem for p in FIXTURES.glob("*.arch"))
    unknown = [n for n in args.names if n not in available]
    if unknown:
        parser.error(f"no such fixture: {', '.join(unknown)}")
    skip = set() if args.all or args.names else set(known_bugs())
    names = args.names or available

    status = 0
    for name in names:
        if name in skip:
            print(f"skip   {name} (known bug; its .expected is hand-written)")
            continue
        try:
            archdsl.graph(f"tests/fixtures/invalid/{name}.arch")
        except archdsl.ArchError as err:
            target = FIXTURES / f"{name}.expected"
            text = str(err) + "\n"
            old = target.read_text(encoding="utf-8") if target.is_file() else None
            if old != text:
                with open(target, "w", encoding="utf-8", newline="") as f:
                    f.write(text)
            print(f"{'same ' if old == text else 'wrote'}  {name}")
            continue
        except Exception as err:  # reported, not written
            print(f"ERROR  {name}: raised {type(err).__name__} (not an ArchError): {err}", file=sys.stderr)
        else:
            print(f"ERROR  {name}: no error raised", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
