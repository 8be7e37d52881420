"""The real command line, run in a subprocess as a user would."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading

import pytest

from archdsl import zoo_names


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archdsl", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def broken(tmp_path):
    path = tmp_path / "broken.arch"
    path.write_text("network n {\n    input x: [3, 8, 8]\n    c: conv(4, k=3, strde=2)\n}\n")
    return path


def test_check_the_whole_zoo():
    result = run("check")
    assert result.returncode == 0, result.stderr
    assert "ok resnet50: " in result.stdout and "25,557,032 parameters" in result.stdout
    count = len(zoo_names())
    assert f"{count} of {count} valid" in result.stdout


def test_check_reports_diagnostics_on_stderr_and_exits_1(broken):
    result = run("check", str(broken))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error[E219]: `conv` has no argument `strde`" in result.stderr
    assert "help: did you mean `stride`?" in result.stderr
    assert f"--> {broken}:3:21" in result.stderr
    assert "\x1b[" not in result.stderr  # no colour when not on a terminal


def test_check_json_output(broken):
    result = run("check", "--format", "json", str(broken), "resnet18")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["checked"] == 2 and report["failed"] == 1
    (diag,) = report["diagnostics"]
    assert (diag["line"], diag["column"], diag["code"], diag["severity"]) == (3, 21, "E219", "error")
    assert diag["hint"] == "did you mean `stride`?"


def test_overrides_with_p():
    result = run("compile", "resnet18", "-p", "num_classes=10")
    assert result.returncode == 0, result.stderr
    assert "11,181,642" in result.stdout and "[1, 10]" in result.stdout


def test_compile_prints_parameters_and_output_shape_and_writes_a_checkpoint(tmp_path):
    out = tmp_path / "r50.pt"
    result = run("compile", "resnet50", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "25,557,032" in result.stdout and "[1, 1000]" in result.stdout
    assert out.exists()


def test_a_bad_override_is_reported_at_the_override_with_a_note_at_the_parameter():
    result = run("check", "resnet18", "-p", "num_classes=ten")
    assert result.returncode == 1
    assert result.stderr.splitlines()[:4] == [
        'error[E309]: override `num_classes` must be a number, like its default `1000`, got string `"ten"`',
        " --> -p num_classes",
        "  = note: the parameter `num_classes` is defined at architectures/resnet18.arch:8:18",
        "  = help: give a number, e.g. `-p num_classes=1000`",
    ]
    assert "resnet.arch" not in result.stderr  # not where the value is used, deep in a library block


def test_an_override_of_the_right_kind_is_accepted_and_a_float_is_a_number():
    result = run("check", "cifar_densenet_bc", "-p", "compression=1", "-p", "bottleneck=false", "-p", "depth=40")
    assert result.returncode == 0, result.stderr


def test_usage_errors_exit_2():
    assert run("check", "--format", "xml").returncode == 2
    assert run("no-such-command").returncode == 2
    assert run("check", "-p", "nonsense").returncode == 2


def test_unknown_target_is_an_invalid_input():
    result = run("check", "resnet5")
    assert result.returncode == 1
    assert "did you mean `resnet50`?" in result.stderr


def test_list_shows_the_zoo():
    result = run("list")
    assert result.returncode == 0, result.stderr
    assert "densenet201" in result.stdout and "20,013,928" in result.stdout


def test_help_on_every_command():
    for command in ("check", "compile", "list"):
        result = run(command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout


def test_export_command(tmp_path):
    out = tmp_path / "m.pt2"
    result = run("export", "cifar_resnet", "--format", "pt2", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0
    bad = run("export", "cifar_resnet", "--format", "tflite", "-o", str(tmp_path / "x"))
    assert bad.returncode == 1 and "valid formats: torchscript, pt2, onnx" in bad.stderr


def test_fmt_command_check_diff_and_write(tmp_path):
    path = tmp_path / "n.arch"
    path.write_text("network n(a=1) {\n  input x:[3,8,8]   # in\n  c : conv( 4,k=3 ,pad=1)->relu\n}\n")
    check = run("fmt", "--check", str(path))
    assert check.returncode == 1 and "would reformat" in check.stdout
    diff = run("fmt", "--diff", str(path))
    assert diff.returncode == 0 and "+    c: conv(4, k=3, pad=1) -> relu" in diff.stdout
    assert run("fmt", str(path)).returncode == 0
    expected = "network n(a = 1) {\n    input x: [3, 8, 8]  # in\n    c: conv(4, k=3, pad=1) -> relu\n}\n"
    assert path.read_text() == expected
    assert run("fmt", "--check", str(path)).returncode == 0
    broken = tmp_path / "b.arch"
    broken.write_text("network n {\n input x: [3\n}\n")
    result = run("fmt", str(broken))
    assert result.returncode == 1 and "error[E101]" in result.stderr


def test_param_named_like_an_api_keyword_reaches_the_network(tmp_path):
    """`-p seed=...` sets the network's parameter `seed`, not the weight-initialisation seed."""
    source = tmp_path / "seeded.arch"
    source.write_text("network seeded(seed = 1) {\n    input x: [4]\n    fc: linear(seed)\n}\n")
    result = run("compile", str(source), "-p", "seed=7")
    assert result.returncode == 0, result.stderr
    assert re.search(r"output fc\s*│\s*\[1, 7\]", result.stdout), result.stdout


@pytest.mark.parametrize("option", [["--optimizer", "adam"], ["--schedule", "linear"], ["--data", "mnist"]])
def test_train_rejects_unknown_choices_before_building(option):
    result = run("train", "cifar_resnet", *option)
    assert result.returncode == 2
    assert option[0] in result.stderr


# ---------------------------------------------------------------- check and fmt: what they read and write

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="pipes and /dev/zero are POSIX")
MESSY = "network n(a=1) {\n  input x:[3,8,8]\n  c : conv( 4,k=3 ,pad=1)->relu\n}\n"
TIDY = "network n(a = 1) {\n    input x: [3, 8, 8]\n    c: conv(4, k=3, pad=1) -> relu\n}\n"


@posix_only
@pytest.mark.parametrize("command", ["check", "fmt"])
def test_check_and_fmt_refuse_devices_and_pipes(command, tmp_path):
    """``/dev/zero`` ended in a MemoryError, and ``check`` on a pipe hung."""
    os.mkfifo(tmp_path / "pipe.arch")
    result = subprocess.run(
        [sys.executable, "-m", "archdsl", command, "/dev/zero", str(tmp_path / "pipe.arch")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "error[E257]: /dev/zero is a character device, not a file" in result.stderr
    assert f"error[E257]: {tmp_path / 'pipe.arch'} is a pipe, not a file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def project(tmp_path):
    """A folder of .arch files: a network, a library, a broken file deeper down, and hidden ones never read."""
    (tmp_path / "net.arch").write_text('import "blocks/lib.arch"\n' + TIDY.replace("-> relu", "-> unit"))
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "lib.arch").write_text("block unit {\n    relu\n}\n")
    (tmp_path / "blocks" / "deeper").mkdir()
    (tmp_path / "blocks" / "deeper" / "broken.arch").write_text("network n {\n    input x: [4]\n    relux\n}\n")
    for hidden in (".venv", ".git"):
        (tmp_path / hidden).mkdir()
        (tmp_path / hidden / "junk.arch").write_text("not arch at all {")
    (tmp_path / ".hidden.arch").write_text("not arch at all {")
    (tmp_path / "notes.txt").write_text("not arch at all {")
    return tmp_path


def test_check_walks_a_folder(project):
    result = run("check", ".", cwd=project)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "ok blocks/lib.arch: a library (blocks, no network)",
        "ok net.arch: 3 nodes, 112 parameters, 0.000 GMACs",
        "2 of 3 valid",
    ]
    assert result.stderr.startswith("error[E202]: unknown op or block `relux`")
    assert "--> blocks/deeper/broken.arch:3:5" in result.stderr and "junk" not in result.stderr
    report = json.loads(run("check", "--format", "json", str(project)).stdout)
    assert report["checked"] == 3 and report["failed"] == 1
    assert [d["target"] for d in report["diagnostics"]] == [str(project / "blocks" / "deeper" / "broken.arch")]


def test_a_folder_without_arch_files_is_an_error(tmp_path):
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "x.arch").write_text("")
    for command in ("check", "fmt"):
        result = run(command, str(tmp_path))
        assert result.returncode == 1, command
        assert f"error[E251]: no .arch file in the folder {tmp_path}" in result.stderr


def test_fmt_walks_a_folder(project):
    (project / "blocks" / "deeper" / "broken.arch").unlink()
    (project / "net.arch").write_text(MESSY)
    (project / "blocks" / "messy.arch").write_text(MESSY)
    result = run("fmt", ".", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["reformatted blocks/messy.arch", "reformatted net.arch"]
    assert (project / "net.arch").read_text() == TIDY == (project / "blocks" / "messy.arch").read_text()
    assert (project / ".venv" / "junk.arch").read_text() == "not arch at all {"


def test_check_json_has_the_notes_of_the_text_output(tmp_path):
    path = tmp_path / "net.arch"
    path.write_text("block b() {\n    fc: conv(4, k=16)\n}\nnetwork n() {\n    input x: [3, 8, 8]\n    u: b()\n}\n")
    text = run("check", str(path))
    assert f"= note: in `u`, an instance of block `b` made at {path}:6:8" in text.stderr
    (diagnostic,) = json.loads(run("check", "--format", "json", str(path)).stdout)["diagnostics"]
    assert diagnostic["code"] == "E401" and diagnostic["line"] == 2
    assert diagnostic["notes"] == [
        {
            "file": str(path),
            "line": 6,
            "column": 8,
            "end_line": 6,
            "end_column": 11,
            "message": "in `u`, an instance of block `b` made",
        }
    ]


def test_fmt_keeps_the_mode_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "n.arch"
    path.write_text(MESSY)
    path.chmod(0o640)
    result = run("fmt", str(path))
    assert result.returncode == 0, result.stderr
    assert path.read_text() == TIDY
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["n.arch"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_fmt_writes_through_a_link_onto_its_target(tmp_path):
    (tmp_path / "real.arch").write_text(MESSY)
    (tmp_path / "link.arch").symlink_to("real.arch")
    assert run("fmt", str(tmp_path / "link.arch")).returncode == 0
    assert (tmp_path / "link.arch").is_symlink() and (tmp_path / "real.arch").read_text() == TIDY


def test_fmt_that_cannot_write_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from archdsl.cli import app

    path = tmp_path / "n.arch"
    path.write_text(MESSY)

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    result = CliRunner().invoke(app, ["fmt", str(path)])
    assert result.exit_code == 1
    assert f"error: cannot write {path}: No space left on device" in result.output
    assert path.read_text() == MESSY
    assert [p.name for p in tmp_path.iterdir()] == ["n.arch"]


def test_fmt_never_lets_a_reader_see_half_a_file(tmp_path):
    """Concurrent ``fmt`` runs read a half-written file and wrote it back truncated; a rename is all or nothing."""
    from archdsl.cli import _replace_text

    path = tmp_path / "n.arch"
    versions = [MESSY * 20_000, TIDY * 20_000]
    path.write_text(versions[0])
    seen, done = set(), threading.Event()

    def read_while_writing():
        while not done.is_set():
            seen.add(len(path.read_bytes()))

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    try:
        for i in range(50):
            _replace_text(path, versions[i % 2])
    finally:
        done.set()
        reader.join()
    assert seen <= {len(v) for v in versions}
    assert [p.name for p in tmp_path.iterdir()] == ["n.arch"]
