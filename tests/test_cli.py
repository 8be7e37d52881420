"""The real command line, run in a subprocess as a user would."""

from __future__ import annotations

import json
import re
import subprocess
import sys

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
