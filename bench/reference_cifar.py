"""Hand-written PyTorch CIFAR networks: the contenders the zoo's CIFAR networks are timed against.

torchvision has no CIFAR networks, so these are written the way one writes them by hand: a
ResNet with option-A shortcuts (subsample, zero-pad the channels) as in He et al. 2015 section
4.2, and a DenseNet-BC as in Huang et al. 2016 (a list of feature maps concatenated before every
layer, as torchvision's DenseNet does). Module paths equal the zoo's, so each loads the zoo
module's state_dict with ``strict=True`` and computes the same function. Target: CIFAR ResNet-20
has 269,722 parameters, like the zoo's `cifar_resnet`; DenseNet-BC (L=100, k=12) 769,162, like
`cifar_densenet_bc`. This script checks parameter counts and outputs against the zoo:

    python -m bench.reference_cifar
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a parameter-free shortcut (option A)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.pad:
            half = self.pad // 2
            shortcut = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, half, self.pad - half))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n+2 with {16, 32, 64} filters and option-A shortcuts."""

    def __init__(self, depth: int = 20, num_classes: int = 10, width: int = 16):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes = [width, width * 2, width * 4]
        self.layer1 = self._stage(width, planes[0], n, 1)
        self.layer2 = self._stage(planes[0], planes[1], n, 2)
        self.layer3 = self._stage(planes[1], planes[2], n, 2)
        self.fc = nn.Linear(planes[2], num_classes)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        first = BasicBlock(in_planes, planes, stride)
        return nn.Sequential(first, *(BasicBlock(planes, planes) for _ in range(blocks - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DenseLayer(nn.Module):
    """BN-ReLU-Conv(1x1) to 4k channels, then BN-ReLU-Conv(3x3) to k new feature maps."""

    def __init__(self, in_channels: int, growth: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, 4 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[0] if len(features) == 1 else torch.cat(features, 1)
        x = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(x)))


class DenseBlock(nn.ModuleList):
    """Layers that each see the concatenation of the block's input and every earlier layer's output."""

    def __init__(self, in_channels: int, layers: int, growth: int):
        super().__init__(DenseLayer(in_channels + i * growth, growth) for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self:
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Module):
    """BN-ReLU-Conv(1x1) keeping half the channels, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.norm(x))), 2, 2)


class CifarDenseNetBC(nn.Module):
    """DenseNet-BC for CIFAR: three dense blocks of (depth - 4) / 6 bottleneck layers, compression 0.5."""

    def __init__(self, depth: int = 100, growth: int = 12, num_classes: int = 10):
        super().__init__()
        layers = (depth - 4) // 6
        channels = 2 * growth
        self.conv0 = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        for i in (1, 2, 3):
            self.add_module(f"block{i}", DenseBlock(channels, layers, growth))
            channels += layers * growth
            if i < 3:
                self.add_module(f"trans{i}", Transition(channels, channels // 2))
                channels //= 2
        self.norm = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trans1(self.block1(self.conv0(x)))
        x = self.trans2(self.block2(x))
        x = F.relu(self.norm(self.block3(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def reference(zoo_name: str, **overrides) -> nn.Module:
    """The hand-written counterpart of a zoo CIFAR network (`cifar_resnet` or `cifar_densenet_bc`)."""
    if zoo_name == "cifar_resnet":
        return CifarResNet(**overrides)
    if zoo_name == "cifar_densenet_bc":
        return CifarDenseNetBC(**overrides)
    raise ValueError(f"no hand-written reference for {zoo_name}")


def main() -> None:
    """Check parameter counts and outputs of the references against the zoo, with the zoo's weights."""
    import archdsl

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for zoo_name, overrides in [
        ("cifar_resnet", {"depth": 20}),
        ("cifar_resnet", {"depth": 110}),
        ("cifar_densenet_bc", {"depth": 100, "growth": 12}),
    ]:
        ours, theirs = archdsl.load(zoo_name, seed=0, **overrides), reference(zoo_name, **overrides)
        theirs.load_state_dict(ours.state_dict(), strict=True)
        with torch.no_grad():
            diff = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()
        params = sum(p.numel() for p in theirs.parameters())
        print(f"{zoo_name} {overrides}: {params:,} parameters, max |output difference| {diff:.1e}")


if __name__ == "__main__":
    main()
