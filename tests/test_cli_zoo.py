"""Every command on every zoo file (in-process through Typer's runner; test_cli.py runs the real binary)."""

from __future__ import annotations

import pytest
import zoo_configs
from typer.testing import CliRunner
from zoo_configs import as_cli

from archdsl import zoo_names
from archdsl.cli import app

runner = CliRunner()


def small_overrides(name: str) -> list[str]:
    """compile writes a checkpoint: a small configuration (tests/zoo_configs.py) keeps it fast."""
    return as_cli(zoo_configs.small_overrides(name))


@pytest.mark.parametrize("name", zoo_names())
def test_every_command_on_every_zoo_file(name, tmp_path):
    small = small_overrides(name)
    for args in (
        ["check", name],
        ["summary", name, "--depth", "2"],
        ["graph", name, "-o", str(tmp_path / "g.json")],
        ["render", name, "-o", str(tmp_path / "d.dot")],
        ["compile", name, *small, "-o", str(tmp_path / "m.pt")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
