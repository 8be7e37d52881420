"""Shared fixtures: the repository root and small helper networks."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return REPO


TINY_RESNET = '''
"""A tiny residual network for fast tests."""
block basic(planes, stride = 1) {
    conv1: conv(planes, k=3, stride=stride, pad=1, bias=false) -> bn1: batchnorm -> relu1: relu
    conv2: conv(planes, k=3, pad=1, bias=false) -> bn2: batchnorm
    skip in -> bn2 via projection
    relu2: relu
}

network tiny(num_classes = 10, width = 8) {
    input image: [3, 16, 16]
    conv1: conv(width, k=3, pad=1, bias=false) -> bn1: batchnorm -> relu: relu
    layer1: stage basic(width) x 2
    layer2: stage basic(width * 2) x 2, first(stride=2)
    avgpool: adaptive_avgpool(1) -> flatten -> fc: linear(num_classes)
}
'''


@pytest.fixture
def tiny_resnet() -> str:
    return TINY_RESNET
