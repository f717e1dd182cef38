"""The training loop every method shares. It owns the optimisers, the random generator, logging,
progress, previews and checkpoints; the objective enters on one line (``objective.loss``)."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from apexgen.batch import DataStream
from apexgen.config import require, require_non_negative, require_positive
from apexgen.memory import PeakMemory
from apexgen.objectives.base import Objective
from apexgen.train import checkpoint
from apexgen.train.ema import ParameterEMA

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm per group; 0 = no clipping
    warmup_steps: int = 0  # linear learning-rate warm-up
    decay: Literal["constant", "cosine"] = "constant"  # after warm-up

    def check(self) -> None:
        require_positive(self, "lr")
        require_non_negative(self, "weight_decay", "grad_clip", "warmup_steps")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "two numbers in [0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    seed: int = 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    log_every: int = 50
    checkpoint_every: int = 0  # 0 = no checkpoints
    keep_checkpoints: int = 2
    preview_every: int = 0  # 0 = no previews
    ema_decay: float = 0.0  # EMA of the student's trainable weights, used for evaluation; 0 = off
    progress: bool = True

    def check(self) -> None:
        require_positive(self, "steps", "batch_size", "log_every")
        require_non_negative(self, "checkpoint_every", "keep_checkpoints", "preview_every")
        require(0 <= self.ema_decay < 1, "ema_decay", f"must be in [0, 1), got {self.ema_decay}")


@dataclass
class TrainResult:
    steps: int
    seconds: float
    peak_memory_mb: float
    memory_method: str
    trainable_parameters: int
    history: list[dict[str, float]]


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


def learning_rate(config: OptimizerConfig, step: int, total_steps: int) -> float:
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    if config.decay == "cosine":
        progress = max(0.0, step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return config.lr * warmup * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * warmup


class Trainer:
    def __init__(
        self,
        objective: Objective,
        data: DataStream,
        config: TrainConfig,
        out_dir: Path | None = None,
        device: torch.device | str = "cpu",
        preview: Callable[[int], None] | None = None,
        description: str = "train",
    ):
        self.objective, self.data, self.config = objective, data, config
        self.out_dir, self.device, self.preview, self.description = (
            out_dir,
            torch.device(device),
            preview,
            description,
        )
        self.groups = objective.parameter_groups()
        self.optimizers = build_optimizers(self.groups, config.optimizer)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.ema = ParameterEMA(objective.student, config.ema_decay) if config.ema_decay > 0 else None
        self.history: list[dict[str, float]] = []
        self.start_step = 0

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoints"

    def resume(self) -> bool:
        """Restore the newest checkpoint in ``out_dir``, if any. Returns whether one was found."""
        path = None if self.checkpoint_dir is None else checkpoint.latest(self.checkpoint_dir)
        if path is None:
            return False
        state = checkpoint.load(path, self.objective.student, self.objective, self.optimizers)
        self.generator.set_state(state.generator_state)
        self.data.load_state_dict(state.data_state)
        self.history, self.start_step = state.history, state.step
        if self.ema is not None:
            if state.ema is None:
                raise checkpoint.CheckpointError(f"{path} holds no EMA weights but this run has ema_decay > 0")
            self.ema.load_state_dict(state.ema)
        log.info("resumed from %s (step %d of %d)", path, state.step, self.config.steps)
        return True

    def save(self, step: int) -> None:
        ema = None if self.ema is None else self.ema.state_dict()
        state = checkpoint.TrainerState(step, self.generator.get_state(), self.data.state_dict(), self.history, ema)
        path = checkpoint.save(
            self.checkpoint_dir,
            self.objective.student,
            self.objective,
            self.optimizers,
            state,
            self.config.keep_checkpoints,
        )
        log.info("saved %s", path)

    def update(self, group: str, step: int) -> dict[str, float]:
        """One optimiser step of ``group`` on a fresh batch; returns its logged values."""
        optimizer = self.optimizers[group]
        for param_group in optimizer.param_groups:
            param_group["lr"] = learning_rate(self.config.optimizer, step, self.config.steps)
        with only_group_trainable(self.groups, group):
            output = self.objective.loss(group, next(self.data), self.generator)
            output.loss.backward()
        if not math.isfinite(output.loss.item()):
            raise FloatingPointError(
                f"{self.description}: loss of group '{group}' is {output.loss.item()} at step "
                f"{step}; lower optimizer.lr or enable optimizer.grad_clip"
            )
        if self.config.optimizer.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.groups[group], self.config.optimizer.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.objective.after_update(group)
        values = {f"{group}/{name}": value.item() for name, value in output.terms.items()}
        values.update({f"{group}/{name}": value for name, value in output.diagnostics.items()})
        return values

    def run(self) -> TrainResult:
        if self.start_step == 0:
            self.objective.prepare(self.data, self.generator)
        config = self.config
        started = time.perf_counter()
        bar = tqdm(
            range(self.start_step, config.steps),
            desc=self.description,
            disable=not config.progress,
            initial=self.start_step,
            total=config.steps,
            dynamic_ncols=True,
        )
        with PeakMemory(self.device) as peak:
            for step in bar:
                values: dict[str, float] = {}
                for group in self.objective.schedule(step):
                    values.update(self.update(group, step))
                if self.ema is not None:
                    self.ema.update()
                done = step + 1
                if done % config.log_every == 0 or done == config.steps:
                    self.history.append({"step": done, **values})
                    bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in values.items()}, refresh=False)
                if self.preview and config.preview_every and done % config.preview_every == 0:
                    self.preview(done)
                if self.checkpoint_dir and config.checkpoint_every and done % config.checkpoint_every == 0:
                    self.save(done)
        unique = {id(p): p for params in self.groups.values() for p in params}
        trainable = sum(p.numel() for p in unique.values())
        result = TrainResult(
            config.steps - self.start_step,
            time.perf_counter() - started,
            peak.mib,
            peak.method,
            trainable,
            self.history,
        )
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "history.json").write_text(json.dumps(self.history))
        return result
