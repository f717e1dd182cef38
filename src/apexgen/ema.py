"""Exponential moving averages: θ_ema ← μ·θ_ema + (1 − μ)·θ, the one update rule of every average in
apexgen (a target network's, e.g. the consistency model's EMA teacher, and the training loop's
``ParameterEMA`` of the trainable weights)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


@torch.no_grad()
def lerp_toward(averages: Iterable[Tensor], values: Iterable[Tensor], decay: float) -> None:
    """Each average ← μ·average + (1 − μ)·value, in the average's dtype."""
    for average, value in zip(averages, values, strict=True):
        average.lerp_(value.detach().to(average.dtype), 1 - decay)


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    """Move ``target``'s parameters toward ``source``'s (same architecture); copy buffers."""
    lerp_toward(target.parameters(), source.parameters(), decay)
    for ema_buffer, buffer in zip(target.buffers(), source.buffers(), strict=True):
        ema_buffer.copy_(buffer)


def warmed_up_decay(decay: float, updates: int) -> float:
    """min(μ, (1 + n)/(10 + n)): early averages forget the initial weights quickly (a plain μ = 0.999 still
    gives random initial weights 37% of the average after 1,000 updates)."""
    return min(decay, (1 + updates) / (10 + updates))
