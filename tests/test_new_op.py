"""A new op needs only its registry entry: `softsign` is checked, drawn, summarised and compiled.

The op is registered through the public API for the duration of each test
(docs/architecture.md, "Adding an op", walks through the same entry).
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

import archdsl
from archdsl.cli import app
from archdsl.ops import OpSpec, lookup, registered, user_ops
from archdsl.render import render, render_dot
from archdsl.summary import summarize

SOFTSIGN = OpSpec(
    name="softsign",
    summary="softsign x / (1 + |x|)",
    infer=lambda args, shapes: shapes[0],
    emit=lambda call, inputs, args: call(F.softsign, tuple(inputs)),
    fill="#e8dff5",
)

SOURCE = '''
"""A small network that uses softsign twice."""
network softsign_net(num_classes = 5) {
    input x: [3, 8, 8]
    conv: conv(4, k=3, pad=1) -> act: softsign -> flatten -> fc: linear(num_classes) -> out: softsign
}
'''

runner = CliRunner()


@pytest.fixture
def softsign():
    with registered(SOFTSIGN) as spec:
        yield spec
    assert lookup("softsign") is None


@pytest.fixture
def arch_file(tmp_path):
    path = tmp_path / "softsign_net.arch"
    path.write_text(SOURCE, encoding="utf-8")
    return path


def test_the_op_is_known_only_while_registered(softsign):
    assert "softsign" in user_ops()
    with pytest.raises(ValueError, match="registered twice"):
        archdsl.ops.register(SOFTSIGN)


def test_unregistered_the_op_is_unknown():
    with pytest.raises(archdsl.ArchNameError) as err:
        archdsl.graph(SOURCE)
    assert err.value.diagnostics[0].code == "E202"


def test_check(softsign):
    g = archdsl.graph(SOURCE)
    assert g.nodes["act"]["op"] == "softsign" and g.nodes["act"]["shape"] == (4, 8, 8)
    assert g.nodes["out"]["shape"] == (5,)
    assert g.nodes["act"]["params"] == 0 and g.nodes["act"]["macs"] == 0


def test_render(softsign, tmp_path):
    text = render_dot(SOURCE, level="layer")
    act = next(line for line in text.splitlines() if line.lstrip().startswith("act "))
    assert 'label="act\\nsoftsign\\n4×8×8"' in act and 'fillcolor="#e8dff5"' in act
    render(archdsl.graph(SOURCE), tmp_path / "net.svg")
    svg = (tmp_path / "net.svg").read_text(encoding="utf-8")
    assert "<svg" in svg and "softsign" in svg


def test_summary(softsign):
    rows = {row.path: row for row in summarize(archdsl.graph(SOURCE))}
    assert rows["act"].op == "softsign" and rows["act"].shape == (4, 8, 8)
    assert rows["out"].op == "softsign" and rows["out"].shape == (5,)


def test_cli(softsign, arch_file, tmp_path):
    for args, expected in (
        (["check", str(arch_file)], "ok"),
        (["summary", str(arch_file)], "softsign"),
        (["compile", str(arch_file), "--batch", "2"], "[2, 5]"),
        (["render", str(arch_file), "-o", str(tmp_path / "net.dot")], "wrote"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert expected in result.output, (args, result.output)


def test_compiled_module_computes_softsign(softsign):
    module = archdsl.load(SOURCE, seed=0).eval()
    x = torch.randn(2, 3, 8, 8)

    def by_hand(x: torch.Tensor) -> torch.Tensor:
        def soft(t: torch.Tensor) -> torch.Tensor:
            return t / (1 + t.abs())

        y = soft(F.conv2d(x, module.conv.weight, module.conv.bias, padding=1))
        return soft(y.flatten(1) @ module.fc.weight.T + module.fc.bias)

    with torch.no_grad():
        torch.testing.assert_close(module(x), by_hand(x))
    assert "torch.nn.functional.softsign" in module.code
