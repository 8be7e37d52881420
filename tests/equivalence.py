"""What "exact against torchvision" means, as the checks the zoo's equivalence tests share.

- the same ``state_dict`` keys, shapes and order, and ``load_state_dict(strict=True)``;
- eval outputs within 1e-4 relative, after the reference's batch norms get random affine
  parameters and running statistics (untrained networks output numbers so small, and their
  fresh norms are so close to the identity, that a wrong op would hide);
- one training step's gradients and batch-norm running statistics equal, under the same
  dropout and stochastic-depth draws (both models draw in the same order after one seed).
"""

from __future__ import annotations

import torch
from torch import nn


def archdsl_and_torchvision(name: str) -> tuple[nn.Module, nn.Module]:
    """The zoo's network ``name`` (a file or a builder name) and torchvision's builder of that name."""
    import torchvision

    import archdsl

    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)()
    return archdsl.load(name, seed=0), reference


def randomize_norms(model: nn.Module, seed: int) -> None:
    """Random affine parameters and running statistics in every batch norm.

    Freshly initialised norms are the identity on standardised data, and an
    untrained network's outputs are tiny: both hide a wrong op or a swapped
    norm. With random statistics each layer's mistake shows in the output.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                shape = module.running_mean.shape
                module.weight.copy_(torch.rand(shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(shape, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(shape, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(shape, generator=gen) + 0.5)


def shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """The state_dict's keys with their shapes, in order."""
    return [(key, tuple(value.shape)) for key, value in model.state_dict().items()]


def assert_same_eval_output(ours: nn.Module, reference: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Both in eval mode on one seeded input: outputs within 1e-4 of the reference's largest value."""
    ours.eval()
    reference.eval()
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        diff = (ours(x) - expected).abs().max().item()
    assert diff <= 1e-4 * expected.abs().max().item()


def assert_same_eval_output_with_random_norms(ours: nn.Module, reference: nn.Module, input_shape) -> None:
    """Randomise the reference's norms, load its weights into ours (strict), compare eval outputs."""
    randomize_norms(reference, seed=4)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert_same_eval_output(ours, reference, input_shape)


def assert_same_training_step(ours: nn.Module, reference: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Random norms, the same weights, one cross-entropy backward each: equal gradients and running statistics."""
    randomize_norms(reference, seed=5)
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.train()
    reference.train()
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(2))
    target = torch.arange(input_shape[0]) * 4 % 10 + 3
    for model in (ours, reference):
        model.zero_grad()
        torch.manual_seed(3)  # the same dropout and stochastic-depth masks for both: they draw in the same order
        nn.functional.cross_entropy(model(x), target).backward()
    theirs = dict(reference.named_parameters())
    for key, param in ours.named_parameters():
        assert_close_in_chunks(param.grad, theirs[key].grad, key)
    their_buffers = dict(reference.named_buffers())
    for key, buf in ours.named_buffers():
        assert_close_in_chunks(buf, their_buffers[key], key)


def assert_close_in_chunks(actual: torch.Tensor, expected: torch.Tensor, key: str, chunk: int = 1 << 22) -> None:
    """``torch.testing.assert_close`` (rtol 1e-4, atol 1e-5), a few million values at a time.

    On VGG's 100-million-value classifier gradients, one call allocated
    several temporaries of the full size: gigabytes of test-only memory.
    """
    assert actual.shape == expected.shape, key
    for a, b in zip(actual.reshape(-1).split(chunk), expected.reshape(-1).split(chunk), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=key)
