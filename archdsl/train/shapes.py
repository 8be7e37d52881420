"""A generated segmentation task: filled shapes on a noisy background, and the mask of each image.

Every image has one to four shapes (discs, rectangles, triangles) of random
size, place and colour, drawn in turn (a later one covers an earlier one) on
a plain background of random shade, plus Gaussian noise. Its mask gives the
class of every pixel: 0 background, 1 disc, 2 rectangle, 3 triangle. Shapes
are brighter than any background, so finding them is easy and telling them
apart is the task. Everything comes from one seeded generator: the same
arguments give the same tensors, with no files and no downloads.
"""

from __future__ import annotations

import torch

SHAPE_CLASSES = ("background", "disc", "rectangle", "triangle")
MAX_SHAPES = 4
BACKGROUND = (0.0, 0.3)  # the range of a background's shade
COLOUR = (0.55, 1.0)  # the range of a shape's colour, per channel: always brighter than the background


def draw_shapes(
    count: int, channels: int, height: int, width: int, *, seed: int = 0, noise: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` images (count, channels, height, width) and their masks (count, height, width) of class ids.

    The class ids index :data:`SHAPE_CLASSES`. Before the noise (``noise=0``),
    a pixel is brighter than any background exactly where its mask is not 0.
    """
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    side = min(height, width)
    rows = (torch.arange(height, dtype=torch.float32) + 0.5).view(1, height, 1)
    cols = (torch.arange(width, dtype=torch.float32) + 0.5).view(1, 1, width)
    images = uniform(*BACKGROUND, count, channels, 1, 1).expand(count, channels, height, width).clone()
    masks = torch.zeros(count, height, width, dtype=torch.long)
    shapes = torch.randint(1, MAX_SHAPES + 1, (count, 1, 1), generator=generator)
    for slot in range(MAX_SHAPES):
        # Every slot draws all its numbers, used or not, so each image's shapes depend on the seed only.
        kind = torch.randint(1, len(SHAPE_CLASSES), (count, 1, 1), generator=generator)
        row, col = uniform(0, height, count, 1, 1), uniform(0, width, count, 1, 1)
        half_height, half_width = uniform(0.1, 0.25, count, 1, 1) * side, uniform(0.1, 0.25, count, 1, 1) * side
        colour = uniform(*COLOUR, count, channels, 1, 1)
        dy, dx = rows - row, cols - col
        disc = dy**2 + dx**2 <= half_height**2
        rectangle = (dy.abs() <= half_height) & (dx.abs() <= half_width)
        # Apex up, base down, 1.4 times the rectangle's size so that both cover about as much.
        depth = (dy + 1.4 * half_height) / (2.8 * half_height)  # 0 at the apex, 1 at the base
        triangle = (depth >= 0) & (depth <= 1) & (dx.abs() <= 1.4 * half_width * depth)
        inside = torch.where(kind == 1, disc, torch.where(kind == 2, rectangle, triangle)) & (slot < shapes)
        images = torch.where(inside.unsqueeze(1), colour, images)
        masks = torch.where(inside, kind, masks)
    return images + noise * torch.randn(images.shape, generator=generator), masks


def centre_crop(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centre ``height`` x ``width`` of (N, H, W) masks, offset as torchvision's ``center_crop`` rounds."""
    top, left = round((masks.shape[-2] - height) / 2), round((masks.shape[-1] - width) / 2)
    return masks[..., top : top + height, left : left + width].contiguous()
