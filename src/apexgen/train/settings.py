"""The training settings every job shares (steps, batch, optimiser, precision, logging, checkpoints,
previews, EMA) and the learning-rate schedule they define."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from apexgen.config import require, require_non_negative, require_positive


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm per group; 0 = no clipping
    warmup_steps: int = 0  # linear learning-rate warm-up
    decay: Literal["constant", "cosine"] = "constant"  # after warm-up

    def check(self) -> None:
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            require(math.isfinite(value), name, f"must be a finite number, got {value}")
        require_positive(self, "lr")
        require_non_negative(self, "weight_decay", "grad_clip", "warmup_steps")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "two numbers in [0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64  # rows per process per micro-batch
    accumulation: int = 1  # micro-batches per optimiser step; global batch = batch × accumulation × processes
    seed: int = 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast for the forward passes; weights stay fp32
    log_every: int = 50
    checkpoint_every: int = 0  # 0 = no checkpoints
    keep_checkpoints: int = 2
    preview_every: int = 0  # 0 = no previews
    ema_decay: float = 0.0  # EMA of the student's trainable weights, used for evaluation; 0 = off
    tensorboard: bool = True  # event files in <out>/tensorboard (main process only)
    progress: bool = True

    def check(self) -> None:
        require_positive(self, "steps", "batch_size", "accumulation", "log_every")
        require_non_negative(self, "checkpoint_every", "keep_checkpoints", "preview_every")
        require(0 <= self.ema_decay < 1, "ema_decay", f"must be in [0, 1), got {self.ema_decay}")


def learning_rate(config: OptimizerConfig, step: int, total_steps: int) -> float:
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    if config.decay == "cosine":
        progress = max(0.0, step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return config.lr * warmup * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * warmup
