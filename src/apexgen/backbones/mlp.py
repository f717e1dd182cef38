"""A small velocity network for 2-D toy data: F(x_t, t, c), an MLP whose layers are modulated by an
embedding of (t, c) (adaptive scale and shift, as in DiT's adaLN). The condition enters through one
linear layer (``cond_proj``), the toy stand-in for a text projection, so the condition shift acts on
projected features exactly as it does in the diffusers backbones."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from apexgen.backbones.base import FlowBackbone
from apexgen.condition import VectorCondition
from apexgen.config import require


@dataclass(frozen=True)
class MLPConfig:
    hidden: int = 64
    layers: int = 4
    time_frequencies: int = 8

    def check(self) -> None:
        require(self.hidden > 0, "hidden", "must be > 0")
        require(self.layers >= 2, "layers", f"must be ≥ 2, got {self.layers}")
        require(self.time_frequencies >= 0, "time_frequencies", "must be ≥ 0")


def time_features(t: Tensor, frequencies: int) -> Tensor:
    """[t, sin(2^k π t), cos(2^k π t)]: smooth in t and defined for negative t (TwinFlow's fake key)."""
    scales = math.pi * 2.0 ** torch.arange(frequencies, device=t.device, dtype=t.dtype)
    angles = t[:, None] * scales
    return torch.cat([t[:, None], torch.sin(angles), torch.cos(angles)], dim=1)


class ModulatedLayer(nn.Module):
    """h ← h + Linear(SiLU(h))·(1 + scale(e)) + shift(e), with (scale, shift) from the embedding e."""

    def __init__(self, hidden: int):
        super().__init__()
        self.linear = nn.Linear(hidden, hidden)
        self.modulation = nn.Linear(hidden, 2 * hidden)

    def forward(self, h: Tensor, embedding: Tensor) -> Tensor:
        scale, shift = self.modulation(embedding).chunk(2, dim=1)
        return h + self.linear(torch.nn.functional.silu(h)) * (1 + scale) + shift


class MLPVelocity(FlowBackbone):
    text_projection = "cond_proj"

    def __init__(self, data_dim: int, cond_dim: int, config: MLPConfig = MLPConfig()):
        super().__init__()
        self.config = config
        self.data_dim, self.cond_dim = data_dim, cond_dim
        self.input_proj = nn.Linear(data_dim, config.hidden)
        self.time_proj = nn.Linear(1 + 2 * config.time_frequencies, config.hidden)
        self.cond_proj = nn.Linear(cond_dim, config.hidden)
        self.embedding = nn.Sequential(nn.SiLU(), nn.Linear(config.hidden, config.hidden), nn.SiLU())
        self.hidden = nn.ModuleList(ModulatedLayer(config.hidden) for _ in range(config.layers - 1))
        self.output = nn.Sequential(nn.SiLU(), nn.Linear(config.hidden, data_dim))
        self.feature_module = f"hidden.{config.layers - 2}"
        self.feature_dim = config.hidden

    def velocity(self, x_t: Tensor, t: Tensor, cond: VectorCondition) -> Tensor:
        time = self.time_proj(time_features(t.to(x_t.dtype), self.config.time_frequencies))
        embedding = self.embedding(time + self.cond_proj(cond.values.to(x_t.dtype)))
        h = self.input_proj(x_t)
        for layer in self.hidden:
            h = layer(h, embedding)
        return self.output(h)
