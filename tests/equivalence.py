"""What "exact against torchvision" means, as the checks the zoo's equivalence tests share.

- the same ``state_dict`` keys, shapes and order, and ``load_state_dict(strict=True)``;
- eval outputs within 1e-4 relative, after the reference's batch and layer norms get random
  affine parameters and running statistics (untrained networks output numbers so small, and
  their fresh norms are so close to the identity, that a wrong op would hide);
- one training step's gradients and batch-norm running statistics equal, under the same
  dropout and stochastic-depth draws (both models draw in the same order after one seed).

An input is given as a shape (a seeded standard-normal tensor of that shape, batch first)
or as the tensor itself (token ids for a language model); the training step's loss is a
classifier's cross-entropy unless the test passes its own.
"""

from __future__ import annotations

from collections.abc import Callable

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
    """Random affine parameters and running statistics in every batch norm; random affine parameters in
    every layer norm (``nn.LayerNorm`` and its subclasses, such as torchvision's ``LayerNorm2d``).

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
            elif isinstance(module, nn.LayerNorm) and module.weight is not None:
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)


def shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """The state_dict's keys with their shapes, in order."""
    return [(key, tuple(value.shape)) for key, value in model.state_dict().items()]


Example = tuple[int, ...] | torch.Tensor  # an input's shape (a seeded random input) or the input itself


def example_input(example: Example, seed: int) -> torch.Tensor:
    """``example`` itself if it is a tensor, else a standard-normal tensor of that shape drawn from ``seed``."""
    if isinstance(example, torch.Tensor):
        return example
    return torch.randn(*example, generator=torch.Generator().manual_seed(seed))


def assert_same_eval_output(ours: nn.Module, reference: nn.Module, input_shape: Example) -> None:
    """Both in eval mode on one seeded input: outputs within 1e-4 of the reference's largest value."""
    ours.eval()
    reference.eval()
    x = example_input(input_shape, seed=1)
    with torch.no_grad():
        expected = reference(x)
        diff = (ours(x) - expected).abs().max().item()
    assert diff <= 1e-4 * expected.abs().max().item()


def assert_same_eval_output_with_random_norms(ours: nn.Module, reference: nn.Module, input_shape: Example) -> None:
    """Randomise the reference's norms, load its weights into ours (strict), compare eval outputs."""
    randomize_norms(reference, seed=4)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert_same_eval_output(ours, reference, input_shape)


def classifier_loss(output: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a batch of class scores against fixed targets (3, 7, 11, 5, ...)."""
    target = torch.arange(output.shape[0]) * 4 % 10 + 3
    return nn.functional.cross_entropy(output, target)


def assert_same_training_step(
    ours: nn.Module,
    reference: nn.Module,
    input_shape: Example,
    loss: Callable[[torch.Tensor], torch.Tensor] = classifier_loss,
) -> None:
    """Random norms, the same weights, one backward of ``loss`` each: equal gradients and running statistics."""
    randomize_norms(reference, seed=5)
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.train()
    reference.train()
    x = example_input(input_shape, seed=2)
    for model in (ours, reference):
        model.zero_grad()
        torch.manual_seed(3)  # the same dropout and stochastic-depth masks for both: they draw in the same order
        loss(model(x)).backward()
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


def count_dropped_samples(model: nn.Module) -> list[int]:
    """A list that the model's stochastic depth layers (torchvision's ``StochasticDepth``) fill with how many
    samples each zeroed, as they run: a training step that dropped none would not compare the masks."""
    from torchvision.ops import StochasticDepth

    dropped: list[int] = []

    def record(module, inputs, output):
        if module.p > 0:
            dropped.append(int((output.flatten(1).abs().sum(1) == 0).sum()))

    for module in model.modules():
        if isinstance(module, StochasticDepth):
            module.register_forward_hook(record)
    return dropped
