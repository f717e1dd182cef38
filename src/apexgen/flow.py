"""Flow-matching conventions (METHOD §1), written once.

Linear (rectified-flow) path with t = 1 at noise and t = 0 at data, the diffusers / SD3 / Qwen-Image
convention:

    x_t = t·ε + (1 − t)·x0,        v = ε − x0,
    x̂0 = x_t − t·F,                ε̂ = x_t + (1 − t)·F.

Times are tensors of shape (B,) and are broadcast over the remaining dimensions of the sample.
Randomness is always passed in as a ``torch.Generator``; nothing here touches the global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor


def broadcast_time(t: Tensor, like: Tensor) -> Tensor:
    """Reshape per-sample times (B,) to (B, 1, ..., 1) so they broadcast against ``like``."""
    return t.reshape(t.shape + (1,) * (like.dim() - t.dim()))


def interpolate(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = t·ε + (1 − t)·x0."""
    t = broadcast_time(t, x0)
    return t * noise + (1 - t) * x0


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """v = ε − x0, the constant velocity of the straight path from x0 to ε."""
    return noise - x0


def x0_from_velocity(x_t: Tensor, t: Tensor, velocity: Tensor) -> Tensor:
    """x̂0 = x_t − t·F."""
    return x_t - broadcast_time(t, x_t) * velocity


def noise_from_velocity(x_t: Tensor, t: Tensor, velocity: Tensor) -> Tensor:
    """ε̂ = x_t + (1 − t)·F."""
    return x_t + (1 - broadcast_time(t, x_t)) * velocity


def velocity_from_x0(x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
    """The velocity whose x̂0 is ``x0``: F = (x_t − x0) / t (undefined at t = 0)."""
    return (x_t - x0) / broadcast_time(t, x_t)


def score_difference_from_velocity_difference(delta_velocity: Tensor, t: Tensor) -> Tensor:
    """s_a − s_b = −((1 − t)/t)·(v_a − v_b) at the same x_t (METHOD §1).

    This is why two velocity branches of one network can stand in for DMD's "real" and "fake" scores.
    """
    t = broadcast_time(t, delta_velocity)
    return -((1 - t) / t) * delta_velocity


def score_from_velocity(x_t: Tensor, t: Tensor, velocity: Tensor) -> Tensor:
    """∇ log p_t(x_t) = −ε̂ / t for the Gaussian path: the noise estimate rescaled."""
    return -noise_from_velocity(x_t, t, velocity) / broadcast_time(t, x_t)


@dataclass(frozen=True)
class PathSample:
    """One draw from the probability path: the pieces every flow-matching loss needs."""

    x0: Tensor
    noise: Tensor
    t: Tensor
    x_t: Tensor
    velocity: Tensor


def sample_path(x0: Tensor, t: Tensor, rng: torch.Generator | None) -> PathSample:
    """Draw ε ~ N(0, I) and return (x0, ε, t, x_t, v) for the linear path."""
    noise = randn_like(x0, rng)
    return PathSample(x0, noise, t, interpolate(x0, noise, t), velocity_target(x0, noise))


def randn_like(x: Tensor, rng: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator`` (never the global RNG)."""
    return torch.randn(x.shape, generator=rng, dtype=x.dtype, device=x.device)


TimeDistribution = Literal["uniform", "logit_normal"]


@dataclass(frozen=True)
class TimeSampler:
    """Training-time distribution over t ∈ (0, 1) (METHOD §4).

    ``uniform``: U(t_min, t_max). ``logit_normal``: sigmoid(N(mean, std)) (SD3). ``shift`` > 1 then
    moves mass toward noise with the SD3 resolution shift t ↦ s·t / (1 + (s − 1)·t).
    """

    distribution: TimeDistribution = "uniform"
    mean: float = 0.0
    std: float = 1.0
    shift: float = 1.0
    t_min: float = 0.0
    t_max: float = 1.0

    def __post_init__(self):
        if self.distribution not in ("uniform", "logit_normal"):
            raise ValueError(f"distribution must be 'uniform' or 'logit_normal', got {self.distribution!r}")
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std}")
        if not self.shift > 0:
            raise ValueError(f"shift must be > 0, got {self.shift}")
        if not 0 <= self.t_min < self.t_max <= 1:
            raise ValueError(f"t_min and t_max must satisfy 0 ≤ t_min < t_max ≤ 1, got {self.t_min}, {self.t_max}")

    def __call__(self, batch_size: int, rng: torch.Generator | None, device=None, dtype=torch.float32) -> Tensor:
        u = torch.rand(batch_size, generator=rng, device=device, dtype=dtype)
        if self.distribution == "logit_normal":
            normal = torch.randn(batch_size, generator=rng, device=device, dtype=dtype)
            u = torch.sigmoid(self.mean + self.std * normal)
        t = shift_time(u, self.shift)
        return self.t_min + (self.t_max - self.t_min) * t


def shift_time(t: Tensor, shift: float) -> Tensor:
    """SD3's timestep shift: t ↦ s·t / (1 + (s − 1)·t); identity for s = 1."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def euler_time_grid(steps: int, shift: float = 1.0, device=None) -> Tensor:
    """steps + 1 decreasing times from 1 to 0 for an Euler ODE sampler, optionally SD3-shifted."""
    grid = torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=torch.float64)
    return shift_time(grid, shift).float()
