"""The training loop every method shares. It owns the optimisers, the random generator, logging,
progress, previews and checkpoints; the objective enters on one line (``objective.loss``)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import defaultdict
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
from apexgen.memory import MIB, current_bytes
from apexgen.objectives.base import Objective
from apexgen.train import checkpoint
from apexgen.train.distributed import Distributed
from apexgen.train.ema import ParameterEMA
from apexgen.train.ledger import TimeLedger

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


# Ranks draw different noise: their generators are seeded seed + rank·RANK_SEED_STRIDE.
RANK_SEED_STRIDE = 1_000_003
# The objective's diagnostics draw from seed + DIAGNOSTICS_SEED_OFFSET + step, apart from every rank's stream.
DIAGNOSTICS_SEED_OFFSET = 7_000_001


class Trainer:
    """Drives an objective: per step, for each group in ``objective.schedule(step)``, a fresh batch, the
    objective's loss, backward, gradient averaging over processes, clipping and the optimiser step; then
    EMA, logs, the ledger, previews and checkpoints. Every process calls ``preview`` (a sharded forward needs
    them all) and takes part in checkpoints (sharded state is gathered); only the main process writes files."""

    def __init__(
        self,
        objective: Objective,
        data: DataStream,
        config: TrainConfig,
        out_dir: Path | None = None,
        distributed: Distributed | None = None,
        preview: Callable[[int], None] | None = None,
        description: str = "train",
    ):
        self.objective, self.data, self.config, self.out_dir = objective, data, config, out_dir
        self.distributed = distributed or Distributed()
        self.device, self.preview, self.description = self.distributed.device, preview, description
        self.distributed.prepare(objective)  # before the parameter groups: sharding replaces the parameters
        self.groups = objective.parameter_groups()
        self.optimizers = build_optimizers(self.groups, config.optimizer)
        seed = config.seed + RANK_SEED_STRIDE * self.distributed.rank
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.ema = ParameterEMA(objective.student, config.ema_decay) if config.ema_decay > 0 else None
        self.ledger = TimeLedger(self.device)
        objective.ledger = self.ledger
        self.history: list[dict[str, float]] = []
        self.start_step = 0
        self.last_batch = None

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoints"

    def resume(self) -> bool:
        """Restore the newest checkpoint in ``out_dir``, if any. Returns whether one was found."""
        path = None if self.checkpoint_dir is None else checkpoint.latest(self.checkpoint_dir)
        if path is None:
            return False
        state = checkpoint.load(path, self.objective.student, self.objective, self.optimizers, self.distributed)
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
            self.distributed,
        )
        if path is not None:
            log.info("saved %s", path)

    def autocast(self):
        if self.config.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def update(self, group: str, step: int) -> dict[str, float]:
        """One optimiser step of ``group`` over ``accumulation`` fresh micro-batches; returns its logs."""
        config, optimizer = self.config, self.optimizers[group]
        for param_group in optimizer.param_groups:
            param_group["lr"] = learning_rate(config.optimizer, step, config.steps)
        values: dict[str, float] = defaultdict(float)
        with only_group_trainable(self.groups, group):
            for _ in range(config.accumulation):
                with self.ledger.section("data"):
                    batch = self.last_batch = next(self.data)
                with self.autocast():
                    output = self.objective.loss(group, batch, self.generator)
                with self.ledger.section("backward"):
                    (output.loss / config.accumulation).backward()
                check_finite(output.loss, group, step, self.description)
                for name, value in [*output.terms.items(), *output.diagnostics.items()]:
                    values[f"{group}/{name}"] += float(value) / config.accumulation
        with self.ledger.section("optimizer"):
            self.distributed.average_gradients(self.groups[group])
            if config.optimizer.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.groups[group], config.optimizer.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            self.objective.after_update(group)
        return dict(values)

    def step(self, step: int) -> dict[str, float]:
        with self.ledger.step(step + 1):
            values: dict[str, float] = {}
            for group in self.objective.schedule(step):
                values.update(self.update(group, step))
            if self.ema is not None:
                self.ema.update()
        return values | self.diagnostics(step + 1)

    def diagnostics(self, done: int) -> dict[str, float]:
        """The objective's own measurements after step ``done``, with a generator of their own (seeded by the
        run's seed and the step), so that they leave training exactly as it would be without them."""
        rng = torch.Generator(self.device).manual_seed(self.config.seed + DIAGNOSTICS_SEED_OFFSET + done)
        with self.autocast():
            found = self.objective.diagnostics(self.last_batch, done, rng)
        return {f"diagnostics/{name}": value for name, value in found.items()}

    def run(self) -> TrainResult:
        config, main = self.config, self.distributed.is_main
        if self.start_step == 0:
            self.objective.prepare(self.data, self.generator)
        board = tensorboard_writer(self.out_dir) if main and config.tensorboard and self.out_dir else None
        started, start_bytes = time.perf_counter(), current_bytes(self.device)
        bar = tqdm(
            range(self.start_step, config.steps),
            desc=self.description,
            disable=not (config.progress and main),
            initial=self.start_step,
            total=config.steps,
            dynamic_ncols=True,
        )
        for step in bar:
            values, done = self.step(step), step + 1
            if (
                done % config.log_every == 0
                or done == config.steps
                or any(k.startswith("diagnostics/") for k in values)
            ):
                values = self.distributed.mean_over_ranks(values)
                self.history.append({"step": done, **values})
                bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in values.items()}, refresh=False)
                for name, value in values.items() if board else ():
                    board.add_scalar(name, value, done)
            if self.preview and config.preview_every and done % config.preview_every == 0:
                self.preview(done)
            if self.checkpoint_dir and config.checkpoint_every and done % config.checkpoint_every == 0:
                self.save(done)
        if board is not None:
            board.close()
        # above the run's start, or above a step's own start: on a CPU the resident set can shrink
        # during a run (freed pages returned to the system), which would hide a step's peak from the first
        peak_mb = max(self.ledger.peak_bytes - start_bytes, 0) / MIB
        peak_mb = max(peak_mb, self.ledger.step_peak_mib)
        return self.finish(time.perf_counter() - started, peak_mb)

    def finish(self, seconds: float, peak_mb: float) -> TrainResult:
        """The run's result (peak memory: the highest step peak above the level at the start of the run)."""
        unique = {id(p): p for params in self.groups.values() for p in params}
        trainable = sum(p.numel() for p in unique.values())
        method = "cuda_allocator_peak" if self.device.type == "cuda" else "process_rss_peak"
        result = TrainResult(self.config.steps - self.start_step, seconds, peak_mb, method, trainable, self.history)
        if self.out_dir is not None and self.distributed.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "history.json").write_text(json.dumps(self.history))
            self.ledger.write(self.out_dir)
        return result


def check_finite(loss: torch.Tensor, group: str, step: int, description: str) -> None:
    if not math.isfinite(loss.item()):
        raise FloatingPointError(
            f"{description}: loss of group '{group}' is {loss.item()} at step {step + 1}; "
            "lower optimizer.lr or enable optimizer.grad_clip"
        )


def tensorboard_writer(out_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"))
