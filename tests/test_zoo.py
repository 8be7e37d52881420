"""Every zoo file: documented, parameterised, buildable, trainable, and true to its reference."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
import zoo_configs
from torch import nn
from zoo_configs import SEQUENCE_MODELS

import archdsl
from archdsl import zoo_names
from archdsl.pipeline import example_inputs
from archdsl.zootable import render, weighted_depth


def small_overrides(name: str) -> dict:
    """A small configuration (tests/zoo_configs.py), with 7 classes where the network classifies."""
    extra = {} if name in SEQUENCE_MODELS else {"num_classes": 7}
    return zoo_configs.small_overrides(name) | extra


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_file_has_docstring_paper_and_reference(name):
    g = archdsl.graph(name)
    doc = g.graph["doc"] or ""
    assert re_year(doc.splitlines()[0]), f"{name}: the first docstring line names the paper and its year"
    assert "Checked against:" in doc, f"{name}: the docstring says what it is checked against"
    assert "num_classes" in g.graph["params"] or name in SEQUENCE_MODELS


def re_year(line: str) -> bool:
    return any(str(year) in line for year in range(1990, 2027))


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_file_compiles_and_trains_one_step(name):
    overrides = small_overrides(name)
    g = archdsl.graph(name, **overrides)
    module = archdsl.load(name, seed=0, **overrides)
    out = module(*example_inputs(module.meta["archdsl"], batch=2, generator=torch.Generator().manual_seed(0)))
    # in training mode: its `output ... when training` (GoogLeNet's auxiliary logits too), else its output
    returned = g.graph.get("training_outputs") or g.graph["outputs"]
    outs = out if len(returned) > 1 else (out,)
    assert [o.shape for o in outs] == [(2, *g.nodes[node]["shape"]) for node in returned]
    if name in SEQUENCE_MODELS:
        sum(o.square().mean() for o in outs).backward()
    else:
        assert all(o.shape[:2] == (2, 7) for o in outs)  # 7 scores per sample, or per pixel (unet)
        target = torch.tensor([1, 5])
        sum(
            nn.functional.cross_entropy(o, target.view(2, *[1] * (o.dim() - 2)).expand(2, *o.shape[2:])) for o in outs
        ).backward()
    grads = [p.grad for p in module.parameters()]
    assert all(grad is not None and torch.isfinite(grad).all() for grad in grads)
    assert sum(p.numel() for p in module.parameters()) == g.graph["total_params"]


# ------------------------------------------------- the papers' parameter tables


@pytest.mark.parametrize(
    ("depth", "millions"), [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7), (1202, 19.4)]
)
def test_cifar_resnets_match_table_6(depth, millions):
    params = archdsl.graph("cifar_resnet", depth=depth).graph["total_params"]
    digits = 2 if millions < 1 else 1
    assert round(params / 1e6, digits) == millions
    assert archdsl.graph("cifar_plain", depth=depth).graph["total_params"] == params if depth <= 110 else True


def test_resnet20_is_exactly_269722_and_option_b_adds_projections():
    assert archdsl.graph("cifar_resnet").graph["total_params"] == 269_722
    g = archdsl.graph("cifar_resnet", shortcut="projection")
    # option B: two 1x1 projections with batch norm (16->32, 32->64)
    assert g.graph["total_params"] == 269_722 + (16 * 32 + 64) + (32 * 64 + 128)
    assert "layer2.0.downsample.0" in g and "layer2.1.downsample.0" not in g


def test_option_a_shortcut_is_parameter_free_and_plain_has_none():
    resnet = archdsl.graph("cifar_resnet")
    assert resnet.nodes["layer2.0.downsample"]["op"] == "zeropad_shortcut"
    assert resnet.nodes["layer2.0.downsample"]["params"] == 0
    plain = archdsl.graph("cifar_plain", depth=56)
    assert not [n for n, d in plain.nodes(data=True) if d["op"] in ("add", "zeropad_shortcut")]
    assert weighted_depth(plain) == 56
    resnet56 = archdsl.graph("cifar_resnet", depth=56)
    assert {n for n, d in resnet56.nodes(data=True) if d["params"]} == {
        n for n, d in plain.nodes(data=True) if d["params"]
    }


@pytest.mark.parametrize(
    ("name", "overrides", "millions"),
    [
        ("cifar_densenet", {}, 1.0),
        ("cifar_densenet", {"depth": 100}, 7.0),
        ("cifar_densenet", {"depth": 100, "growth": 24}, 27.2),
        ("cifar_densenet_bc", {}, 0.8),
        ("cifar_densenet_bc", {"depth": 250, "growth": 24}, 15.3),
        ("cifar_densenet_bc", {"depth": 190, "growth": 40}, 25.6),
    ],
)
def test_cifar_densenets_match_table_2(name, overrides, millions):
    g = archdsl.graph(name, **overrides)
    assert round(g.graph["total_params"] / 1e6, 1) == millions
    assert weighted_depth(g) == overrides.get("depth", 40 if name == "cifar_densenet" else 100)


@pytest.mark.parametrize(("depth", "millions"), [(164, 1.7), (1001, 10.2)])
def test_preact_resnets_match_the_paper_within_two_percent(depth, millions):
    g = archdsl.graph("preact_resnet", depth=depth)
    assert math.isclose(g.graph["total_params"] / 1e6, millions, rel_tol=0.02)
    assert weighted_depth(g) == depth
    # pre-activation: nothing follows the sum inside a block, the last op before it is a conv
    assert g.nodes["layer2.3.add"]["op"] == "add"
    assert {g.nodes[p]["op"] for p in g.predecessors("layer2.3.add")} == {"conv", "add"}


@pytest.mark.parametrize("name", ["plain18", "plain34"])
def test_imagenet_plain_nets_are_resnets_without_shortcuts(name):
    reference = getattr(torchvision.models, name.replace("plain", "resnet"))()
    wanted = {k: v for k, v in reference.state_dict().items() if ".downsample." not in k}
    plain = archdsl.load(name)
    assert {k: tuple(v.shape) for k, v in plain.state_dict().items()} == {k: tuple(v.shape) for k, v in wanted.items()}
    plain.load_state_dict(wanted, strict=True)


# ------------------------------------------- highway nets vs hand-written ones


class HighwayMLP(nn.Module):
    """An independent highway MLP written the usual way."""

    def __init__(self, features: int, width: int, depth: int, classes: int, gate_bias: float):
        super().__init__()
        self.plain = nn.Linear(features, width)
        self.h = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.t = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        for t in self.t:
            nn.init.constant_(t.bias, gate_bias)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        x = torch.relu(self.plain(x))
        for h, t in zip(self.h, self.t, strict=True):
            gate = torch.sigmoid(t(x))
            x = gate * torch.relu(h(x)) + (1 - gate) * x
        return self.fc(x)


class HighwayConv(nn.Module):
    """An independent convolutional highway network with the zoo file's layer plan."""

    def __init__(self, width: int, layers: int, classes: int, gate_bias: float):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.stages = nn.ModuleList()
        self.widen = nn.ModuleList()
        for stage in range(3):
            c = width * 2**stage
            h = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(layers))
            t = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(layers))
            for conv in t:
                nn.init.constant_(conv.bias, gate_bias)
            self.stages.append(nn.ModuleList([h, t]))
            if stage < 2:
                self.widen.append(nn.Conv2d(c, 2 * c, 1))
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for stage, (hs, ts) in enumerate(self.stages):
            for h, t in zip(hs, ts, strict=True):
                gate = torch.sigmoid(t(x))
                x = gate * torch.relu(h(x)) + (1 - gate) * x
            if stage < 2:
                x = torch.relu(self.widen[stage](nn.functional.max_pool2d(x, 2)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _copy_highway(ours: dict, theirs: nn.Module, mapping) -> None:
    state = {}
    for key, value in theirs.state_dict().items():
        state[mapping(key)] = value
    assert set(state) == set(ours), sorted(set(state) ^ set(ours))[:6]
    return state


def test_highway_fc_matches_a_hand_written_highway_mlp():
    torch.manual_seed(0)
    reference = HighwayMLP(64, 50, 4, 10, -3.0)
    module = archdsl.load("highway_fc", features=64, depth=4, gate_bias=-3.0)
    assert torch.all(module.get_submodule("layers.3.t").bias == -3.0)

    def rename(key):
        parts = key.split(".")
        if parts[0] in ("h", "t"):
            return f"layers.{parts[1]}.{parts[0]}.{parts[2]}"
        return key

    module.load_state_dict(_copy_highway(module.state_dict(), reference, rename), strict=True)
    x = torch.randn(5, 64)
    torch.testing.assert_close(module(x), reference(x))


def test_highway_conv_matches_a_hand_written_network():
    torch.manual_seed(0)
    reference = HighwayConv(16, 2, 10, -2.0)
    module = archdsl.load("highway_conv", width=16, layers=2)
    assert sum(p.numel() for p in module.parameters()) == sum(p.numel() for p in reference.parameters())

    def rename(key):
        parts = key.split(".")
        if parts[0] == "stages":
            branch = "h" if parts[2] == "0" else "t"
            return f"stage{int(parts[1]) + 1}.{parts[3]}.{branch}.{parts[4]}"
        if parts[0] == "widen":
            return f"widen{int(parts[1]) + 1}.{parts[2]}"
        return key

    module.load_state_dict(_copy_highway(module.state_dict(), reference, rename), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(module(x), reference(x))


def test_a_fresh_highway_layer_mostly_carries_its_input():
    module = archdsl.load("highway_fc", features=20, width=20, depth=1, gate_bias=-4.0)
    x = torch.randn(3, 20)
    gate = torch.sigmoid(module.get_submodule("layers.0.t")(torch.relu(module.get_submodule("plain")(x))))
    assert gate.mean() < 0.1


# ------------------------------------------------------------- docs/zoo.md


def test_zoo_table_is_current(repo_root):
    assert (repo_root / "docs" / "zoo.md").read_text(encoding="utf-8") == render(), (
        "docs/zoo.md is stale: run `python -m archdsl.zootable docs/zoo.md`"
    )


def test_zoo_depths_are_the_papers():
    expected = {"resnet152": 152, "densenet201": 201, "googlenet": 22, "vgg19": 19, "alexnet": 8, "cifar_resnet": 20}
    for name, depth in expected.items():
        assert weighted_depth(archdsl.graph(name)) == depth, name


def test_code_lines_leave_out_blank_lines_comments_and_docstrings():
    from archdsl.zoolines import arch_code_lines, python_code_lines

    arch = '"""Doc.\n\nMore."""\nimport "lib/resnet.arch"\n\n# a comment\nnetwork n {\n    """Inner."""\n}\n'
    assert arch_code_lines(arch) == 3
    python = 'import os\n\n\nclass A:\n    """Doc\n    more."""\n\n    # note\n    x = 1\n\n\ndef f():\n    return 2\n'
    assert python_code_lines(python, ("A",)) == 2
    assert python_code_lines(python, ("A", "f")) == 4
    with pytest.raises(LookupError, match="g"):
        python_code_lines(python, ("f", "g"))
