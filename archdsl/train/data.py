"""Datasets for training: bundled digits, synthetic, an image folder, a CIFAR-10 copy, generated shapes.

Nothing is downloaded. The first four label whole images (classification);
``shapes`` labels every pixel (segmentation, :mod:`archdsl.train.shapes`).
Every dataset is fitted to the network's declared input: images are resized
to its height and width and given its number of channels; flat inputs get the
image flattened at the matching square size. When a dataset of a known size
(digits, CIFAR-10) is resized, or masks are cropped to a smaller output,
:attr:`Data.note` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

from archdsl.errors import ArchError
from archdsl.train.shapes import SHAPE_CLASSES, centre_crop, draw_shapes

CLASSIFY, SEGMENT = "classify", "segment"  # the tasks: a label per image, a label per pixel
SEGMENTATION_DATA = ("shapes",)
SPLIT_SEED = 0  # the digits train/test split never changes
MAX_SYNTHETIC_VALUES = 1 << 28  # synthetic data: 1 GiB of float32 at most
DIGITS_TEST_FRACTION = 0.2


class ArchDataError(ArchError):
    """The data cannot be read or does not fit the network."""

    default_code = "E801"


@dataclass
class Data:
    """A training and a test set with their number of classes, and what was done to fit them (or None).

    ``task`` is :data:`CLASSIFY` (a label per example) or :data:`SEGMENT` (a mask of class ids per example).
    """

    train: Dataset
    test: Dataset
    num_classes: int
    name: str
    note: str | None = None
    task: str = CLASSIFY


def load_data(
    spec: str,
    input_shape: tuple[int, ...],
    *,
    synthetic_size: int = 512,
    output_shape: tuple[int, ...] | None = None,
) -> Data:
    """``digits``, ``synthetic``, ``imagefolder:PATH``, ``cifar10:PATH`` or ``shapes``, fitted to ``input_shape``.

    ``synthetic_size``: the training examples of ``synthetic`` and ``shapes`` (a quarter more are drawn for
    test). ``output_shape``: the network's output; ``shapes`` crops its masks to a smaller [K, h, w] one.
    """
    kind, _, path = spec.partition(":")
    if kind == "digits":
        return _digits(input_shape)
    if kind == "synthetic":
        return _synthetic(input_shape, synthetic_size)
    if kind == "shapes":
        return _shapes(input_shape, synthetic_size, output_shape)
    if kind in ("imagefolder", "cifar10"):
        if not path:
            raise ArchDataError(f"`--data {kind}` needs a folder", None, f"write `--data {kind}:PATH`")
        return _torchvision(kind, path, input_shape)
    raise ArchDataError(
        f"unknown data `{spec}`", None, "use digits, synthetic, imagefolder:PATH, cifar10:PATH or shapes", code="E802"
    )


def known_classes(spec: str | None) -> int | None:
    """The number of classes of ``spec`` where it is known without reading anything (digits, synthetic, shapes)."""
    if spec == "shapes":
        return len(SHAPE_CLASSES)
    return 10 if spec in ("digits", "synthetic") else None


def data_task(spec: str | None) -> str:
    """The task ``spec``'s labels are for: :data:`SEGMENT` for shapes, :data:`CLASSIFY` for the others."""
    return SEGMENT if (spec or "").partition(":")[0] in SEGMENTATION_DATA else CLASSIFY


def fit_images(images: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Resize (N, C, H, W) images in [0, 1] to the network's input shape (channels repeated or averaged)."""
    if len(input_shape) == 1:
        side = math.isqrt(input_shape[0] // images.shape[1])
        if side * side * images.shape[1] != input_shape[0]:
            side = math.isqrt(input_shape[0])
            images = images.mean(1, keepdim=True)
            if side * side != input_shape[0]:
                raise ArchDataError(
                    f"a flat input of {input_shape[0]} features is not a square image",
                    None,
                    "declare [64] or [784] (e.g. `-p features=64`), or an image input [C, H, W]",
                )
        resized = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
        return resized.flatten(1)
    channels, height, width = input_shape
    if images.shape[1] != channels:
        images = images.mean(1, keepdim=True).expand(-1, channels, -1, -1) if channels in (1, 3) else None
        if images is None:
            raise ArchDataError(f"the network wants {channels} input channels; images have 1 or 3", None)
    if images.shape[2:] != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    return images.contiguous()


def _normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images - mean) / std


def _digits(input_shape: tuple[int, ...]) -> Data:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        list(range(len(labels))), test_size=DIGITS_TEST_FRACTION, random_state=SPLIT_SEED, stratify=digits.target
    )
    fitted = fit_images(images, input_shape)
    mean, std = fitted[train_idx].mean(), fitted[train_idx].std()
    fitted = _normalise(fitted, mean, std)
    return Data(
        TensorDataset(fitted[train_idx], labels[train_idx]),
        TensorDataset(fitted[test_idx], labels[test_idx]),
        10,
        "digits",
        resize_note("digits", (1, 8, 8), input_shape),
    )


def resize_note(name: str, native: tuple[int, int, int], input_shape: tuple[int, ...]) -> str | None:
    """``"digits: 8x8 images resized to 3x224x224"``, or None when the images keep their size."""
    channels, height, width = native
    if len(input_shape) == 1:
        if input_shape[0] == channels * height * width:
            return None
        return f"{name}: {height}x{width} images resized and flattened to {input_shape[0]} features"
    if tuple(input_shape) == native:
        return None
    if tuple(input_shape[1:]) == (height, width):
        return f"{name}: {height}x{width} images given {input_shape[0]} channels instead of {channels}"
    return f"{name}: {height}x{width} images resized to {'x'.join(map(str, input_shape))}"


def _check_size(name: str, size: int, input_shape: tuple[int, ...]) -> None:
    values = (size + size // 4) * math.prod(input_shape)
    if size < 1 or values > MAX_SYNTHETIC_VALUES:
        raise ArchDataError(
            f"{name} data of {size:,} examples of shape {list(input_shape)} would hold {values:,} values",
            None,
            f"ask for at least 1 and at most {MAX_SYNTHETIC_VALUES:,} values (1 GiB of float32) in all",
        )


def _synthetic(input_shape: tuple[int, ...], size: int) -> Data:
    """Ten classes of noisy class templates: learnable, small, no files."""
    _check_size("synthetic", size, input_shape)
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    templates = torch.randn(10, *input_shape, generator=generator)
    labels = torch.arange(size + size // 4) % 10
    noise = torch.randn(len(labels), *input_shape, generator=generator)
    inputs = templates[labels] + 0.5 * noise
    return Data(
        TensorDataset(inputs[:size], labels[:size]),
        TensorDataset(inputs[size:], labels[size:]),
        10,
        "synthetic",
    )


def _shapes(input_shape: tuple[int, ...], size: int, output_shape: tuple[int, ...] | None) -> Data:
    """Generated shapes and their masks (:func:`draw_shapes`) at the input's size, normalised like digits."""
    if len(input_shape) != 3:
        raise ArchDataError(
            f"`shapes` gives images and masks, but the network's input is flat {list(input_shape)}",
            None,
            "declare an image input [C, H, W]",
        )
    _check_size("shapes", size, input_shape)
    channels, height, width = input_shape
    images, masks = draw_shapes(size + size // 4, channels, height, width, seed=SPLIT_SEED)
    images = _normalise(images, images[:size].mean(), images[:size].std())
    note = None
    if output_shape is not None and len(output_shape) == 3 and (height, width) != tuple(output_shape[1:]):
        crop_height, crop_width = output_shape[1:]
        if crop_height <= height and crop_width <= width:
            masks = centre_crop(masks, crop_height, crop_width)
            note = (
                f"shapes: masks cropped to the centre {crop_height}x{crop_width} of the {height}x{width} images, "
                "the size of the network's output"
            )
    return Data(
        TensorDataset(images[:size], masks[:size]),
        TensorDataset(images[size:], masks[size:]),
        len(SHAPE_CLASSES),
        "shapes",
        note,
        SEGMENT,
    )


def _torchvision(kind: str, path: str, input_shape: tuple[int, ...]) -> Data:
    try:
        from torchvision import datasets, transforms
    except ImportError:  # pragma: no cover - torchvision is a test dependency
        raise ArchDataError(f"`--data {kind}` needs torchvision", None, "pip install torchvision") from None
    if len(input_shape) != 3:
        raise ArchDataError(f"`{kind}` gives images, but the network's input is flat {list(input_shape)}", None)
    channels, height, width = input_shape
    steps = [transforms.Resize((height, width)), transforms.ToTensor()]
    if channels == 1:
        steps.insert(0, transforms.Grayscale(1))
    transform = transforms.Compose(steps)
    try:
        if kind == "cifar10":
            train = datasets.CIFAR10(path, train=True, transform=transform, download=False)
            test = datasets.CIFAR10(path, train=False, transform=transform, download=False)
            return Data(train, test, 10, "cifar10", resize_note("cifar10", (3, 32, 32), input_shape))
        full = datasets.ImageFolder(path, transform=transform)
    except (RuntimeError, FileNotFoundError, OSError) as err:
        raise ArchDataError(f"cannot read {kind} data at {path}: {err}", None, code="E803") from None
    count = len(full)
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    order = torch.randperm(count, generator=generator).tolist()
    cut = max(1, int(count * (1 - DIGITS_TEST_FRACTION)))
    return Data(
        torch.utils.data.Subset(full, order[:cut]),
        torch.utils.data.Subset(full, order[cut:]),
        len(full.classes),
        f"imagefolder:{path}",
    )
