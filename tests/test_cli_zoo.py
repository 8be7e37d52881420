"""Every command on every zoo file (in-process through Typer's runner; test_cli.py runs the real binary)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import archdsl
from archdsl import zoo_names
from archdsl.cli import app

runner = CliRunner()
# compile writes a checkpoint: smaller images, and a GPT with a small vocabulary and context, keep it fast
# (GPT-2 small's is 500 MB)
SMALL = {"size": 64, "image_size": 64}
SMALL_GPT = {"vocab_size": 97, "block_size": 16, "n_layer": 2}


def small_overrides(name: str) -> list[str]:
    params = archdsl.graph(name).graph["params"]
    chosen = SMALL_GPT if name == "gpt" else {key: value for key, value in SMALL.items() if key in params}
    return [arg for key, value in chosen.items() for arg in ("-p", f"{key}={value}")]


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
