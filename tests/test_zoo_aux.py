"""GoogLeNet and Inception-v3 with their auxiliary classifiers are torchvision's, in eval and in training mode.

In training mode torchvision returns GoogLeNetOutputs(logits, aux_logits2, aux_logits1) and
InceptionOutputs(logits, aux_logits); the zoo files say so with `output ... when training`. The training
step's loss weighs the auxiliary logits as torchvision's reference scripts do (0.3 each for GoogLeNet, 0.4
for Inception-v3), so their gradients reach the trunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torchvision
from conftest import release_memory
from equivalence import (
    assert_close_in_chunks,
    assert_same_eval_output_with_random_norms,
    assert_same_training_step,
    classifier_loss,
    shapes,
)

import archdsl


@dataclass(frozen=True)
class Case:
    name: str  # the zoo name
    builder: str  # torchvision's builder
    kwargs: dict[str, Any]  # given to both
    params: int  # torchvision's parameter count
    aux_weights: tuple[float, ...]  # the loss weights of the training outputs after the first
    size: int  # the input's height and width
    dtype: torch.dtype = torch.float32
    overrides: dict[str, Any] = field(default_factory=dict)  # the zoo file's parameters for `kwargs`


CASES = {
    # 96 px: inception5b is 3x3, the auxiliary classifiers pool 6x6 maps to 4x4.
    # float64: the zoo registers aux1 and aux2 after inception5b, as torchvision does, and so runs them after
    # it, where torchvision runs them right after inception4a and 4d. The dropouts still draw in torchvision's
    # order (aux1, aux2, the classifier's), and the outputs are bit-identical in float32, but the gradients
    # that meet at inception4a's output add up in another order, a few float32 roundings apart.
    "googlenet": Case("googlenet", "googlenet", {}, 13_004_888, (0.3, 0.3), 96, torch.float64),
    "googlenet_no_aux": Case(
        "googlenet", "googlenet", {"aux_logits": False}, 6_624_904, (), 96, overrides={"aux_logits": False}
    ),
    # The auxiliary classifier's 5x5 convolution needs a 17x17 Mixed_6e: 299 px is the smallest input.
    "inception_v3": Case("inception_v3", "inception_v3", {}, 27_161_264, (0.4,), 299),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request):
    case = CASES[request.param]
    torch.manual_seed(0)
    reference = getattr(torchvision.models, case.builder)(init_weights=True, **case.kwargs).to(case.dtype)
    ours = archdsl.load(case.name, seed=0, **case.overrides).to(case.dtype)
    yield case, ours, reference
    del ours, reference
    release_memory()


def test_state_dict_keys_shapes_and_order_match(pair):
    _, ours, reference = pair
    assert shapes(ours) == shapes(reference)


def test_parameter_counts_match(pair):
    case, ours, reference = pair
    assert sum(p.numel() for p in reference.parameters()) == case.params
    assert sum(p.numel() for p in ours.parameters()) == case.params
    assert archdsl.graph(case.name, **case.overrides).graph["total_params"] == case.params


def test_eval_outputs_match_with_random_norms(pair):
    case, ours, reference = pair
    # eval mode returns the logits alone, as torchvision does: a tuple here would fail the subtraction
    x = torch.randn(1, 3, case.size, case.size, generator=torch.Generator().manual_seed(1), dtype=case.dtype)
    assert_same_eval_output_with_random_norms(ours, reference, x)


def test_training_outputs_and_gradients_match(pair):
    """One training step, dropout active: the same outputs, element by element, and the same gradients."""
    case, ours, reference = pair
    returned: list[Any] = []

    def loss(output):
        returned.append(output)
        if not case.aux_weights:
            return classifier_loss(output)
        main, *aux = output
        return classifier_loss(main) + sum(w * classifier_loss(a) for w, a in zip(case.aux_weights, aux, strict=True))

    x = torch.randn(2, 3, case.size, case.size, generator=torch.Generator().manual_seed(2), dtype=case.dtype)
    assert_same_training_step(ours, reference, x, loss=loss)
    mine, theirs = returned
    if not case.aux_weights:
        assert isinstance(mine, torch.Tensor) and isinstance(theirs, torch.Tensor)
        mine, theirs = (mine,), (theirs,)
    assert isinstance(mine, tuple)
    assert len(mine) == len(theirs) == 1 + len(case.aux_weights)
    for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        assert_close_in_chunks(a.detach(), b.detach(), f"training output {index}")
