"""The compiled torch.fx module: valid, trainable, exportable, reproducible."""

from __future__ import annotations

import copy

import pytest
import torch

import archdsl


def test_graph_module_lints_and_runs(tiny_resnet):
    module = archdsl.load(tiny_resnet)
    module.graph.lint()
    out = module(torch.randn(4, 3, 16, 16))
    assert out.shape == (4, 10)


def test_submodule_paths_are_the_graph_module_paths(tiny_resnet):
    g = archdsl.graph(tiny_resnet)
    module = archdsl.load(tiny_resnet)
    stateful = {n for n, d in g.nodes(data=True) if d["params"] > 0}
    leaves = {name for name, m in module.named_modules() if next(m.parameters(recurse=False), None) is not None}
    assert leaves == stateful
    assert "layer2.0.downsample.0.weight" in module.state_dict()


def test_generated_code_is_readable(tiny_resnet):
    code = archdsl.load(tiny_resnet).code
    assert "torch.cat" not in code  # no dense blocks here
    assert 'layer1_0_conv1 = getattr(self.layer1, "0").conv1(' in code or "self.layer1" in code
    assert "operator.add" in code or " + " in code


def test_training_reduces_the_loss(tiny_resnet):
    torch.manual_seed(0)
    module = archdsl.load(tiny_resnet, seed=0)
    x = torch.randn(32, 3, 16, 16)
    y = torch.randint(0, 10, (32,))
    opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_seed_makes_initialisation_reproducible_without_touching_global_rng(tiny_resnet):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = archdsl.load(tiny_resnet, seed=7).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    b = archdsl.load(tiny_resnet, seed=7).state_dict()
    c = archdsl.load(tiny_resnet, seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_weight_init_follows_torchvision_conventions(tiny_resnet):
    module = archdsl.load(tiny_resnet, seed=0)
    conv = module.get_submodule("layer1.0.conv1")
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    std = (2.0 / fan_out) ** 0.5
    assert abs(conv.weight.std().item() - std) / std < 0.15
    bn = module.get_submodule("layer1.0.bn1")
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_deepcopy_keeps_weights_and_sources(tiny_resnet):
    module = archdsl.load(tiny_resnet)
    clone = copy.deepcopy(module)
    x = torch.randn(2, 3, 16, 16)
    module.eval()
    clone.eval()
    assert torch.equal(module(x), clone(x))
    assert clone.meta["archdsl"]["sources"] == module.meta["archdsl"]["sources"]


def test_torch_export_succeeds(tiny_resnet):
    module = archdsl.load(tiny_resnet).eval()
    x = torch.randn(2, 3, 16, 16)
    program = torch.export.export(module, (x,))
    torch.testing.assert_close(program.module()(x), module(x))


def test_torch_compile_fullgraph_runs(tiny_resnet):
    torch._dynamo.reset()
    module = archdsl.load(tiny_resnet).eval()
    x = torch.randn(2, 3, 16, 16)
    explanation = torch._dynamo.explain(module)(x)
    assert explanation.graph_break_count == 0
    compiled = torch.compile(module, fullgraph=True)  # inductor: really compiles
    torch.testing.assert_close(compiled(x), module(x))


def test_checkpoint_round_trip_with_weights_only_loading(tmp_path):
    module = archdsl.load("resnet18", num_classes=7, seed=3)
    path = tmp_path / "model.pt"
    archdsl.save_checkpoint(module, path)
    payload = torch.load(path, weights_only=True)
    assert payload["overrides"] == {"num_classes": 7}
    assert "lib/resnet.arch" in " ".join(payload["sources"])
    restored = archdsl.load_checkpoint(path)
    x = torch.randn(1, 3, 64, 64)
    module.eval()
    restored.eval()
    assert torch.equal(module(x), restored(x))


def test_checkpoint_of_another_architecture_names_the_first_mismatch(tmp_path):
    module = archdsl.load("resnet18", num_classes=7)
    path = tmp_path / "model.pt"
    archdsl.save_checkpoint(module, path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["fc.weight"] = torch.zeros(3, 512)
    torch.save(payload, path)
    with pytest.raises(archdsl.ArchCheckpointError, match="do not match the sha256"):
        archdsl.load_checkpoint(path)  # the hash finds the edit first
    with pytest.raises(archdsl.ArchCheckpointError, match=r"`fc.weight` has shape \[3, 512\]"):
        archdsl.load_checkpoint(path, verify=False)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    module = archdsl.load("resnet18")
    path = tmp_path / "model.pt"
    archdsl.save_checkpoint(module, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(archdsl.ArchCheckpointError, match="cannot read checkpoint"):
        archdsl.load_checkpoint(path)


def test_params_dict_sets_network_parameters_and_refuses_a_name_given_twice():
    assert archdsl.graph("cifar_resnet", params={"depth": 32}).graph["total_params"] == 464_154
    with pytest.raises(TypeError, match="'depth' given both"):
        archdsl.load("cifar_resnet", params={"depth": 20}, depth=32)
