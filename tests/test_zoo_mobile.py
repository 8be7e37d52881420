"""The mobile networks are torchvision's, exactly: mobilenet_v2, mobilenet_v3_large and mobilenet_v3_small.

Keys, shapes and order of the state_dict, the parameter count, eval outputs
after the reference's batch norms get random affine parameters and running
statistics (untrained MobileNets output ~1e-9, which hides a wrong
activation), and one training step's gradients and running statistics.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import release_memory
from equivalence import (
    archdsl_and_torchvision,
    assert_same_eval_output_with_random_norms,
    assert_same_training_step,
    shapes,
)

import archdsl

# builder name (a zoo file or an alias) -> parameters of torchvision 0.29.1's model
BUILDERS = {
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
}
EVAL_INPUT = (2, 3, 96, 96)
TRAIN_INPUT = (2, 3, 64, 64)


def on_meta(name: str, **overrides) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Ours and torchvision's model, without allocating or initialising a weight."""
    with torch.device("meta"):
        return archdsl.load(name, **overrides), getattr(torchvision.models, name)(**overrides)


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


@pytest.mark.parametrize("width_mult", [0.5, 0.75])
def test_mobilenet_v2_width_multipliers_are_torchvisions(width_mult):
    ours, reference = on_meta("mobilenet_v2", width_mult=width_mult)
    assert shapes(ours) == shapes(reference)
    expected = sum(p.numel() for p in reference.parameters())
    assert archdsl.graph("mobilenet_v2", width_mult=width_mult).graph["total_params"] == expected


def test_the_v3_builder_names_are_variants_of_one_file():
    for variant in ("large", "small"):
        g = archdsl.graph(f"mobilenet_v3_{variant}")
        assert g.graph["name"] == "mobilenet_v3" and g.graph["params"]["variant"] == variant
    batch_norms = [m for m in archdsl.load("mobilenet_v3_small").modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in batch_norms} == {(0.001, 0.01)}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def pair(request):
    yield archdsl_and_torchvision(request.param)
    release_memory()


def test_eval_outputs_match_with_the_same_weights(pair):
    ours, reference = pair
    assert_same_eval_output_with_random_norms(ours, reference, EVAL_INPUT)


def test_one_training_step_has_the_same_gradients(pair):
    ours, reference = pair
    assert_same_training_step(ours, reference, TRAIN_INPUT)
