"""Reading sources: only regular files, of a bounded size; import errors that are located, fast and helpful.

Each test is a reproducer from issue 13: /dev/zero and pipes read as sources,
a loop of symbolic links, a missing import's hint walking the whole disk, and
a block used without the zoo import that brings it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from test_robustness import time_limit

import archdsl
from archdsl.loader import _arch_files_near, zoo_library_blocks

USES_X = "network n() {\n    input x: [4]\n    b()\n}\n"
posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="pipes and /dev/zero are POSIX")


def only_diagnostic(info: pytest.ExceptionInfo) -> archdsl.Diagnostic:
    assert isinstance(info.value, archdsl.ArchError)
    str(info.value)  # renders
    (diagnostic,) = info.value.diagnostics
    return diagnostic


# ---------------------------------------------------------------- regular files only, of a bounded size


@posix_only
def test_dev_zero_is_refused_not_read():
    """Reading it whole ended in a MemoryError."""
    with time_limit(20), pytest.raises(archdsl.ArchImportError) as info:
        archdsl.graph("/dev/zero")
    diagnostic = only_diagnostic(info)
    assert diagnostic.code == "E257" and diagnostic.message == "/dev/zero is a character device, not a file"


@posix_only
def test_a_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    """Opening a pipe waits for a writer: ``check`` hung."""
    os.mkfifo(tmp_path / "pipe.arch")
    with time_limit(20), pytest.raises(archdsl.ArchImportError) as info:
        archdsl.graph(tmp_path / "pipe.arch")
    assert only_diagnostic(info).code == "E257" and "is a pipe, not a file" in info.value.message


@posix_only
def test_an_imported_pipe_is_refused_at_the_import(tmp_path):
    os.mkfifo(tmp_path / "pipe.arch")
    (tmp_path / "main.arch").write_text('import "pipe.arch"\n' + USES_X)
    with time_limit(20), pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(tmp_path / "main.arch")
    first = info.value.diagnostics[0]
    assert first.code == "E257" and (first.span.file, first.span.line) == (str(tmp_path / "main.arch"), 1)


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(archdsl.ArchImportError) as info:
        archdsl.graph(tmp_path)
    assert only_diagnostic(info).code == "E257" and "is a folder, not a file" in info.value.message


def test_a_file_larger_than_the_limit_is_refused_after_reading_the_limit(tmp_path):
    """A sparse 64 GiB file: reading it whole would take minutes; the loader reads max_file_bytes + 1."""
    big = tmp_path / "big.arch"
    with big.open("wb") as handle:
        handle.truncate(64 * 2**30)
    start = time.process_time()
    with time_limit(60), pytest.raises(archdsl.ArchLimitError) as info:
        archdsl.graph(big)
    diagnostic = only_diagnostic(info)
    assert diagnostic.code == "E258" and diagnostic.message.endswith("is larger than 16,777,216 bytes")
    assert "Limits(max_file_bytes=...)" in diagnostic.hint
    assert time.process_time() - start < 10


def test_an_imported_file_larger_than_the_limit_is_refused_at_the_import(tmp_path):
    (tmp_path / "lib.arch").write_text("block b() {\n    relu\n}\n" + "# padding\n" * 20)
    (tmp_path / "main.arch").write_text('import "lib.arch"\n' + USES_X)
    assert archdsl.graph(tmp_path / "main.arch").number_of_nodes() == 2
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(tmp_path / "main.arch", limits=archdsl.Limits(max_file_bytes=100))
    first = info.value.diagnostics[0]
    assert first.code == "E258" and first.span.line == 1 and "lib.arch is larger than 100 bytes" in first.message


# ---------------------------------------------------------------- symbolic link loops


@pytest.fixture
def link_loop(tmp_path) -> Path:
    """``a.arch -> b.arch -> a.arch``."""
    (tmp_path / "a.arch").symlink_to("b.arch")
    (tmp_path / "b.arch").symlink_to("a.arch")
    return tmp_path


def test_an_import_through_a_link_loop_is_a_located_import_error(link_loop):
    """Path.resolve raised ``RuntimeError: Symlink loop``."""
    (link_loop / "main.arch").write_text('import "a.arch"\n' + USES_X)
    with pytest.raises(archdsl.ArchImportError) as info:
        archdsl.graph(link_loop / "main.arch")
    first = info.value.diagnostics[0]
    assert first.code == "E257" and "a.arch is a loop of symbolic links" in first.message
    assert first.span.line == 1 and first.span.column == 1


def test_a_main_file_that_is_a_link_loop(link_loop):
    with pytest.raises(archdsl.ArchImportError) as info:
        archdsl.graph(link_loop / "a.arch")
    assert only_diagnostic(info).code == "E257" and "loop of symbolic links" in info.value.message


# ---------------------------------------------------------------- the hint of a missing import


def test_a_missing_import_from_the_root_folder_is_reported_at_once(monkeypatch):
    """The did-you-mean walked the whole file system from ``/``: 39 s."""
    monkeypatch.chdir(Path(os.sep).resolve())
    start = time.perf_counter()
    with time_limit(30), pytest.raises(archdsl.ArchImportError) as info:
        archdsl.graph('import "nothing_here.arch"\n' + USES_X)
    assert info.value.diagnostics[0].code == "E251"
    assert time.perf_counter() - start < 10


def test_the_hint_looks_at_a_bounded_number_of_entries_nearest_first(tmp_path):
    for i in range(30):
        (tmp_path / f"file{i:02}.txt").write_text("")
    (tmp_path / "near.arch").write_text("")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "secret.arch").write_text("")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "far.arch").write_text("")
    assert sorted(_arch_files_near(tmp_path)) == ["a/b/far.arch", "near.arch"]
    assert list(_arch_files_near(tmp_path, most=33)) == ["near.arch"]  # the top folder's 33 entries, no deeper


def test_the_hint_still_finds_near_misses(tmp_path):
    (tmp_path / "blocks.arch").write_text("block b() {\n    relu\n}\n")
    (tmp_path / "main.arch").write_text('import "blokcs.arch"\nimport "lib/resnt.arch"\n' + USES_X)
    with pytest.raises(archdsl.ArchImportError) as info:
        archdsl.graph(tmp_path / "main.arch")
    hints = [d.hint for d in info.value.diagnostics]
    assert hints[0].startswith("did you mean `blocks.arch`?") and hints[1].startswith("did you mean `lib/resnet.arch`?")


# ---------------------------------------------------------------- which import brings a zoo block


def test_a_zoo_block_used_without_its_import_names_the_import():
    source = "network n() {\n    input x: [3, 32, 32]\n    b: basic(8)\n    s: stage dense_layer(4) x 2\n}\n"
    with pytest.raises(archdsl.ArchNameError) as info:
        archdsl.graph(source)
    hints = [(d.code, d.hint) for d in info.value.diagnostics]
    assert hints == [
        ("E202", '`import "lib/resnet.arch"` brings `basic`'),
        ("E202", '`import "lib/densenet.arch"` brings `dense_layer`'),
    ]


def test_other_unknown_names_keep_their_did_you_mean():
    with pytest.raises(archdsl.ArchNameError) as info:
        archdsl.graph("network n() {\n    input x: [4]\n    relux\n}\n")
    assert only_diagnostic(info).hint == "did you mean `relu`?"


def test_the_zoo_libraries_are_read_only_for_the_hint():
    zoo_library_blocks.cache_clear()
    archdsl.graph("resnet18")
    assert zoo_library_blocks.cache_info().currsize == 0, "a network that builds read the libraries for a hint"
    assert zoo_library_blocks()["bottleneck"] == ("lib/resnet.arch",)
