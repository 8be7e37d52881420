"""Inference-time batch-norm folding: ``conv -> batchnorm`` becomes one convolution with a bias."""

from __future__ import annotations

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

_FOLDABLE = {
    (nn.Conv2d, nn.BatchNorm2d): fuse_conv_bn_eval,
    (nn.Linear, nn.BatchNorm1d): fuse_linear_bn_eval,
}


def fuse_batchnorm(module: fx.GraphModule) -> int:
    """Fold every batch norm whose input is a convolution (or linear layer) used by nothing else.

    The module is switched to eval mode, since folding uses the running
    statistics; the folded layer keeps its path, the batch norm's submodule
    is removed. Returns how many batch norms were folded.
    """
    module.eval()
    folded = 0
    for norm in list(module.graph.nodes):
        if norm.op != "call_module" or len(norm.args) != 1:
            continue
        layer = norm.args[0]
        if not isinstance(layer, fx.Node) or layer.op != "call_module" or len(layer.users) != 1:
            continue
        kinds = (type(module.get_submodule(layer.target)), type(module.get_submodule(norm.target)))
        fold = _FOLDABLE.get(kinds)
        if fold is None:
            continue
        fused = fold(module.get_submodule(layer.target), module.get_submodule(norm.target))
        _replace_submodule(module, layer.target, fused)
        norm.replace_all_uses_with(layer)
        module.graph.erase_node(norm)
        module.delete_submodule(norm.target)
        folded += 1
    module.graph.lint()
    module.recompile()
    return folded


def _replace_submodule(module: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, name, new)
