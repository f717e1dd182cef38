"""Exponential moving averages of parameters: θ_ema ← μ·θ_ema + (1 − μ)·θ."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    """Move ``target``'s parameters toward ``source``'s (same architecture); copy buffers."""
    for ema_param, param in zip(target.parameters(), source.parameters(), strict=True):
        ema_param.lerp_(param.detach().to(ema_param.dtype), 1 - decay)
    for ema_buffer, buffer in zip(target.buffers(), source.buffers(), strict=True):
        ema_buffer.copy_(buffer)
