"""The training loop's EMA of the trainable weights, with the update rule of ``apexgen.ema``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from apexgen.ema import lerp_toward, warmed_up_decay


class ParameterEMA:
    """An EMA of a module's trainable parameters (the whole model, or only its LoRA adapters), with a
    context manager that swaps the averaged weights in for evaluation and export. Of a sharded model it
    averages each process's own shards (``state_dict`` then holds sharded tensors)."""

    def __init__(self, module: nn.Module, decay: float):
        self.module, self.decay, self.updates = module, decay, 0
        self.shadow = {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self) -> None:
        parameters = dict(self.module.named_parameters())
        values = (parameters[name] for name in self.shadow)
        lerp_toward(self.shadow.values(), values, warmed_up_decay(self.decay, self.updates))
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
