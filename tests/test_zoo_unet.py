"""The U-Net zoo file against a hand-written PyTorch U-Net (tests/unet_reference.py)."""

from __future__ import annotations

import pytest
import torch
from equivalence import assert_same_eval_output, assert_same_training_step, shapes
from unet_reference import UNet

import archdsl

SMALL = dict(base=4, size=188)


def pair(**params) -> tuple[torch.nn.Module, torch.nn.Module]:
    ours = archdsl.load("unet", seed=0, **{**SMALL, **params})
    reference = UNet(base=params.get("base", SMALL["base"]), same=params.get("same", False))
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference


def test_the_papers_sizes_and_parameter_count():
    g = archdsl.graph("unet")
    assert g.nodes["image"]["shape"] == (1, 572, 572)
    assert g.nodes["out"]["shape"] == (2, 388, 388)  # Figure 1
    assert g.nodes["dec4.crop"]["shape"] == (512, 56, 56)  # 64x64 cropped to the up-sampled 56x56
    with torch.device("meta"):
        reference = UNet()
    assert g.graph["total_params"] == sum(p.numel() for p in reference.parameters()) == 31_030_658


def test_same_keys_shapes_and_order_as_the_reference():
    ours, reference = pair()
    assert shapes(ours) == shapes(reference)


@pytest.mark.parametrize("size", [188, 256])
def test_outputs_equal_the_reference_at_two_input_sizes(size):
    ours, reference = pair()  # compiled once, at 188: 256 runs the same module
    assert_same_eval_output(ours, reference, (2, 1, size, size))


def test_one_training_step_gives_the_same_gradients():
    ours, reference = pair()

    def pixel_loss(logits: torch.Tensor) -> torch.Tensor:
        target = torch.arange(logits[:, 0].numel()).reshape(logits[:, 0].shape) % 2
        return torch.nn.functional.cross_entropy(logits, target)

    assert_same_training_step(ours, reference, (2, 1, 188, 188), loss=pixel_loss)


def test_the_same_padding_variant_keeps_the_input_size():
    ours, reference = pair(same=True, size=64)
    g = archdsl.graph("unet", same=True, size=64, base=4)
    assert g.nodes["out"]["shape"] == (2, 64, 64)
    assert_same_eval_output(ours, reference, (1, 1, 64, 64))
    assert_same_eval_output(ours, reference, (1, 1, 96, 80))


def test_a_size_too_small_is_refused_naming_the_convolution():
    ours, _ = pair()
    with pytest.raises(archdsl.ArchError) as caught:
        ours(torch.randn(1, 1, 187, 187))
    diagnostic = caught.value.diagnostics[0]
    assert diagnostic.code == "E412" and "kernel 3 is larger than its input of size 2" in diagnostic.message
