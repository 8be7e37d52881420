"""Memory-efficient dense connectivity: concat -> BN -> ReLU -> conv without storing the concatenation.

A DenseNet layer normalises the concatenation of every earlier feature map.
Plain autograd keeps two tensors of that width per layer (the
concatenation, and the normalised values that the in-place ReLU overwrites),
so memory grows quadratically with block depth. :class:`ConcatNormReluConv` keeps only its
inputs (the feature maps, which exist anyway) and the batch statistics, and
recomputes the cheap element-wise part in backward. Unlike gradient
checkpointing (torchvision's ``memory_efficient=True``) it never runs the
convolution twice: backward needs the convolution's *input*, not its output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.autograd.function import once_differentiable


def _bn_factor(norm: nn.BatchNorm2d) -> float:
    """The running-statistics update factor, as ``nn.BatchNorm2d.forward`` computes it."""
    if not (norm.training and norm.track_running_stats):
        return 0.0
    norm.num_batches_tracked.add_(1)
    return 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum


def _join(features) -> torch.Tensor:
    return features[0] if len(features) == 1 else torch.cat(features, 1)


def _normalize(x, gamma, beta, save_mean, save_invstd):
    """BN-ReLU of ``x`` from saved batch statistics (the recomputation in backward), in one allocation."""
    scale = save_invstd if gamma is None else save_invstd * gamma
    shift = -save_mean * scale if beta is None else beta - save_mean * scale
    shape = (1, -1, 1, 1)
    y = torch.addcmul(shift.view(shape).to(x.dtype), x, scale.view(shape).to(x.dtype))
    return torch.relu_(y)


class ConcatNormReluConv(torch.autograd.Function):
    """``conv(relu(batchnorm(cat(features))))`` that saves only the features and the batch statistics.

    The parameters are inputs (not read from the modules in backward) so that
    autograd accumulates their gradients and DDP's hooks see them.
    """

    @staticmethod
    def forward(ctx, norm, conv, factor, gamma, beta, weight, bias, *features):
        x = _join(features)
        use_batch = norm.training or not norm.track_running_stats
        y, save_mean, save_invstd = torch.ops.aten.native_batch_norm(
            x, gamma, beta, norm.running_mean, norm.running_var, use_batch, factor, norm.eps
        )
        if not use_batch:  # eval: backward normalises with the running statistics
            save_mean, save_invstd = norm.running_mean, torch.rsqrt(norm.running_var + norm.eps)
        out = F.conv2d(torch.relu_(y), weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        del x, y
        ctx.norm, ctx.conv, ctx.use_batch = norm, conv, use_batch
        ctx.conv_dtype = out.dtype  # under autocast the convolution ran in a lower precision
        ctx.sizes = [f.shape[1] for f in features]
        # In eval mode backward normalises with the running statistics, which must be forward's; in
        # training they are not read, and saving them would forbid a second forward before backward.
        stats = (None, None) if use_batch else (norm.running_mean, norm.running_var)
        ctx.save_for_backward(save_mean, save_invstd, *stats, gamma, beta, weight, *features)
        return out

    @staticmethod
    @once_differentiable  # double backward (gradient penalties) needs the plain compile
    def backward(ctx, grad_out):
        norm, conv = ctx.norm, ctx.conv
        save_mean, save_invstd, running_mean, running_var, gamma, beta, weight, *features = ctx.saved_tensors
        x = _join(features)
        y = _normalize(x, gamma, beta, save_mean, save_invstd)
        need = ctx.needs_input_grad
        grad_y, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad_out,
            y.to(ctx.conv_dtype),
            weight.to(ctx.conv_dtype),
            None if conv.bias is None else [conv.bias.shape[0]],
            conv.stride,
            conv.padding,
            conv.dilation,
            False,
            [0, 0],
            conv.groups,
            [True, need[5], conv.bias is not None and need[6]],
        )
        grad_y = grad_y.to(y.dtype)
        torch.ops.aten.threshold_backward.grad_input(grad_y, y, 0, grad_input=grad_y)  # in place: one buffer less
        del y
        grad_x, grad_gamma, grad_beta = torch.ops.aten.native_batch_norm_backward(
            grad_y,
            x,
            gamma,
            running_mean,
            running_var,
            save_mean,
            save_invstd,
            ctx.use_batch,
            norm.eps,
            [True, gamma is not None and need[3], beta is not None and need[4]],
        )
        grad_weight = None if grad_weight is None else grad_weight.to(weight.dtype)
        grad_features = torch.split(grad_x, ctx.sizes, dim=1)
        return (None, None, None, grad_gamma, grad_beta, grad_weight, grad_bias, *grad_features)


def concat_norm_relu_conv(features: list[torch.Tensor], norm: nn.BatchNorm2d, conv: nn.Conv2d) -> torch.Tensor:
    """The graph's call for a fused dense input; plain ops when no gradient is needed.

    Modules replaced or hooked after compilation (SyncBatchNorm, pruning,
    weight norm, forward hooks) get the plain composition of the modules
    themselves, so they behave exactly as they would without the rewrite.
    """
    if not _plain_modules(norm, conv):
        return conv(torch.relu(norm(_join(features))))
    factor = _bn_factor(norm)
    use_batch = norm.training or not norm.track_running_stats
    params = (norm.weight, norm.bias, conv.weight, conv.bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (*params, *features)):
        return ConcatNormReluConv.apply(norm, conv, factor, *params, *features)
    x = _join(features)
    y = F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, use_batch, factor, norm.eps)
    return conv(torch.relu_(y))


def _plain_modules(norm: nn.Module, conv: nn.Module) -> bool:
    if type(norm) is not nn.BatchNorm2d or type(conv) is not nn.Conv2d or isinstance(conv.padding, str):
        return False
    hooks = (norm._forward_hooks, norm._forward_pre_hooks, conv._forward_hooks, conv._forward_pre_hooks)
    return not any(hooks) and not norm._backward_hooks and not conv._backward_hooks


def memory_efficient_dense(module: fx.GraphModule) -> int:
    """Rewrite every ``cat -> batchnorm -> relu -> conv`` chain in place; returns how many it rewrote.

    These are a DenseNet layer's (and transition's) input: the chains whose
    saved tensors grow with block depth. A chain without a concatenation (a
    bottleneck's second half) is left alone: rewriting it would save one
    tensor of constant width per layer, for a recomputation that cost 3%
    of densenet121's training step.
    """
    graph = module.graph
    rewritten = 0
    for norm in list(graph.nodes):
        chain = _norm_relu_conv(module, norm)
        if chain is None:
            continue
        relu, conv = chain
        source = norm.args[0]
        concat = source.op == "call_function" and source.target is torch.cat and source.kwargs.get("dim") == 1
        if not concat or len(source.users) != 1:
            continue
        features = source.args[0]
        with graph.inserting_before(conv):
            norm_ref = graph.get_attr(norm.target)
            conv_ref = graph.get_attr(conv.target)
            fused = graph.call_function(concat_norm_relu_conv, (features, norm_ref, conv_ref))
        conv.replace_all_uses_with(fused)
        fused.name = conv.name
        for node in (conv, relu, norm, source):
            graph.erase_node(node)
        rewritten += 1
    graph.lint()
    module.recompile()
    return rewritten


def _norm_relu_conv(module: fx.GraphModule, norm: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    if norm.op != "call_module" or len(norm.args) != 1 or not isinstance(norm.args[0], fx.Node):
        return None
    if type(module.get_submodule(norm.target)) is not nn.BatchNorm2d:
        return None
    relu = _sole_user(norm)
    if relu is None or relu.op != "call_function" or relu.target not in (torch.relu, torch.relu_):
        return None
    conv = _sole_user(relu)
    if conv is None or conv.op != "call_module" or type(module.get_submodule(conv.target)) is not nn.Conv2d:
        return None
    if not _plain_modules(module.get_submodule(norm.target), module.get_submodule(conv.target)):
        return None
    if module.get_submodule(conv.target).padding_mode != "zeros":
        return None
    return relu, conv


def _sole_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None
