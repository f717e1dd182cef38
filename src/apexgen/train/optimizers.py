"""The optimisers of an objective's parameter groups (one AdamW each), and the freezing of every other
group while one group's loss is built (so that an update neither reaches nor stores gradients for networks
it does not change)."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from apexgen.train.settings import OptimizerConfig


@contextmanager
def only_group_trainable(groups: dict[str, list[nn.Parameter]], active: str):
    """Freeze the parameters of every other group while ``active``'s loss is built, so gradients
    neither reach nor are stored for networks that this update does not change."""
    active_ids = {id(p) for p in groups[active]}
    frozen = [p for name, params in groups.items() if name != active for p in params if id(p) not in active_ids]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def build_optimizers(
    groups: dict[str, list[nn.Parameter]], config: OptimizerConfig
) -> dict[str, torch.optim.Optimizer]:
    return {
        name: torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
        for name, params in groups.items()
    }
