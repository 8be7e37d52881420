"""Files are never destroyed: an output that is a source, a folder or a special file is refused; writes are atomic.

The CLI cases run the real command line in a subprocess, as a user would:
each refusal exits 1, says why, and leaves the target byte for byte (or, for
a special file, kind for kind) as it was.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import archdsl
from archdsl.export import export
from archdsl.outputs import check_output, input_files, replacing, write_bytes
from archdsl.render import render

MAIN = 'import "lib.arch"\nnetwork n() {\n    input x: [4]\n    fc: linear(2) -> b()\n}\n'
LIB = "block b() {\n    relu\n}\n"


@pytest.fixture
def folder(tmp_path) -> Path:
    """A network in a.arch importing lib.arch; x.dot is a copy of a.arch (a source with a diagram's name)."""
    (tmp_path / "a.arch").write_text(MAIN)
    (tmp_path / "lib.arch").write_text(LIB)
    (tmp_path / "x.dot").write_text(MAIN)
    return tmp_path


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "archdsl", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def snapshot(path: Path) -> tuple:
    """What must not change: the kind of file, where a link points, and a regular file's bytes."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return ("link", os.readlink(path))
    if stat.S_ISREG(mode):
        return ("file", path.read_bytes())
    return (stat.S_IFMT(mode),)


def special(folder: Path, kind: str) -> str:
    """Make the output ``kind`` in ``folder`` and return its name."""
    if kind == "fifo":
        os.mkfifo(folder / "out.pt")
    elif kind == "symlink":
        (folder / "elsewhere.pt").write_bytes(b"someone's file")
        (folder / "out.pt").symlink_to("elsewhere.pt")
    elif kind == "dangling":
        (folder / "out.pt").symlink_to("missing.pt")
    elif kind == "link_to_source":
        (folder / "out.pt").symlink_to("a.arch")
    elif kind == "hard_link_to_import":
        os.link(folder / "lib.arch", folder / "out.pt")
    elif kind == "device":
        try:
            os.mknod(folder / "out.pt", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a twin of /dev/null
        except PermissionError:
            pytest.skip("cannot make a device node here")
    return "out.pt"


SPECIAL = ("fifo", "symlink", "dangling", "link_to_source", "hard_link_to_import", "device")
CASES = [
    # (command and its options before -o, the output or the special file to make, the code)
    (["graph", "a.arch"], "a.arch", "E610"),
    (["graph", "a.arch"], "lib.arch", "E610"),
    (["graph", "a.arch"], ".", "E611"),
    (["graph", "a.arch"], "fifo", "E612"),
    (["compile", "a.arch"], "a.arch", "E610"),
    (["compile", "a.arch"], "link_to_source", "E610"),
    (["compile", "a.arch"], ".", "E611"),
    (["compile", "a.arch"], "device", "E612"),
    (["compile", "a.arch"], "symlink", "E612"),
    (["compile", "a.arch"], "dangling", "E612"),
    (["export", "a.arch"], "./a.arch", "E610"),
    (["export", "a.arch"], "hard_link_to_import", "E610"),
    (["export", "a.arch"], "sub/", "E611"),
    (["render", "x.dot"], "x.dot", "E610"),
    (["render", "a.arch"], "fifo", "E612"),
]


@pytest.mark.parametrize(("command", "output", "code"), CASES, ids=[f"{c[0]}-{o}" for c, o, _ in CASES])
def test_the_cli_refuses_an_output_that_would_destroy_a_file(folder, command, output, code):
    if output in SPECIAL:
        output = special(folder, output)
    watched = sorted(folder.iterdir())
    before = {path.name: snapshot(path) for path in watched}
    result = run(folder, *command, "-o", output)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error[{code}]: refusing to write {output}" in result.stderr
    assert "Traceback" not in result.stderr and "wrote" not in result.stdout
    assert {path.name: snapshot(path) for path in sorted(folder.iterdir())} == before  # no temporary file left


def test_an_output_beside_the_sources_is_still_written(folder):
    result = run(folder, "graph", "a.arch", "-o", "a.json")
    assert result.returncode == 0, result.stderr
    assert (folder / "a.json").read_text().startswith("{")
    assert sorted(p.name for p in folder.iterdir()) == ["a.arch", "a.json", "lib.arch", "x.dot"]


# ----------------------------------------------------------------- the Python functions behind the commands


def test_the_python_writers_refuse_the_sources_too(folder, monkeypatch):
    monkeypatch.chdir(folder)
    module = archdsl.load("a.arch")
    g = archdsl.graph("a.arch")
    with pytest.raises(archdsl.ArchError, match="refusing to write a.arch") as info:
        archdsl.save_checkpoint(module, "a.arch")
    assert info.value.code == "E610"
    with pytest.raises(archdsl.ArchError, match="refusing to write lib.arch"):
        render(g, "lib.arch")
    with pytest.raises(archdsl.ArchError, match=r"refusing to write .*a\.arch"):
        render("a.arch", folder / "a.arch")
    with pytest.raises(archdsl.ArchError, match="refusing to write lib.arch"):
        export(module, "lib.arch", "torchscript")
    assert (folder / "a.arch").read_text() == MAIN and (folder / "lib.arch").read_text() == LIB


def test_input_files_are_the_main_file_and_its_imports(folder, monkeypatch):
    monkeypatch.chdir(folder)
    assert sorted(input_files(archdsl.graph("a.arch").graph)) == ["a.arch", "lib.arch"]
    assert input_files(archdsl.graph(MAIN.replace('import "lib.arch"\n', "").replace(" -> b()", "")).graph) == []


def test_check_output_accepts_new_and_regular_files(tmp_path):
    assert check_output(tmp_path / "new.pt") == tmp_path / "new.pt"
    (tmp_path / "old.pt").write_bytes(b"old")
    assert check_output(tmp_path / "old.pt", [tmp_path / "a.arch"]) == tmp_path / "old.pt"


def test_a_failed_write_leaves_the_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"the old weights")
    with pytest.raises(OSError, match="disk full"), replacing(target) as stream:
        stream.write(b"half of the new")
        raise OSError("disk full")
    assert target.read_bytes() == b"the old weights"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_a_replaced_file_keeps_its_mode_and_a_new_one_gets_the_usual_mode(tmp_path):
    target = tmp_path / "diagram.svg"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    fresh = write_bytes(tmp_path / "fresh.svg", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask
