"""Memory is bounded before it is allocated, and an allocation that fails anyway is an archdsl error.

Nothing here allocates more than a few megabytes: the reproducers are
refused by the limits, and failures are simulated with monkeypatch.
"""

from __future__ import annotations

import math
import resource
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import archdsl
from archdsl.cli import app

# The two reproducers of issue 13: a 16 GiB weight, and a 10.8 GB random test input.
HUGE_LAYER = "network n() {\n    input x: [65536]\n    fc: linear(65536, bias=false)\n}\n"
HUGE_INPUT = "network n() {\n    input x: [3, 30000, 30000]\n    relu\n}\n"


@pytest.mark.parametrize(
    ("source", "code", "line"), [(HUGE_LAYER, "E326", 3), (HUGE_INPUT, "E327", 2)], ids=["layer", "input"]
)
def test_the_cli_refuses_networks_too_large_to_allocate(tmp_path, source, code, line):
    path = tmp_path / "big.arch"
    path.write_text(source)
    result = subprocess.run(
        [sys.executable, "-m", "archdsl", "compile", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error[{code}]" in result.stderr and f"big.arch:{line}:" in result.stderr
    assert "Traceback" not in result.stderr
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
    assert peak < 4 * 2**30, f"a child peaked at {peak / 2**30:.1f} GiB"


# GPT-2's 1,024 x 50,257 token logits (51 million values, 206 MB a sample) are the zoo's largest activation
# by far: the limit fits them 5 times; the U-Net's first 64 x 568 x 568 maps (21 million) 12 times. Every
# other network fits it 64 times or more.
MARGIN = {"gpt": 5, "unet": 12}


def test_every_zoo_network_fits_the_activation_limit_many_times_over():
    most = archdsl.Limits().max_activation
    for name in archdsl.zoo_names():
        g = archdsl.graph(name)
        largest = max(math.prod(d["shape"]) for _, d in g.nodes(data=True))
        assert largest * MARGIN.get(name, 64) <= most, (name, largest)


def test_the_activation_limit_can_be_raised_for_one_call():
    source = "network n() {\n    input x: [3, 64, 64]\n    relu\n}\n"
    with pytest.raises(archdsl.ArchLimitError, match="E327"):
        archdsl.graph(source, limits=archdsl.Limits(max_activation=1000))
    assert len(archdsl.graph(source, limits=archdsl.Limits(max_activation=3 * 64 * 64))) == 2


MLP = "network mlp() {\n    input x: [64]\n    fc: linear(16) -> relu\n    out: linear(10)\n}\n"


def test_an_allocation_failure_in_the_test_forward_pass_names_the_largest_activation(tmp_path, monkeypatch):
    path = tmp_path / "mlp.arch"
    path.write_text(MLP)
    made = []

    def randn(*shape, **kwargs):
        made.append(shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 bytes")

    monkeypatch.setattr(torch, "randn", randn)
    result = CliRunner().invoke(app, ["compile", str(path), "--batch", "4096"])
    assert made == [(4096, 64)]
    assert result.exit_code == 1, result.output
    assert "error[E328]: out of memory in the test forward pass: the largest activation, `x` [4096, 64]" in (
        result.output
    )
    assert "help: use a smaller --batch" in result.output


def test_other_forward_failures_are_not_taken_for_memory(tmp_path, monkeypatch):
    path = tmp_path / "mlp.arch"
    path.write_text(MLP)

    def randn(*shape, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(torch, "randn", randn)
    result = CliRunner().invoke(app, ["compile", str(path)])
    assert isinstance(result.exception, RuntimeError) and "a bug" in str(result.exception)


def test_a_batch_below_one_is_a_usage_error():
    result = CliRunner().invoke(app, ["compile", "cifar_resnet", "--batch", "0"])
    assert result.exit_code == 2
