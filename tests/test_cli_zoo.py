"""Every command on every zoo file (in-process through Typer's runner; test_cli.py runs the real binary)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import archdsl
from archdsl import zoo_names
from archdsl.cli import app

runner = CliRunner()


@pytest.mark.parametrize("name", zoo_names())
def test_every_command_on_every_zoo_file(name, tmp_path):
    small = ["-p", "size=64"] if "size" in archdsl.graph(name).graph["params"] else []
    for args in (
        ["check", name],
        ["summary", name, "--depth", "2"],
        ["graph", name, "-o", str(tmp_path / "g.json")],
        ["render", name, "-o", str(tmp_path / "d.dot")],
        ["compile", name, *small, "-o", str(tmp_path / "m.pt")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
