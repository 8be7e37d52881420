"""The zoo's ImageNet networks are torchvision's, exactly: keys, shapes, order, outputs, gradients."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import release_memory
from equivalence import assert_same_eval_output_with_random_norms, assert_same_training_step

import archdsl

# Parameter counts and state_dict sizes from ../shared/REFERENCE.md (torchvision 0.29.1).
REFERENCE = {
    "resnet18": (11_689_512, 122, 1.814),
    "resnet34": (21_797_672, 218, 3.664),
    "resnet50": (25_557_032, 320, 4.089),
    "resnet101": (44_549_160, 626, 7.801),
    "resnet152": (60_192_808, 932, 11.514),
    "densenet121": (7_978_856, 727, 2.834),
    "densenet161": (28_681_000, 967, 7.728),
    "densenet169": (14_149_480, 1015, 3.360),
    "densenet201": (20_013_928, 1207, 4.291),
    "googlenet": (6_624_904, 344, 1.498),
    "alexnet": (61_100_840, 16, 0.714),
    "vgg11": (132_863_336, 22, 7.609),
    "vgg16": (138_357_544, 32, 15.470),
    "vgg16_bn": (138_365_992, 97, 15.470),
    "vgg19": (143_667_240, 38, 19.632),
    # not in the reference table: checked against torchvision itself below
    "vgg11_bn": None,
    "vgg13": None,
    "vgg13_bn": None,
    "vgg19_bn": None,
}


# The zoo's parameters for the torchvision model compared here: GoogLeNet without its auxiliary classifiers
# (test_zoo_aux.py compares it with them).
OVERRIDES = {"googlenet": {"aux_logits": False}}


def torchvision_model(name: str) -> torch.nn.Module:
    if name == "googlenet":
        return torchvision.models.googlenet(aux_logits=False, init_weights=True)
    return getattr(torchvision.models, name)()


# The VGGs first, while this process has not yet grown by what the other networks leave behind
BY_SIZE = sorted(REFERENCE, key=lambda name: (not name.startswith("vgg"), name))


@pytest.fixture(scope="module", params=BY_SIZE)
def pair(request):
    name = request.param
    torch.manual_seed(0)
    reference = torchvision_model(name)
    ours = archdsl.load(name, seed=0, **OVERRIDES.get(name, {}))
    yield name, ours, reference
    del ours, reference
    release_memory()  # two VGGs with gradients are 2.3 GB; do not let the next network's pair stack on top


def test_state_dict_keys_and_shapes_match(pair):
    name, ours, reference = pair
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert mine == theirs
    assert list(mine) == list(theirs), "state_dict order differs from torchvision"
    if REFERENCE[name]:
        assert len(mine) == REFERENCE[name][1]


def test_parameter_counts_match_the_reference_table(pair):
    name, ours, reference = pair
    g = archdsl.graph(name, **OVERRIDES.get(name, {}))
    expected = REFERENCE[name][0] if REFERENCE[name] else sum(p.numel() for p in reference.parameters())
    assert sum(p.numel() for p in ours.parameters()) == expected
    assert g.graph["total_params"] == expected
    if REFERENCE[name]:
        assert round(g.graph["total_macs"] / 1e9, 3) == REFERENCE[name][2]


def test_eval_outputs_match_with_the_same_weights(pair):
    name, ours, reference = pair
    # 128 pixels exercise every layer (the networks pool adaptively) at a third of 224's cost
    assert_same_eval_output_with_random_norms(ours, reference, (2, 3, 128, 128))


# The VGGs differ only in how many convolutions each stage has: every one is checked for its
# keys, shapes, parameters and eval outputs, and gradients are compared on one with batch norm and the largest
# without. Each VGG pair with gradients holds 2.3 GB, and all eight took a fifth of the suite.
GRADIENT_CHECKED = [n for n in BY_SIZE if not n.startswith("vgg") or n in {"vgg11_bn", "vgg19"}]


@pytest.mark.parametrize("pair", GRADIENT_CHECKED, indirect=True)
def test_one_training_step_has_the_same_gradients(pair):
    name, ours, reference = pair
    assert_same_training_step(ours, reference, (2, 3, 64, 64))
