"""Read a source and everything it imports into a :class:`Program`.

Imports resolve against the importing file's folder, then the zoo. An import
may not leave those folders (no absolute paths, no ``..`` or symlink
escapes); missing files and import cycles are located errors. Every file is
read the same way (:func:`read_source_bytes`): regular files only, at most
``Limits.max_file_bytes`` of them.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from archdsl import limits
from archdsl import syntax as ast
from archdsl.errors import ArchError, ArchImportError, ArchLimitError, ArchNameError, Span, combine, did_you_mean
from archdsl.parse import parse
from archdsl.resources import zoo_aliases, zoo_dir, zoo_names


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
    if _exists(path):  # a folder or a device is refused by _read, saying what it is
        return _read(path)
    names = sorted([*zoo_names(), *zoo_aliases()])  # an alias never gets here: the pipeline expands it first
    hint = did_you_mean(source, names) or "give a path to a .arch file, or one of: " + ", ".join(names)
    raise ArchImportError(f"`{source}` is neither a file nor a network of the zoo", None, hint, code="E251")


def _is_file(path: Path) -> bool:
    """``path.is_file()``, where a name the OS cannot even look up (NUL, surrogates, too long) is no file."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _exists(path: Path) -> bool:
    """Whether anything (a file, a folder, a device, a link loop) has this name."""
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(path: Path, mode: int, span: Span | None) -> ArchImportError:
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return ArchImportError(
        f"{_printable(path)} is {kind}, not a file", span, "archdsl reads only regular `.arch` files", code="E257"
    )


def _link_loop(path: Path, span: Span | None) -> ArchImportError:
    hint = "the link leads, through other links, back to itself"
    return ArchImportError(f"{_printable(path)} is a loop of symbolic links", span, hint, code="E257")


def read_source_bytes(path: Path, span: Span | None = None) -> bytes:
    """The bytes of the source file ``path``: a regular file of at most ``Limits.max_file_bytes``.

    Folders, devices, pipes and sockets are refused before they are opened
    (E257; a pipe would block, ``/dev/zero`` never ends), and so is a loop of
    symbolic links; a larger file is E258. ``span`` locates the errors (an
    import statement).
    """
    most = limits.current().max_file_bytes
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode, span)
        # O_NONBLOCK: a file swapped for a pipe since the stat opens at once instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(mode := os.fstat(handle.fileno()).st_mode):
                raise _not_regular(path, mode, span)
            data = handle.read(most + 1)
    except FileNotFoundError:
        raise ArchImportError(f"no such file: {_printable(path)}", span, code="E251") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise _link_loop(path, span) from None
        reason = err.strerror or str(err)
        raise ArchImportError(f"cannot read {_printable(path)}: {reason}", span, code="E251") from None
    except ValueError as err:  # a NUL in the name
        raise ArchImportError(f"cannot read {_printable(path)}: {err}", span, code="E251") from None
    if len(data) > most:
        raise ArchLimitError(
            f"{_printable(path)} is larger than {most:,} bytes",
            span,
            "raise it with archdsl.Limits(max_file_bytes=...) if the file really is this large",
            code="E258",
        )
    return data


def _read(path: Path, span: Span | None = None) -> tuple[str, str, Path]:
    data = read_source_bytes(path, span)
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
            except RuntimeError:  # before Python 3.13, a loop of symbolic links
                raise _link_loop(base / imp.path, imp.span) from None
            except (OSError, ValueError):
                candidate = None
            if candidate is None or not _exists(candidate):
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
            text, display, real_path = _read(candidate, imp.span)
            return self._enter(text, display, real_path, root, stack, imp)
        known = [name for base in (here, zoo_dir()) for name in _arch_files_near(base)]
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


HINT_ENTRIES = 2000  # folder entries the "did you mean" of a missing import may look at, per folder


def _arch_files_near(base: Path, most: int = HINT_ENTRIES) -> Iterator[str]:
    """``.arch`` files under ``base`` (paths relative to it), nearest folders first, from ``most`` entries at most.

    Hidden folders and links to folders are not entered: with the working
    folder at ``/``, a full walk took 39 s to suggest a name.
    """
    pending, seen = deque([(base, "")]), 0
    while pending and seen < most:
        folder, relative = pending.popleft()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    seen += 1
                    if seen > most:
                        break
                    name = relative + entry.name
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if not entry.name.startswith("."):
                                pending.append((Path(entry.path), name + "/"))
                        elif entry.name.endswith(".arch"):
                            yield name
                    except OSError:
                        continue
        except (OSError, ValueError):
            continue


@functools.cache
def zoo_library_blocks() -> dict[str, tuple[str, ...]]:
    """Blocks of the zoo's libraries (``lib/*.arch``): name -> the imports that bring it, e.g. ``lib/resnet.arch``.

    Parsed once, the first time a name is not found, for the hint that says which import is missing.
    """
    found: dict[str, list[str]] = {}
    for path in sorted((zoo_dir() / "lib").glob("*.arch")):
        import_path = path.relative_to(zoo_dir()).as_posix()
        try:
            module = parse(read_source_bytes(path).decode("utf-8-sig"), import_path)
        except (ArchError, UnicodeDecodeError):
            continue
        for definition in module.definitions:
            if definition.kind == "block":
                found.setdefault(definition.name, []).append(import_path)
    return {name: tuple(paths) for name, paths in found.items()}


def _not_arch(imp: ast.Import) -> ArchImportError:
    return ArchImportError(
        f"import `{imp.path}` is not an `.arch` file", imp.span, "imports load only `.arch` files", code="E255"
    )
