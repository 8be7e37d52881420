"""Where the grammar and the zoo live: inside the installed package, or the source tree."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    # A wheel carries the folder inside the package; a source checkout keeps it
    # at the repository root, one level up.
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"archdsl data folder `{name}` is missing from {_PACKAGE_DIR}")


@cache
def grammar_path() -> Path:
    """Path of ``arch.lark``."""
    return _data_dir("grammars") / "arch.lark"


@cache
def zoo_dir() -> Path:
    """The folder of shipped ``.arch`` architectures."""
    return _data_dir("architectures")


def zoo_names() -> list[str]:
    """Names of the zoo's networks (files directly in the zoo folder), sorted."""
    return sorted(p.stem for p in zoo_dir().glob("*.arch"))
