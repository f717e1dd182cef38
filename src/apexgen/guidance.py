"""Classifier-free guidance on velocities: v = v(∅) + w·(v(c) − v(∅)); one forward when w = 1."""

from __future__ import annotations

import torch
from torch import Tensor

from apexgen.condition import Condition


def guided_velocity(
    model, x_t: Tensor, t: Tensor, cond: Condition, null_cond: Condition | None, scale: float
) -> Tensor:
    """The CFG velocity at scale ``scale`` (both branches in one batched forward)."""
    if scale == 1.0 or null_cond is None:
        return model(x_t, t, cond)
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), type(cond).cat([cond, null_cond]))
    conditional, unconditional = both.chunk(2)
    return unconditional + scale * (conditional - unconditional)


def guidance_direction(model, x_t: Tensor, t: Tensor, cond: Condition, null_cond: Condition) -> Tensor:
    """v(c) − v(∅): the term that CFG-enhanced targets add, scaled, to the flow-matching target."""
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), type(cond).cat([cond, null_cond]))
    conditional, unconditional = both.chunk(2)
    return conditional - unconditional
