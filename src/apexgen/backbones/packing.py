"""2×2 latent packing, as the Flux and Qwen-Image pipelines do it before calling their transformers:
(B, C, H, W) latents become (B, H/2·W/2, 4C) tokens, each token the 2×2 patch, channel-major."""

from __future__ import annotations

import torch
from torch import Tensor

PACK = 2  # the side of the square patch folded into one token


def require_packable(latents: Tensor) -> None:
    if latents.dim() != 4 or latents.shape[-2] % PACK or latents.shape[-1] % PACK:
        raise ValueError(
            f"packed backbones need latents (B, C, H, W) with H and W divisible by {PACK}, got {tuple(latents.shape)}"
        )


def pack_latents(latents: Tensor) -> Tensor:
    """(B, C, H, W) → (B, H/2·W/2, 4C)."""
    require_packable(latents)
    batch, channels, height, width = latents.shape
    patches = latents.view(batch, channels, height // PACK, PACK, width // PACK, PACK).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(batch, (height // PACK) * (width // PACK), channels * PACK * PACK)


def unpack_latents(tokens: Tensor, height: int, width: int) -> Tensor:
    """(B, H/2·W/2, 4C) → (B, C, H, W); the inverse of :func:`pack_latents`."""
    batch, _, features = tokens.shape
    channels = features // (PACK * PACK)
    patches = tokens.view(batch, height // PACK, width // PACK, channels, PACK, PACK).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(batch, channels, height, width)


def token_grid_ids(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """Flux's position ids of the packed image tokens: (H/2·W/2, 3) rows of (0, row, column)."""
    rows, columns = height // PACK, width // PACK
    ids = torch.zeros(rows, columns, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(rows)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(columns)[None, :]
    return ids.reshape(rows * columns, 3).to(device=device, dtype=dtype)
