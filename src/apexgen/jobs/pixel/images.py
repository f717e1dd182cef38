"""Image grids (rows × columns of grey or RGB images in [-1, 1]) written as PNG with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

GRID_PAD = 2
GRID_SCALE = 2  # 32-pixel images are tiny on screen: each pixel becomes 2×2


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] → (N, H, W, C) uint8, as saved to PNG (the rounding FID also applies)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_grid(images: torch.Tensor, columns: int, path: Path, scale: int = GRID_SCALE) -> Path:
    """Images in row-major order (``columns`` per row) as one PNG with a light separating border."""
    pixels = to_uint8(images)
    count, height, width, channels = pixels.shape
    rows = -(-count // columns)
    size = (rows * (height + GRID_PAD) + GRID_PAD, columns * (width + GRID_PAD) + GRID_PAD, channels)
    canvas = np.full(size, 200, np.uint8)
    for index, image in enumerate(pixels):
        top = GRID_PAD + (index // columns) * (height + GRID_PAD)
        left = GRID_PAD + (index % columns) * (width + GRID_PAD)
        canvas[top : top + height, left : left + width] = image
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST).save(path)
    return path
