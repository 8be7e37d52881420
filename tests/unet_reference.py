"""A hand-written U-Net in plain PyTorch (Ronneberger et al. 2015), the reference for architectures/unet.arch.

Written as U-Net implementations usually are: a double convolution module, an
up-sampling level that crops the contracting path's map to the up-sampled one
(torchvision's centre crop) and concatenates them, and a 1x1 output convolution.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms.functional import center_crop


class DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, pad: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=pad)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class Up(nn.Module):
    def __init__(self, cin: int, cout: int, pad: int) -> None:
        super().__init__()
        self.upconv = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = DoubleConv(2 * cout, cout, pad)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.upconv(x)
        skip = center_crop(skip, list(x.shape[-2:]))
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """The paper's U-Net by default: valid convolutions, 64 base channels, one input channel, two classes."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base: int = 64, same: bool = False) -> None:
        super().__init__()
        pad = 1 if same else 0
        self.enc1 = DoubleConv(in_channels, base, pad)
        self.enc2 = DoubleConv(base, 2 * base, pad)
        self.enc3 = DoubleConv(2 * base, 4 * base, pad)
        self.enc4 = DoubleConv(4 * base, 8 * base, pad)
        self.bottleneck = DoubleConv(8 * base, 16 * base, pad)
        self.dec4 = Up(16 * base, 8 * base, pad)
        self.dec3 = Up(8 * base, 4 * base, pad)
        self.dec2 = Up(4 * base, 2 * base, pad)
        self.dec1 = Up(2 * base, base, pad)
        self.out = nn.Conv2d(base, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        e4 = self.enc4(F.max_pool2d(e3, 2))
        b = self.bottleneck(F.max_pool2d(e4, 2))
        return self.out(self.dec1(self.dec2(self.dec3(self.dec4(b, e4), e3), e2), e1))
