"""Samplers (METHOD §6): Euler ODE with classifier-free guidance (the teacher, any number of steps),
one step (x0 = ε − F(ε, 1, c)), and few steps by re-noising. Training previews use the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from apexgen import flow
from apexgen.condition import Condition
from apexgen.guidance import guided_velocity

# Few-step grids: the released "UCGM few" sampler starts at 0.999 and ends its 2-step grid at 0.6; we
# start at exactly 1, where the one-step generator is trained, so that the first step is G_θ itself.
FEW_STEP_LAST_TIME = {2: 0.6, 3: 0.5, 4: 0.5}
DEFAULT_LAST_TIME = 0.5


@torch.no_grad()
def euler_sample(
    model,
    noise: Tensor,
    cond: Condition,
    steps: int,
    guidance: float = 1.0,
    null_cond: Condition | None = None,
    time_shift: float = 1.0,
) -> Tensor:
    """Integrate dx/dt = v from t = 1 (noise) to t = 0 with ``steps`` Euler steps and CFG ``guidance``."""
    if guidance != 1.0 and null_cond is None:
        raise ValueError("classifier-free guidance needs the null condition")
    grid = flow.euler_time_grid(steps, time_shift, device=noise.device)
    x = noise
    for t_now, t_next in zip(grid[:-1], grid[1:], strict=True):
        t = t_now.expand(x.shape[0]).to(x.dtype)
        x = x + (t_next - t_now) * guided_velocity(model, x, t, cond, null_cond, guidance)
    return x


def one_step_with_velocity(model, noise: Tensor, cond: Condition) -> tuple[Tensor, Tensor]:
    """G(ε, c) = ε − F(ε, 1, c) and F(ε, 1, c), with gradients (training uses both)."""
    t_one = torch.ones(noise.shape[0], device=noise.device, dtype=noise.dtype)
    velocity = model(noise, t_one, cond)
    return noise - velocity, velocity


@torch.no_grad()
def one_step_sample(model, noise: Tensor, cond: Condition) -> Tensor:
    """x0 = ε − F(ε, 1, c): the one-step generator G(ε, c), guidance off (it was baked in)."""
    return one_step_with_velocity(model, noise, cond)[0]


def few_step_times(steps: int) -> list[float]:
    """The grid of a few-step sampler: ``steps`` times from 1 down to FEW_STEP_LAST_TIME[steps]."""
    if steps == 1:
        return [1.0]
    last = FEW_STEP_LAST_TIME.get(steps, DEFAULT_LAST_TIME)
    return torch.linspace(1.0, last, steps, dtype=torch.float64).tolist()


@torch.no_grad()
def few_step_sample(
    model,
    noise: Tensor,
    cond: Condition,
    steps: int,
    rng: torch.Generator | None,
    times: Sequence[float] | None = None,
) -> Tensor:
    """At each grid time predict x̂0, then re-noise it to the next time with fresh noise:
    x_{t'} = t'·ε_new + (1 − t')·x̂0. The first prediction is the one-step generator's output."""
    times = few_step_times(steps) if times is None else list(times)
    x = noise
    for index, time in enumerate(times):
        t = torch.full((x.shape[0],), time, device=x.device, dtype=x.dtype)
        x0 = flow.x0_from_velocity(x, t, model(x, t, cond))
        if index + 1 < len(times):
            next_t = torch.full_like(t, times[index + 1])
            x = flow.interpolate(x0, flow.randn_like(x0, rng), next_t)
    return x0
