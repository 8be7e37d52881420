"""The graph rewrites: memory-efficient dense chains (exact gradients, less saved memory) and BN folding."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import archdsl
from archdsl.optimize import concat_norm_relu_conv, fuse_batchnorm

DENSE_NETS = [
    ("cifar_densenet_bc", {"depth": 40}, (4, 3, 32, 32)),
    ("cifar_densenet", {"depth": 22, "drop": 0.0}, (4, 3, 32, 32)),
    ("densenet121", {"size": 64}, (2, 3, 64, 64)),
]


def _train_step(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    module.train()
    module.zero_grad(set_to_none=True)
    out = module(x)
    out.square().mean().backward()
    return out


def _rewritten(module: torch.fx.GraphModule) -> int:
    return sum(1 for n in module.graph.nodes if n.target is concat_norm_relu_conv)


@pytest.mark.parametrize(("name", "overrides", "shape"), DENSE_NETS, ids=[n for n, _, _ in DENSE_NETS])
def test_memory_efficient_matches_plain_compile(name, overrides, shape):
    plain = archdsl.load(name, seed=3, **overrides)
    lean = archdsl.load(name, seed=3, memory_efficient=True, **overrides)
    assert _rewritten(lean) > 0
    assert list(lean.state_dict()) == list(plain.state_dict())
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # the second step runs on updated running statistics
        torch.testing.assert_close(_train_step(lean, x), _train_step(plain, x), rtol=1e-5, atol=1e-6)
    for (key, p), q in zip(plain.named_parameters(), lean.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}")
    for key, value in plain.state_dict().items():  # running statistics and num_batches_tracked
        torch.testing.assert_close(lean.state_dict()[key], value, rtol=1e-5, atol=1e-6, msg=key)
    plain.eval()
    lean.eval()
    with torch.no_grad():
        torch.testing.assert_close(lean(x), plain(x), rtol=1e-5, atol=1e-6)


def test_memory_efficient_gradients_in_eval_mode():
    """Frozen batch norms (eval mode) with gradients flowing, as when fine-tuning: backward uses running stats."""
    plain = archdsl.load("cifar_densenet_bc", depth=22, seed=0).eval()
    lean = archdsl.load("cifar_densenet_bc", depth=22, seed=0, memory_efficient=True).eval()
    with torch.no_grad():
        for module in (plain, lean):
            for norm in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
                generator = torch.Generator().manual_seed(norm.num_features)
                norm.running_mean.copy_(torch.rand(norm.num_features, generator=generator) - 0.5)
                norm.running_var.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
    x = torch.randn(2, 3, 32, 32)
    for module in (plain, lean):
        module(x).square().mean().backward()
    for p, q in zip(plain.parameters(), lean.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-7)


def test_memory_efficient_rewrites_every_dense_layer_and_transition():
    module = archdsl.load("densenet121", memory_efficient=True)
    # 58 layers, less the first of each of the 4 blocks (whose input is no concatenation), and 3
    # transitions; norm5 feeds a pooling, not a conv, and bottlenecks (norm2) are left alone
    assert _rewritten(module) == 58 - 4 + 3
    assert [n.name for n in module.graph.nodes if n.target is torch.cat] == ["features_denseblock4_out"]


def _saved_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes of activations autograd keeps for backward (weights, which exist anyway, excluded)."""
    weights = {t.untyped_storage().data_ptr() for t in (*module.parameters(), *module.buffers())}
    storages: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        # not `t` itself: an output saved by its own grad_fn would then hold that grad_fn, a cycle
        # through C++ that no collection frees (900 MB that stayed in the process)
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return sum(storages.values())


def test_memory_efficient_saved_memory_is_linear_in_block_depth():
    """Saved activations: quadratic in block depth for the plain compile, linear for the rewrite."""
    x = torch.randn(2, 3, 32, 32)
    plain, lean = {}, {}
    for depth in (40, 76, 148):  # 12, 24, 48 layers per block
        plain[depth] = _saved_bytes(archdsl.load("cifar_densenet", depth=depth, growth=12), x)
        lean[depth] = _saved_bytes(archdsl.load("cifar_densenet", depth=depth, growth=12, memory_efficient=True), x)
    # doubling the depth: the plain compile's growth in saved bytes keeps increasing, the rewrite's does not
    plain_growth = (plain[148] - plain[76]) / (plain[76] - plain[40])
    lean_growth = (lean[148] - lean[76]) / (lean[76] - lean[40])
    assert plain_growth > 2.5
    assert lean_growth == pytest.approx(2.0, rel=0.1)
    assert lean[148] < plain[148] / 5


def test_memory_efficient_under_bf16_autocast_tracks_the_plain_compile():
    """Under autocast the rewrite runs its convolution in bf16 as the plain compile does.

    bf16 gradients of BN parameters are far from the fp32 ones (cosine ~0.8
    here) for both, so the check is that the rewrite is as close to fp32 as
    the plain compile is, and closer still to the plain compile.
    """
    reference = archdsl.load("cifar_densenet_bc", depth=40, seed=1)
    plain = archdsl.load("cifar_densenet_bc", depth=40, seed=1)
    lean = archdsl.load("cifar_densenet_bc", depth=40, seed=1, memory_efficient=True)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    _train_step(reference, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = _train_step(plain, x), _train_step(lean, x)
    assert b.dtype == a.dtype
    torch.testing.assert_close(b.float(), a.float(), rtol=0.05, atol=0.05)

    def cosine(u, v):
        return torch.nn.functional.cosine_similarity(u.flatten(), v.flatten(), dim=0).item()

    for r, p, q in zip(reference.parameters(), plain.parameters(), lean.parameters(), strict=True):
        assert q.grad is not None and q.grad.dtype == p.grad.dtype == torch.float32
        assert cosine(q.grad, p.grad) > 0.98
        assert cosine(q.grad, r.grad) > cosine(p.grad, r.grad) - 0.05


def test_memory_efficient_survives_deepcopy_and_checkpoints(tmp_path):
    module = archdsl.load("cifar_densenet_bc", depth=40, seed=2, memory_efficient=True)
    _train_step(module, torch.randn(2, 3, 32, 32))
    clone = copy.deepcopy(module)
    assert _rewritten(clone) == _rewritten(module)
    archdsl.save_checkpoint(module, tmp_path / "lean.pt")
    restored = archdsl.load_checkpoint(tmp_path / "lean.pt")
    assert _rewritten(restored) == _rewritten(module)
    module.eval()
    restored.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), module(x))


def test_memory_efficient_leaves_networks_without_the_pattern_alone():
    plain = archdsl.load("cifar_resnet", seed=0)
    lean = archdsl.load("cifar_resnet", seed=0, memory_efficient=True)
    assert _rewritten(lean) == 0
    assert lean.code == plain.code


# ------------------------------------------------------------------ BN folding


@pytest.mark.parametrize(
    ("name", "overrides", "folded"),
    # a residual network, one with branches, and a plain chain (cifar_plain: vgg11_bn folds the same way, but
    # two copies of its 133M-parameter classifier made this test the suite's memory peak); googlenet folds 57 in
    # its trunk and 2 in its auxiliary classifiers
    [("resnet50", {"size": 64}, 53), ("googlenet", {"size": 64}, 59), ("cifar_plain", {}, 19)],
)
def test_fuse_folds_batchnorm_within_tolerance(name, overrides, folded):
    plain = archdsl.load(name, seed=0, **overrides).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial running statistics, so that folding has something to fold
        for m in plain.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.2, 0.2, generator=generator)
    fused = copy.deepcopy(plain)
    assert fuse_batchnorm(fused) == folded
    assert not fused.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    size = overrides.get("size", 32)
    x = torch.randn(2, 3, size, size, generator=generator)
    with torch.no_grad():
        expected = plain(x)
        # 1e-4 of the output's scale: these untrained logits reach a few hundred, and folding
        # reassociates float32 sums (measured: 2e-4 absolute on googlenet's 250, 7e-7 relative)
        scale = max(1.0, expected.abs().max().item())
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-4 * scale)


def test_fuse_keyword_and_checkpoint_round_trip(tmp_path):
    module = archdsl.load("cifar_resnet", seed=0, fuse=True)
    assert not module.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    assert module.meta["archdsl"]["options"] == {"fuse": True}
    archdsl.save_checkpoint(module, tmp_path / "fused.pt")
    restored = archdsl.load_checkpoint(tmp_path / "fused.pt")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(x), module(x))


def test_compiled_module_compiles_fullgraph_without_breaks():
    module = archdsl.load("cifar_densenet_bc", depth=40, seed=0)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(compiled(x), module(x))


def test_memory_efficient_falls_back_to_the_modules_when_they_are_hooked():
    """A forward hook (or a swapped module) must see what it would see without the rewrite."""
    plain = archdsl.load("cifar_densenet_bc", depth=22, seed=4)
    lean = archdsl.load("cifar_densenet_bc", depth=22, seed=4, memory_efficient=True)
    seen = []
    for module in (plain, lean):
        module.block1.get_submodule("1").conv1.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    x = torch.randn(2, 3, 32, 32)
    for module in (plain, lean):
        _train_step(module, x)
    assert len(seen) == 2
    torch.testing.assert_close(seen[1], seen[0])
    for p, q in zip(plain.parameters(), lean.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)


def test_memory_efficient_allows_two_forwards_before_one_backward():
    """Weight sharing (siamese inputs, gradient accumulation) runs the module twice before backward."""
    plain = archdsl.load("cifar_densenet_bc", depth=22, seed=5)
    lean = archdsl.load("cifar_densenet_bc", depth=22, seed=5, memory_efficient=True)
    a, b = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    for module in (plain, lean):
        (module(a) - module(b)).square().mean().backward()
    for p, q in zip(plain.parameters(), lean.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)
