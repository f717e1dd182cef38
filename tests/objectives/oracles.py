"""Exact velocity fields for the linear path, for tests with a closed-form answer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from apexgen.backbones.base import FlowBackbone
from apexgen.condition import VectorCondition


def gaussian_moments(t: Tensor, mean: float, std: float):
    """x_t = t·ε + (1 − t)·x0 with x0 ~ N(mean, std²·I): the mean and variance of x_t."""
    return (1 - t) * mean, (1 - t) ** 2 * std**2 + t**2


def gaussian_velocity(x_t: Tensor, t: Tensor, mean: float, std: float) -> Tensor:
    """E[ε − x0 | x_t] for Gaussian data."""
    t = t.reshape(-1, *([1] * (x_t.dim() - 1)))
    centre, variance = gaussian_moments(t, mean, std)
    offset = x_t - centre
    return t * offset / variance - (mean + (1 - t) * std**2 * offset / variance)


def gaussian_score(x_t: Tensor, t: Tensor, mean: float, std: float) -> Tensor:
    t = t.reshape(-1, *([1] * (x_t.dim() - 1)))
    centre, variance = gaussian_moments(t, mean, std)
    return -(x_t - centre) / variance


class TwoGaussians(FlowBackbone):
    """The real branch (unshifted condition code 1) is the exact velocity of the data N(μ_d, σ_d²); any
    other code (a shifted condition) gets the exact velocity of the generator's N(μ_g, σ_g²)."""

    text_projection = "code"

    def __init__(self, data: tuple[float, float], generated: tuple[float, float]):
        super().__init__()
        self.code = nn.Identity()
        self.data, self.generated = data, generated

    def velocity(self, x_t: Tensor, t: Tensor, cond: VectorCondition) -> Tensor:
        code = self.code(cond.values[:, :1])
        real = gaussian_velocity(x_t, t, *self.data)
        fake = gaussian_velocity(x_t, t, *self.generated)
        return torch.where(code == 1, real, fake)


class FixedGeneratorWithLearnedFakeBranch(FlowBackbone):
    """Real branch: a fixed field whose one-step generator is G(ε) = A·ε + b. Shifted branch: a small
    trainable network (what L_fake trains)."""

    text_projection = "code"

    def __init__(self, matrix: Tensor, bias: Tensor, learned: FlowBackbone):
        super().__init__()
        self.code = nn.Identity()
        self.register_buffer("matrix", matrix)
        self.register_buffer("bias", bias)
        self.learned = learned

    def velocity(self, x_t: Tensor, t: Tensor, cond: VectorCondition) -> Tensor:
        code = self.code(cond.values[:, :1])
        fixed = x_t - x_t @ self.matrix.T - self.bias  # F(ε, 1) = ε − G(ε)
        return torch.where(code == 1, fixed, self.learned(x_t, t, VectorCondition(code)))
