"""ShuffleNetV2 is torchvision's, exactly, at every width, and `channel_shuffle` is torchvision's function.

Keys, shapes and order of the state_dict and the parameter count of all four
widths (built on the meta device: no weight is allocated); for x0_5 and x1_0,
eval outputs after the reference's batch norms get random affine parameters
and running statistics, and one training step's gradients and running
statistics. Small images (64 px) keep this fast: the network pools globally,
so every layer runs as it does at 224.
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
from torchvision.models.shufflenetv2 import channel_shuffle

import archdsl

# builder name (an alias of shufflenet_v2.arch) -> parameters of torchvision 0.29.1's model
BUILDERS = {
    "shufflenet_v2_x0_5": 1_366_792,
    "shufflenet_v2_x1_0": 2_278_604,
    "shufflenet_v2_x1_5": 3_503_624,
    "shufflenet_v2_x2_0": 7_393_996,
}
EXACT = ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0"]  # small enough to run both models at once
EVAL_INPUT = (2, 3, 64, 64)
TRAIN_INPUT = (2, 3, 64, 64)


def on_meta(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Ours and torchvision's model, without allocating or initialising a weight."""
    with torch.device("meta"):
        return archdsl.load(name), getattr(torchvision.models, name)()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_parameter_count_is_torchvisions(name):
    assert archdsl.graph(name).graph["total_params"] == BUILDERS[name]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_state_dict_keys_shapes_and_order_are_torchvisions(name):
    ours, reference = on_meta(name)
    assert sum(p.numel() for p in reference.parameters()) == BUILDERS[name], "the table is stale"
    assert shapes(ours) == shapes(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)


def test_the_builder_names_are_widths_of_one_file():
    for name, width in zip(sorted(BUILDERS), (0.5, 1.0, 1.5, 2.0), strict=True):
        g = archdsl.graph(name)
        assert g.graph["name"] == "shufflenet_v2" and g.graph["params"]["width"] == width
    g = archdsl.graph("shufflenet_v2", num_classes=10)
    assert g.graph["params"]["width"] == 1.0 and g.nodes["fc"]["shape"] == (10,)
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph("shufflenet_v2", width=0.75)
    assert info.value.diagnostics[0].code == "E306"


def test_units_split_or_branch_as_torchvisions_inverted_residual():
    g = archdsl.graph("shufflenet_v2_x0_5")
    # the first unit of a stage runs both branches on its whole input
    assert set(g.predecessors("stage2.0.branch1.0")) == {"maxpool"}
    assert set(g.predecessors("stage2.0.branch2.0")) == {"maxpool"}
    # the others pass their first half through and run branch2 on the second
    assert "stage2.1.branch1.0" not in g
    assert g.nodes["stage2.1.halves"]["op"] == "chunk"
    assert g.nodes["stage2.1.shuffle"]["op"] == "channel_shuffle"
    assert g.nodes["stage2.1.branch2.0"]["input_shapes"] == ((24, 28, 28),)
    assert g.nodes["stage2.1.shuffle"]["shape"] == (48, 28, 28)


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


# ------------------------------------------------------------ channel_shuffle


def shuffle_net(channels: int, groups: int, rest: tuple[int, ...] = (5, 7)) -> str:
    return f"network n {{\n    input x: {[channels, *rest]}\n    t: channel_shuffle({groups})\n}}\n"


@pytest.mark.parametrize(("channels", "groups"), [(12, 1), (12, 2), (12, 3), (12, 4), (12, 12), (232, 2)])
def test_channel_shuffle_is_torchvisions_function(channels, groups):
    module = archdsl.load(shuffle_net(channels, groups))
    x = torch.randn(3, channels, 5, 7, generator=torch.Generator().manual_seed(channels + groups))
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = module(ours)
    torch.testing.assert_close(out, channel_shuffle(theirs, groups), rtol=0, atol=0)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (module(ours) * weights).sum().backward()
    (channel_shuffle(theirs, groups) * weights).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=0, atol=0)


def test_channel_shuffle_takes_channels_first_of_any_rank():
    x = torch.randn(2, 6, 4)
    assert torch.equal(archdsl.load(shuffle_net(6, 3, rest=(4,)))(x), channel_shuffle(x.unsqueeze(-1), 3).squeeze(-1))
    assert archdsl.graph(shuffle_net(6, 3, rest=(2, 3, 4))).nodes["t"]["shape"] == (6, 2, 3, 4)


@pytest.mark.parametrize(
    ("source", "message", "culprit"),
    [
        (shuffle_net(10, 4), "`channel_shuffle`'s groups=4 does not divide the 10 channels", "4"),
        (shuffle_net(10, 2, rest=()), "`channel_shuffle` takes channels followed by at least one more dim", None),
    ],
)
def test_channel_shuffle_errors_are_located(source, message, culprit):
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(source)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E401" and message in diagnostic.message
    line = source.splitlines()[diagnostic.span.line - 1]
    assert "channel_shuffle" in line
    if culprit is not None:
        assert line[diagnostic.span.column - 1 : diagnostic.span.end_column - 1] == culprit


def test_channel_shuffle_needs_at_least_one_group():
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(shuffle_net(12, 0))
    assert info.value.diagnostics[0].code == "E301" and "`groups` must be at least 1" in str(info.value)
