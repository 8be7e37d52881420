"""Where the grammar and the zoo live (inside the installed package, or the source tree), and the zoo's aliases.

An alias is a builder name that stands for a zoo file with parameter values:
``resnext101_32x8d`` is ``resnext`` with ``depth=101, groups=32,
width_per_group=8``. The table is ``architectures/aliases.toml``, one TOML
table per alias::

    [resnext101_32x8d]
    file = "resnext"
    params = { depth = 101, groups = 32, width_per_group = 8 }

:func:`expand_alias` turns an alias into its file and parameter values, the
caller's own overrides winning; everything that reads a network (``graph``,
``load``, ``build`` and the CLI) goes through it. The table is checked when
it is first read: an alias that names no zoo file, or that is itself a zoo
file's name, is an error (E251) located in the table.

>>> path, overrides = expand_alias("resnext101_32x8d", {"num_classes": 10})
>>> path.name, overrides
('resnext.arch', {'depth': 101, 'groups': 32, 'width_per_group': 8, 'num_classes': 10})
>>> zoo_aliases()["squeezenet1_1"].command()
'squeezenet -p version=1.1'
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from archdsl.errors import ArchImportError, Span
from archdsl.expr import show

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


ALIAS_TABLE = "aliases.toml"
_VALUE_TYPES = (bool, int, float, str, list)


@dataclass(frozen=True)
class Alias:
    """One builder name: the zoo file it names and the parameter values it sets."""

    name: str
    file: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def command(self) -> str:
        """What the alias stands for on the command line: ``resnext -p depth=101 -p width_per_group=8``."""
        values = (f"-p {k}={v if isinstance(v, str) else show(v)}" for k, v in self.params.items())
        return " ".join((self.file, *values))


def read_aliases(path: Path, zoo: Iterable[str]) -> dict[str, Alias]:
    """The alias table at ``path``, checked against the zoo's file names ``zoo``."""
    text = path.read_text(encoding="utf-8")
    file = _display(path)
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ArchImportError(f"cannot read the alias table: {err}", Span(file, 0, 0, 0, 0), code="E251") from None
    zoo = set(zoo)
    aliases: dict[str, Alias] = {}
    for name, entry in table.items():

        def fail(message: str, hint: str | None = None, _name: str = name) -> ArchImportError:
            return ArchImportError(message, _span_of(text, file, _name), hint, code="E251", sources={file: text})

        if not isinstance(entry, dict):
            raise fail(f"alias `{name}` is not a table", 'write it as [name] with file = "..." and params = {...}')
        if not name.isidentifier():
            raise fail(f"alias `{name}` is not a plain name", "an alias is used as a zoo name: letters, digits, _")
        if name in zoo:
            raise fail(f"alias `{name}` is also the name of a zoo file", "rename the alias or the file")
        unknown = sorted(set(entry) - {"file", "params"})
        if unknown:
            raise fail(f"alias `{name}` has an unknown key `{unknown[0]}`", "an alias has `file` and `params`")
        target, params = entry.get("file"), entry.get("params", {})
        if not isinstance(target, str):
            raise fail(f"alias `{name}` has no `file`", 'name the zoo file it stands for: file = "resnext"')
        if target not in zoo:
            raise fail(f"alias `{name}` names `{target}`, which is no zoo file", "one of: " + ", ".join(sorted(zoo)))
        if not isinstance(params, dict) or not all(isinstance(v, _VALUE_TYPES) for v in params.values()):
            raise fail(f"alias `{name}` has params that are not a table of values", "e.g. params = { depth = 101 }")
        aliases[name] = Alias(name, target, {k: _frozen(v) for k, v in params.items()})
    return aliases


@cache
def zoo_aliases() -> dict[str, Alias]:
    """The shipped alias table (``architectures/aliases.toml``), read and checked once; empty when there is none."""
    path = zoo_dir() / ALIAS_TABLE
    return read_aliases(path, zoo_names()) if path.is_file() else {}


def expand_alias(source: Any, overrides: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``(source, overrides)`` with an alias replaced by its zoo file and its parameter values under ``overrides``.

    Anything else (a path, a zoo name, source text, a graph) comes back as it was.
    """
    alias = zoo_aliases().get(source) if isinstance(source, str) else None
    if alias is None:
        return source, dict(overrides)
    return zoo_dir() / f"{alias.file}.arch", {**alias.params, **overrides}


def _frozen(value: Any) -> Any:
    """A TOML value as an override holds it: lists as tuples, as ``-p`` gives them."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def _display(path: Path) -> str:
    relative = os.path.relpath(path) if path.is_absolute() else str(path)
    return str(path) if relative.startswith("..") else relative


def _span_of(text: str, file: str, name: str) -> Span:
    """Where ``[name]`` (or ``name =``) is written in the table; the file alone when it is not found."""
    pattern = re.compile(rf"^\s*(\[\s*{re.escape(name)}\s*\]|{re.escape(name)}\s*=)", re.M)
    match = pattern.search(text)
    if match is None:
        return Span(file, 0, 0, 0, 0)
    line = text.count("\n", 0, match.start(1)) + 1
    column = match.start(1) - (text.rfind("\n", 0, match.start(1)) + 1) + 1
    return Span(file, line, column, line, column + len(match.group(1).rstrip("= ")))
