"""Exponential moving averages of parameters: θ_ema ← μ·θ_ema + (1 − μ)·θ."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    """Move ``target``'s parameters toward ``source``'s (same architecture); copy buffers."""
    for ema_param, param in zip(target.parameters(), source.parameters(), strict=True):
        ema_param.lerp_(param.detach().to(ema_param.dtype), 1 - decay)
    for ema_buffer, buffer in zip(target.buffers(), source.buffers(), strict=True):
        ema_buffer.copy_(buffer)


def warmed_up_decay(decay: float, updates: int) -> float:
    """min(μ, (1 + n)/(10 + n)): early averages forget the initial weights quickly (a plain μ = 0.999 still
    gives random initial weights 37% of the average after 1,000 updates)."""
    return min(decay, (1 + updates) / (10 + updates))


class ParameterEMA:
    """An EMA of a module's trainable parameters (the whole model, or only its LoRA adapters), with a
    context manager that swaps the averaged weights in for evaluation and export. Of a sharded model it
    averages each process's own shards (``state_dict`` then holds sharded tensors)."""

    def __init__(self, module: nn.Module, decay: float):
        self.module, self.decay, self.updates = module, decay, 0
        self.shadow = {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self) -> None:
        decay = warmed_up_decay(self.decay, self.updates)
        parameters = dict(self.module.named_parameters())
        for name, average in self.shadow.items():
            average.lerp_(parameters[name].detach().to(average.dtype), 1 - decay)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        """Restore whole averages (the EMA of a sharded model keeps its own shard of each)."""
        from apexgen.train.sharding import copy_whole  # here: torch.distributed loads only when it is needed

        self.updates = state["updates"]
        with torch.no_grad():
            for name, value in state["shadow"].items():
                copy_whole(self.shadow[name], value)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the module holds the averaged weights; afterwards its own again."""
        parameters = dict(self.module.named_parameters())
        saved = {name: parameters[name].detach().clone() for name in self.shadow}
        with torch.no_grad():
            for name, average in self.shadow.items():
                parameters[name].copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    parameters[name].copy_(value)
