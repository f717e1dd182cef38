"""Image grids (rows × columns of 1-channel images in [-1, 1]) written as PNG with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

GRID_PAD = 2
GRID_SCALE = 2  # 32-pixel images are tiny on screen: each pixel becomes 2×2


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 1, H, W) in [-1, 1] → (N, H, W) uint8, as saved to PNG (the rounding FID also applies)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].cpu().numpy()


def save_grid(images: torch.Tensor, columns: int, path: Path, scale: int = GRID_SCALE) -> Path:
    """Images in row-major order (``columns`` per row) as one PNG with a light separating border."""
    pixels = to_uint8(images)
    count, height, width = pixels.shape
    rows = -(-count // columns)
    canvas = np.full((rows * (height + GRID_PAD) + GRID_PAD, columns * (width + GRID_PAD) + GRID_PAD), 200, np.uint8)
    for index, image in enumerate(pixels):
        top = GRID_PAD + (index // columns) * (height + GRID_PAD)
        left = GRID_PAD + (index % columns) * (width + GRID_PAD)
        canvas[top : top + height, left : left + width] = image
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(canvas)
    picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST).save(path)
    return path
