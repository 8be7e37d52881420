"""Where archdsl writes files: never over an input, a folder or a special file, and always atomically.

Every command and function that writes a file the user named (``graph -o``,
``compile -o``, ``render -o``, ``export``, checkpoints) goes through
:func:`check_output` and writes through :func:`replacing`: the data goes to a
temporary file in the same folder, which is renamed onto the target only once
it is complete, so a crash or a failed write never leaves a truncated file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from archdsl.errors import ArchError


class ArchOutputError(ArchError):
    """An output archdsl refuses to write: one of the program's own files, a folder or a special file."""

    default_code = "E610"


def input_files(meta: Mapping[str, Any]) -> list[str]:
    """The files a graph or a module was built from: its main file and every import (``<string>`` left out).

    ``meta`` is a validated graph's ``g.graph``, a module's
    ``module.meta["archdsl"]`` or a checkpoint payload: each holds ``file``
    and ``sources`` (file name -> text).
    """
    names = [meta.get("file"), *(meta.get("sources") or {})]
    return [name for name in dict.fromkeys(names) if isinstance(name, str) and name and not name.startswith("<")]


def check_output(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Refuse an output that would destroy something; returns ``path`` as a :class:`~pathlib.Path`.

    E610: ``path`` is one of ``inputs`` (the same file after resolving links,
    or a hard link to it). E611: ``path`` is a folder. E612: ``path`` is a
    symbolic link, a device, a pipe or a socket, which writing would replace
    with a regular file. A missing file, or a regular one, is fine.
    """
    text = os.fspath(path)
    target = Path(text)
    for name in inputs:
        if _same_file(target, Path(name)):
            raise ArchOutputError(
                f"refusing to write {text}: it is `{name}`, a source file of the network",
                None,
                "choose another output file; writing would destroy the source",
                code="E610",
            )
    try:
        mode = os.lstat(target).st_mode
    except (OSError, ValueError):  # missing, or a name the OS cannot look up: the write will say why
        mode = None
    if (mode is not None and stat.S_ISDIR(mode)) or os.path.basename(text) in ("", ".", ".."):
        raise ArchOutputError(
            f"refusing to write {text}: it is a folder",
            None,
            "name a file, not a folder",
            code="E611",
        )
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file (a device, a pipe or a socket)"
        raise ArchOutputError(
            f"refusing to write {text}: it is {kind}",
            None,
            "writing would replace it with a regular file; name a regular file or a new one instead",
            code="E612",
        )
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, ValueError, RuntimeError):  # unreadable, unnameable or a symlink loop: not provably the same
        return False


def _temporary_name(target: Path) -> Path:
    """A fresh hidden name beside ``target`` that keeps its suffix (torch.export warns without ``.pt2``)."""
    return target.with_name(f".{target.stem}.tmp-{secrets.token_hex(4)}{target.suffix}")


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary stream whose contents replace ``path`` when the block ends without an error.

    The stream is a new temporary file in the same folder (created with the
    usual permissions; an existing target's mode is kept), renamed onto
    ``path`` at the end; on any error it is removed and ``path`` is left as
    it was. Call :func:`check_output` first. ``OSError`` s propagate.
    """
    target = Path(path)
    tmp = _temporary_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
        _keep_mode(target, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def replacing_folder_files(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary folder beside ``path``: the files written into it replace their namesakes beside ``path``.

    For writers that take a file name and add side files next to it (ONNX
    puts large weights in ``<name>.data``): write to ``folder / path.name``;
    each file is then renamed into place, side files first. Every file is
    checked with :func:`check_output` before anything is renamed.
    """
    target = Path(path)
    folder = _temporary_name(target).with_suffix("")
    folder.mkdir()
    try:
        yield folder
        made = sorted(folder.iterdir(), key=lambda f: f.name == target.name)  # the main file last
        for file in made:
            check_output(target.with_name(file.name))
        for file in made:
            _keep_mode(target.with_name(file.name), file)
            os.replace(file, target.with_name(file.name))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _keep_mode(target: Path, tmp: Path) -> None:
    with contextlib.suppress(OSError):
        os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))


def write_bytes(path: str | os.PathLike[str], data: bytes, inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Check ``path`` with :func:`check_output`, then replace it atomically with ``data``."""
    target = check_output(path, inputs)
    with replacing(target) as stream:
        stream.write(data)
    return target
