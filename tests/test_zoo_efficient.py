"""EfficientNet-B0..B7 and RegNetY-400MF/800MF/16GF are torchvision's, exactly (as test_zoo_torchvision means it).

Every builder name: its parameter count, and the same state_dict keys, shapes
and order as torchvision's model, both built on the meta device (no weights,
no time), plus the settings a state_dict does not show (batch norm eps and
momentum, dropout and stochastic depth rates). Where the suite's budget (2
cores, 4 GB) allows: eval outputs after the reference's batch norms get random
affine parameters and running statistics, and one training step's gradients
and running statistics under the same dropout and stochastic depth draws
(``EXACT``); one eval forward pass for the largest (``FORWARD``).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import cache
from unittest import mock

import pytest
import torch
import torchvision
from conftest import release_memory
from equivalence import (
    archdsl_and_torchvision,
    assert_same_eval_output,
    assert_same_eval_output_with_random_norms,
    assert_same_training_step,
    count_dropped_samples,
    randomize_norms,
    shapes,
)
from torchvision.models.regnet import BlockParams

import archdsl
from archdsl.resources import zoo_aliases

# builder name (an alias of efficientnet.arch or regnet_y.arch) -> parameters of torchvision 0.29.1's model
BUILDERS = {
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
    "regnet_y_400mf": 4_344_144,
    "regnet_y_800mf": 6_432_512,
    "regnet_y_16gf": 83_590_140,
}
# outputs and one training step's gradients compared
EXACT = ["efficientnet_b0", "efficientnet_b1", "efficientnet_b3", "regnet_y_400mf", "regnet_y_800mf"]
# one eval forward pass compared (334 MB of weights)
FORWARD = ["efficientnet_b7", "regnet_y_16gf"]
EVAL_INPUT = (1, 3, 96, 96)
TRAIN_INPUT = (2, 3, 64, 64)

_from_init_params = BlockParams.from_init_params.__func__


def _widths_on_the_cpu(cls, *args, **kwargs):
    with torch.device("cpu"):
        return _from_init_params(cls, *args, **kwargs)


@contextmanager
def meta_device():
    """``torch.device("meta")``, but RegNet's stage widths are computed with tensors that torchvision reads back."""
    with torch.device("meta"), mock.patch.object(BlockParams, "from_init_params", classmethod(_widths_on_the_cpu)):
        yield


@cache
def on_meta(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Ours and torchvision's model for a builder name, without allocating or initialising a weight (built once)."""
    with meta_device():
        return archdsl.load(name), getattr(torchvision.models, name)()


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


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_settings_outside_the_state_dict_are_torchvisions(name):
    """Batch norm eps and momentum (1e-3 and 0.01 in B5-B7), dropout, each residual block's stochastic depth rate."""
    ours, reference = on_meta(name)

    def norms(model):
        return [(n, m.eps, m.momentum) for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]

    assert norms(ours) == norms(reference)
    dropouts = [m.p for m in reference.modules() if isinstance(m, torch.nn.Dropout)]
    assert [m.p for m in ours.modules() if isinstance(m, torch.nn.Dropout)] == dropouts
    # torchvision keeps a StochasticDepth in every MBConv but applies it only on the residual path,
    # and a rate of 0 does nothing; ours has one exactly where it acts
    rates = {
        n: m.p
        for n, m in reference.named_modules()
        if isinstance(m, torchvision.ops.StochasticDepth)
        and m.p > 0
        and reference.get_submodule(n[: n.rindex(".")]).use_res_connect
    }
    assert {n: m.p for n, m in ours.named_modules() if type(m).__name__ == "DropPath"} == rates


def test_every_builder_is_an_alias_of_one_file_with_a_variant():
    for name in BUILDERS:
        alias = zoo_aliases()[name]
        assert alias.file == ("efficientnet" if name.startswith("efficientnet") else "regnet_y")
        assert dict(alias.params) == {"variant": name.rsplit("_", 1)[1]}
    assert archdsl.graph("efficientnet", variant="b3").graph["total_params"] == BUILDERS["efficientnet_b3"]
    with pytest.raises(archdsl.ArchError, match=r'"b8" is not one of \["b0", "b1"'):
        archdsl.graph("efficientnet", variant="b8")


@pytest.fixture(scope="module", params=EXACT)
def pair(request):
    yield archdsl_and_torchvision(request.param)
    release_memory()


def test_eval_outputs_match_with_the_same_weights(pair):
    ours, reference = pair
    assert_same_eval_output_with_random_norms(ours, reference, EVAL_INPUT)


def test_one_training_step_has_the_same_gradients(pair):
    ours, reference = pair
    dropped = count_dropped_samples(reference)
    assert_same_training_step(ours, reference, TRAIN_INPUT)
    if isinstance(reference, torchvision.models.EfficientNet):
        assert sum(dropped) > 0, "no residual branch was dropped: the step would not compare the masks"


@pytest.mark.parametrize("name", FORWARD)
def test_the_largest_give_torchvisions_output(name):
    """Ours is built on the meta device and takes the reference's tensors (``assign``): one copy of the weights."""
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)()
    randomize_norms(reference, seed=4)
    with torch.device("meta"):
        ours = archdsl.load(name)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    assert_same_eval_output(ours, reference, EVAL_INPUT)
    del ours, reference
    release_memory()
