"""Read a source and everything it imports into a :class:`Program`.

Imports resolve against the importing file's folder, then the zoo. An import
may not leave those folders (no absolute paths, no ``..`` or symlink
escapes); missing files and import cycles are located errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from archdsl import limits
from archdsl import syntax as ast
from archdsl.errors import ArchError, ArchImportError, ArchNameError, Span, combine, did_you_mean
from archdsl.parse import parse
from archdsl.resources import zoo_dir, zoo_names


@dataclass
class Program:
    """A main module with its imports: definitions visible per file, and all source texts."""

    main: ast.Module
    modules: dict[str, ast.Module] = field(default_factory=dict)
    namespaces: dict[str, dict[str, ast.Definition]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def namespace_of(self, definition: ast.Definition) -> dict[str, ast.Definition]:
        """Definitions visible from inside ``definition`` (its file's own and imported)."""
        return self.namespaces[definition.span.file]

    def networks(self) -> list[ast.Definition]:
        """The networks defined in the main file, in source order."""
        return [d for d in self.main.definitions if d.kind == "network"]


def _printable(path: Path) -> str:
    return str(path).encode("utf-8", errors="backslashreplace").decode("utf-8")


def display_name(path: Path) -> str:
    """How a file is named in diagnostics: relative to the working folder when inside it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def resolve_source(source: str | os.PathLike[str]) -> tuple[str, str, Path | None]:
    """Turn a path, a zoo name or source text into (text, display name, real path)."""
    if isinstance(source, os.PathLike):
        return _read(Path(source))
    if "\n" in source or "{" in source:
        return source, "<string>", None
    path = Path(source)
    if path.suffix == ".arch" or os.sep in source or "/" in source:
        return _read(path)
    zoo_file = zoo_dir() / f"{source}.arch"
    if _is_file(zoo_file):
        return _read(zoo_file)
    if _is_file(path):
        return _read(path)
    hint = did_you_mean(source, zoo_names()) or "give a path to a .arch file, or one of: " + ", ".join(zoo_names())
    raise ArchImportError(f"`{source}` is neither a file nor a network of the zoo", None, hint, code="E251")


def _is_file(path: Path) -> bool:
    """``path.is_file()``, where a name the OS cannot even look up (NUL, surrogates, too long) is no file."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _read(path: Path) -> tuple[str, str, Path]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArchImportError(f"no such file: {_printable(path)}", None, code="E251") from None
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ArchImportError(f"cannot read {_printable(path)}: {reason}", None, code="E251") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not part of the text
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        column = len(data[line_start : err.start].decode("utf-8", errors="replace")) + 1
        name = display_name(path)
        span = Span(name, line, column, line, column + 1)
        shown = data.decode("utf-8", errors="replace")
        raise ArchImportError("the file is not valid UTF-8", span, code="E252", sources={name: shown}) from None
    return text, display_name(path), path.resolve()


def load_program(text: str, file: str, real_path: Path | None, virtual: Mapping[str, str] | None = None) -> Program:
    """Parse ``text`` and, recursively, its imports.

    ``virtual`` maps display names to texts; imports are looked up there
    first (a checkpoint carries its sources that way).
    """
    loader = _Loader(virtual or {})
    root_dir = real_path.parent if real_path is not None else Path.cwd()
    main = loader.load(text, file, real_path, root_dir, stack=())
    if loader.errors:
        raise combine(loader.errors, loader.program_sources)
    program = Program(main=main, modules=loader.modules, namespaces=loader.namespaces, sources=loader.program_sources)
    return program


class _Loader:
    def __init__(self, virtual: Mapping[str, str]) -> None:
        self.virtual = dict(virtual)
        self.modules: dict[str, ast.Module] = {}
        self.namespaces: dict[str, dict[str, ast.Definition]] = {}
        self.program_sources: dict[str, str] = {}
        self.errors: list[ArchError] = []

    def load(self, text: str, file: str, real: Path | None, root: Path, stack: tuple[str, ...]) -> ast.Module:
        self.program_sources[file] = text
        try:
            module = parse(text, file)
        except ArchError as err:
            self.errors.append(err)
            module = ast.Module(file, None, (), ())
        self.modules[file] = module
        namespace: dict[str, ast.Definition] = {}
        self.namespaces[file] = namespace
        for imp in module.imports:
            try:
                imported = self._import(imp, file, real, root, stack + (file,))
            except ArchError as err:
                self.errors.append(err)
                continue
            exported = {d.name: d for d in imported.definitions}
            wanted = imp.names if imp.names is not None else tuple(exported)
            for name in wanted:
                if name not in exported:
                    hint = did_you_mean(name, exported)
                    span = imp.name_spans[wanted.index(name)] if imp.name_spans else imp.span
                    self.errors.append(ArchNameError(f"`{imp.path}` defines no `{name}`", span, hint, code="E253"))
                    continue
                namespace[name] = exported[name]
        for definition in module.definitions:
            if definition.name in namespace and namespace[definition.name] is not definition:
                other = namespace[definition.name]
                self.errors.append(
                    ArchNameError(
                        f"`{definition.name}` is defined twice",
                        definition.name_span,
                        f"the other definition is at {other.name_span}",
                        code="E207",
                    )
                )
            namespace[definition.name] = definition
        return module

    def _import(self, imp: ast.Import, file: str, real: Path | None, root: Path, stack: tuple[str, ...]) -> ast.Module:
        if len(stack) > (depth := limits.current().max_import_depth):
            raise ArchImportError(f"imports nest deeper than {depth} files", imp.span, code="E254")
        if Path(imp.path).is_absolute():
            raise ArchImportError(
                f"import `{imp.path}` is an absolute path",
                imp.span,
                "imports are relative to the importing file or the zoo",
                code="E255",
            )
        if not imp.path.endswith(".arch"):
            raise _not_arch(imp)
        virtual_name = os.path.normpath(os.path.join(os.path.dirname(file), imp.path))
        if virtual_name in self.virtual:
            return self._enter(self.virtual[virtual_name], virtual_name, None, root, stack, imp)
        here = real.parent if real is not None else root
        for base in (here, zoo_dir()):
            try:
                candidate = (base / imp.path).resolve()
            except (OSError, ValueError):
                candidate = None
            if candidate is None or not _is_file(candidate):
                continue
            if candidate.suffix != ".arch":  # a link named .arch pointing at another kind of file
                raise _not_arch(imp)
            allowed = (root.resolve(), zoo_dir().resolve(), here.resolve())
            if not any(candidate.is_relative_to(r) for r in allowed):
                raise ArchImportError(
                    f"import `{imp.path}` leaves the folders imports may read",
                    imp.span,
                    "imports are relative to the importing file's folder or the zoo",
                    code="E255",
                )
            text, display, real_path = _read(candidate)
            return self._enter(text, display, real_path, root, stack, imp)
        known = [str(p.relative_to(base)) for base in (here, zoo_dir()) for p in base.rglob("*.arch")]
        near = did_you_mean(imp.path, known)
        where = f"looked in {display_name(here)} and in the zoo"
        raise ArchImportError(
            f"cannot find `{imp.path}`", imp.span, f"{near} ({where})" if near else where, code="E251"
        )

    def _enter(self, text, display, real_path, root, stack, imp) -> ast.Module:
        if display in stack:
            cycle = " -> ".join((*stack[stack.index(display) :], display))
            raise ArchImportError(f"import cycle: {cycle}", imp.span, code="E256")
        if display in self.modules:
            return self.modules[display]
        return self.load(text, display, real_path, root, stack)


def _not_arch(imp: ast.Import) -> ArchImportError:
    return ArchImportError(
        f"import `{imp.path}` is not an `.arch` file", imp.span, "imports load only `.arch` files", code="E255"
    )
