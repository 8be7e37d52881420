"""torchvision's builders that the zoo reaches by name (files and aliases): exact, as test_zoo_torchvision means it.

Every builder: its parameter count, and the same state_dict keys, shapes and
order as torchvision's model, both built on the meta device (no weights, no
time). The numeric checks run where the suite's budget (2 cores, 4 GB) allows:
eval outputs after the reference's batch norms get random affine parameters
and running statistics, and one training step's gradients and running
statistics, for the builders of ``EXACT``; one eval forward pass at a small
input for the largest ones (``FORWARD``).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import release_memory
from equivalence import (
    archdsl_and_torchvision,
    assert_same_eval_output,
    assert_same_eval_output_with_random_norms,
    assert_same_training_step,
    randomize_norms,
    shapes,
)

import archdsl
from archdsl.resources import read_aliases, zoo_aliases, zoo_dir, zoo_names

# builder name -> parameters of torchvision 0.29.1's model with its defaults
BUILDERS = {
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
}
# outputs and one training step's gradients compared (the models up to ~70M parameters)
EXACT = ["resnext50_32x4d", "wide_resnet50_2", "squeezenet1_0", "squeezenet1_1"]
# one eval forward pass compared (the largest: 350-500 MB of weights each)
FORWARD = ["resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2"]
EVAL_INPUT = (1, 3, 96, 96)  # large enough for SqueezeNet's three poolings and ResNet's 32x reduction
TRAIN_INPUT = (2, 3, 64, 64)


def torchvision_model(name: str) -> torch.nn.Module:
    """torchvision's model for a builder name, with its defaults (the one place to give a builder arguments)."""
    return getattr(torchvision.models, name)()


def on_meta(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Ours and torchvision's model for a builder name, without allocating or initialising a weight."""
    with torch.device("meta"):
        return archdsl.load(name), torchvision_model(name)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_parameter_count_is_torchvisions(name):
    assert archdsl.graph(name).graph["total_params"] == BUILDERS[name]
    ours, reference = on_meta(name)
    assert sum(p.numel() for p in reference.parameters()) == BUILDERS[name], "the table is stale"
    assert sum(p.numel() for p in ours.parameters()) == BUILDERS[name]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_state_dict_keys_shapes_and_order_are_torchvisions(name):
    ours, reference = on_meta(name)
    assert shapes(ours) == shapes(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)


def test_every_builder_is_a_zoo_file_or_an_alias():
    assert set(BUILDERS) <= set(zoo_names()) | set(zoo_aliases())
    assert set(EXACT) | set(FORWARD) <= set(BUILDERS)


@pytest.fixture(scope="module", params=EXACT)
def pair(request):
    yield archdsl_and_torchvision(request.param)
    release_memory()


def test_eval_outputs_match_with_the_same_weights(pair):
    ours, reference = pair
    assert_same_eval_output_with_random_norms(ours, reference, EVAL_INPUT)


def test_one_training_step_has_the_same_gradients(pair):
    ours, reference = pair
    assert_same_training_step(ours, reference, TRAIN_INPUT)


@pytest.mark.parametrize("name", FORWARD)
def test_the_largest_give_torchvisions_output(name):
    """Ours is built on the meta device and takes the reference's tensors (``assign``): one copy of the weights."""
    torch.manual_seed(0)
    reference = torchvision_model(name)
    randomize_norms(reference, seed=4)
    with torch.device("meta"):
        ours = archdsl.load(name)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    assert_same_eval_output(ours, reference, EVAL_INPUT)
    del ours, reference
    release_memory()


def test_the_shipped_alias_table_is_valid_and_every_alias_builds():
    table = read_aliases(zoo_dir() / "aliases.toml", zoo_names())
    assert table == zoo_aliases()
    for name, alias in table.items():
        assert name not in zoo_names() and alias.file in zoo_names()
        g = archdsl.graph(name)
        assert g.graph["name"] == alias.file
        assert {k: g.graph["params"][k] for k in alias.params} == dict(alias.params)


def test_overrides_win_over_an_alias_and_checkpoints_keep_the_variant(tmp_path):
    g = archdsl.graph("resnext101_32x8d", num_classes=10, width_per_group=4)
    assert g.graph["params"]["depth"] == 101 and g.graph["params"]["width_per_group"] == 4
    assert g.graph["total_params"] == archdsl.graph("resnext", depth=101, num_classes=10).graph["total_params"]
    module = archdsl.load("squeezenet1_1", num_classes=10, size=64)
    assert module.meta["archdsl"]["overrides"] == {"version": 1.1, "num_classes": 10, "size": 64}
    archdsl.save_checkpoint(module, tmp_path / "m.pt")
    again = archdsl.load_checkpoint(tmp_path / "m.pt")
    assert shapes(again) == shapes(module)
    assert archdsl.api.graph_of_module(again).graph["params"]["version"] == 1.1


def test_an_unknown_name_suggests_an_alias():
    with pytest.raises(archdsl.ArchImportError) as info:
        archdsl.graph("resnext50_32x4")
    assert info.value.diagnostics[0].hint == "did you mean `resnext50_32x4d`?"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('[resnet50]\nfile = "resnet50"\n', "alias `resnet50` is also the name of a zoo file"),
        ('[resnet_50]\nfile = "resnet5"\n', "alias `resnet_50` names `resnet5`, which is no zoo file"),
        ("[resnet_50]\nparams = { depth = 50 }\n", "alias `resnet_50` has no `file`"),
        ('[resnet_50]\nfile = "resnet50"\ndepth = 50\n', "alias `resnet_50` has an unknown key `depth`"),
        ('[resnet_50]\nfile = "resnet50"\nparams = { a = { b = 1 } }\n', "params that are not a table of values"),
        ('resnet_50 = "resnet50"\n', "alias `resnet_50` is not a table"),
    ],
)
def test_a_broken_alias_table_is_a_located_error(tmp_path, entry, message):
    path = tmp_path / "aliases.toml"
    path.write_text("# a comment\n\n" + entry, encoding="utf-8")
    with pytest.raises(archdsl.ArchImportError) as info:
        read_aliases(path, zoo_names())
    diagnostic = info.value.diagnostics[0]
    assert diagnostic.code == "E251" and message in diagnostic.message
    assert diagnostic.span.line == 3 and diagnostic.span.column == 1
    assert "3 | " in str(info.value)


def test_the_cli_takes_aliases_and_lists_them(monkeypatch):
    from typer.testing import CliRunner

    from archdsl import cli

    runner = CliRunner()
    result = runner.invoke(cli.app, ["check", "squeezenet1_1", "-p", "num_classes=10"])
    assert result.exit_code == 0 and "ok squeezenet1_1: " in result.output, result.output
    assert "727,626 parameters" in result.output  # 1,235,496 less 990 classifier outputs of 513 parameters
    monkeypatch.setattr(cli, "zoo_names", lambda: ["squeezenet"])
    monkeypatch.setattr(cli, "zoo_aliases", lambda: {"squeezenet1_1": zoo_aliases()["squeezenet1_1"]})
    result = runner.invoke(cli.app, ["list"])
    assert result.exit_code == 0, result.output
    assert "squeezenet1_1" in result.output and "= squeezenet -p version=1.1" in result.output


@pytest.mark.parametrize("flags", [[False, True, True], [True, True, True]])
def test_resnet50_with_dilated_stages_is_torchvisions(flags):
    """DeepLab's backbone: stages that keep their input's size and dilate their 3x3 convolutions instead."""
    ours = archdsl.load("resnet50", replace_stride_with_dilation=flags, size=64, num_classes=10)
    reference = torchvision.models.resnet50(replace_stride_with_dilation=flags, num_classes=10)
    assert shapes(ours) == shapes(reference)
    assert_same_eval_output_with_random_norms(ours, reference, (2, 3, 64, 64))
    assert archdsl.graph("resnet50", replace_stride_with_dilation=flags).nodes["layer4.2.relu3"]["shape"][1] > 7
