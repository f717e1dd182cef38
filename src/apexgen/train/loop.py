"""The training loop every method shares. It owns the optimisers, the random generator, logging,
progress, previews, checkpoints and stopping on SIGTERM/SIGINT; the objective enters on one line
(``objective.loss``)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
from tqdm.auto import tqdm

from apexgen import seeding
from apexgen.batch import DataStream
from apexgen.ledger import TimeLedger
from apexgen.memory import MIB, current_bytes
from apexgen.objectives.base import Objective
from apexgen.progress import CountedStream, progress_bar, progress_shown
from apexgen.train import checkpoint
from apexgen.train.distributed import Distributed
from apexgen.train.ema import ParameterEMA
from apexgen.train.finite import check_finite
from apexgen.train.interrupt import TrainingInterrupted, stop_requests
from apexgen.train.optimizers import build_optimizers, only_group_trainable
from apexgen.train.settings import TrainConfig, learning_rate

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """The run's totals over every segment (a resumed run is one more segment), and the last segment's."""

    steps: int  # the step reached
    seconds: float  # train seconds summed over the segments
    peak_memory_mb: float
    memory_method: str
    trainable_parameters: int
    history: list[dict[str, float]]
    segment_steps: int = 0  # of this segment (the steps after the checkpoint it resumed from)
    segment_seconds: float = 0.0


class Trainer:
    """Drives an objective: per step, for each group in ``objective.schedule(step)``, a fresh batch, the
    objective's loss, backward, gradient averaging over processes, clipping and the optimiser step; then
    EMA, logs, the ledger, previews and checkpoints. Every process calls ``preview`` (a sharded forward needs
    them all) and takes part in checkpoints (sharded state is gathered); only the main process writes files.
    On SIGTERM or SIGINT (on any rank) every rank finishes the step, saves a checkpoint at it and raises
    :class:`TrainingInterrupted`. ``steps_key`` names the setting of ``config.steps`` in messages."""

    def __init__(
        self,
        objective: Objective,
        data: DataStream,
        config: TrainConfig,
        out_dir: Path | None = None,
        distributed: Distributed | None = None,
        preview: Callable[[int], None] | None = None,
        description: str = "train",
        steps_key: str = "steps",
    ):
        self.objective, self.data, self.config, self.out_dir = objective, data, config, out_dir
        self.distributed = distributed or Distributed()
        self.device, self.preview, self.description = self.distributed.device, preview, description
        self.steps_key = steps_key
        self.distributed.prepare(objective)  # before the parameter groups: sharding replaces the parameters
        self.groups = objective.parameter_groups()
        self.optimizers = build_optimizers(self.groups, config.optimizer)
        self.generator = seeding.TRAINING.generator(config.seed, self.distributed.rank, self.device)
        self.ema = ParameterEMA(objective.student, config.ema_decay) if config.ema_decay > 0 else None
        self.ledger = TimeLedger(self.device)
        objective.ledger = self.ledger
        self.history: list[dict[str, float]] = []
        self.start_step = 0
        self.seconds_before = 0.0  # train seconds of the segments before this one (from the checkpoint)
        self.segment_started = time.perf_counter()
        self.last_batch = None

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoints"

    def resume(self) -> bool:
        """Restore the newest checkpoint in ``out_dir``, if any (else say so). Returns whether one was found."""
        path = None if self.checkpoint_dir is None else checkpoint.latest(self.checkpoint_dir)
        if path is None:
            log.warning("no checkpoint in %s: starting from step 0", self.checkpoint_dir)
            return False
        state = checkpoint.load(path, self.objective.student, self.objective, self.optimizers, self.distributed)
        config = self.config
        checkpoint.check_continuation(path, state, config.steps, self.steps_key, config.optimizer.decay)
        self.generator.set_state(state.generator_state)
        self.data.load_state_dict(state.data_state)
        self.history, self.start_step, self.seconds_before = state.history, state.step, state.train_seconds
        if self.ema is not None:
            if state.ema is None:
                raise checkpoint.CheckpointError(f"{path} holds no EMA weights but this run has ema_decay > 0")
            self.ema.load_state_dict(state.ema)
        log.info("resumed from %s (step %d of %d)", path, state.step, self.config.steps)
        return True

    def save(self, step: int) -> None:
        ema = None if self.ema is None else self.ema.state_dict()
        random_state, data_state = self.generator.get_state(), self.data.state_dict()
        seconds = self.seconds_before + time.perf_counter() - self.segment_started  # over every segment
        state = checkpoint.TrainerState(step, random_state, data_state, self.history, ema, seconds, self.config.steps)
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
                check_finite(output.loss, group, step, self.description, first=step == self.start_step)
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
        self.free_finished(step)
        with self.ledger.step(step + 1):
            values: dict[str, float] = {}
            for group in self.objective.schedule(step):
                values.update(self.update(group, step))
            if self.ema is not None:
                self.ema.update()
        return values | self.diagnostics(step + 1)

    def free_finished(self, step: int) -> None:
        """Drop the optimiser state of groups the objective will not update again (APEX's fake warm-up)."""
        for group in self.objective.finished_groups(step):
            if self.optimizers[group].state:
                self.optimizers[group].state.clear()
                log.info(
                    "%s: the %r group is done at step %d; its optimiser state is freed", self.description, group, step
                )

    def diagnostics(self, done: int) -> dict[str, float]:
        """The objective's own measurements after step ``done``, with a generator of their own (seeded by the
        run's seed and the step), so that they leave training exactly as it would be without them."""
        rng = seeding.DIAGNOSTICS.generator(self.config.seed, done, self.device)
        with self.autocast():
            found = self.objective.diagnostics(self.last_batch, done, rng)
        return {f"diagnostics/{name}": value for name, value in found.items()}

    def run(self) -> TrainResult:
        config, main = self.config, self.distributed.is_main
        if self.start_step == 0:
            self.prepare()
        self.segment_started, start_bytes = time.perf_counter(), current_bytes(self.device)
        bar = tqdm(
            range(self.start_step, config.steps),
            desc=self.description,
            disable=not (config.progress and main and progress_shown()),
            initial=self.start_step,
            total=config.steps,
            dynamic_ncols=True,
        )
        writing = main and config.tensorboard and self.out_dir is not None
        with stop_requests() as stop, tensorboard_writer(self.out_dir if writing else None) as board:
            for step in bar:
                done = step + 1
                self.record(done, self.step(step), bar, board)
                saved = self.preview_and_save(done)
                # every rank stops at the same step, since saving is collective
                signal_number = self.distributed.largest_over_ranks(stop.signal_number or 0)
                if signal_number:
                    self.stop(done, signal_number, saved)
        return self.finish(start_bytes)

    def prepare(self) -> None:
        """The objective's work before the first step (e.g. the regression pool of teacher endpoints), with a
        bar of the data rows it draws and a closing line when it drew any."""
        started, shown = time.perf_counter(), self.config.progress and self.distributed.is_main
        total = self.objective.preparation_rows() or None
        with progress_bar(description=f"{self.description}: preparing", total=total, unit="row", shown=shown) as bar:
            with self.autocast():  # the networks in training's precision (bf16 weights need it)
                self.objective.prepare(CountedStream(self.data, bar), self.generator)
        if bar.n:
            log.info(
                "%s: prepared in %.0f s from %d rows of data", self.description, time.perf_counter() - started, bar.n
            )

    def record(self, done: int, values: dict[str, float], bar, board) -> None:
        """Log the step's values (every ``log_every`` steps, at the last and whenever there are diagnostics)."""
        config = self.config
        if done % config.log_every and done != config.steps and not any(k.startswith("diagnostics/") for k in values):
            return
        values = self.distributed.mean_over_ranks(values)
        self.history.append({"step": done, **values})
        bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in values.items()}, refresh=False)
        for name, value in values.items() if board else ():
            board.add_scalar(name, value, done)

    def preview_and_save(self, done: int) -> bool:
        """The periodic preview and checkpoint after step ``done``; returns whether a checkpoint was written."""
        config = self.config
        if self.preview and config.preview_every and done % config.preview_every == 0:
            self.preview(done)
        saving = bool(self.checkpoint_dir and config.checkpoint_every and done % config.checkpoint_every == 0)
        if saving:
            self.save(done)
        return saving

    def stop(self, done: int, signal_number: int, saved: bool) -> NoReturn:
        """Save a checkpoint at step ``done`` (unless one was just saved) and the records so far; then stop."""
        path = None if self.checkpoint_dir is None else checkpoint.step_dir(self.checkpoint_dir, done)
        if path is not None and not saved:
            self.save(done)
        self.write_records()
        raise TrainingInterrupted(done, signal_number, path)

    def finish(self, start_bytes: int) -> TrainResult:
        """The run's result: totals over the segments, and this segment's (peak memory: the highest step peak
        above the level at the segment's start, or above a step's own start: on a CPU the resident set can
        shrink during a run, as freed pages return to the system, which would hide a step's peak from the first)."""
        peak_mb = max(max(self.ledger.peak_bytes - start_bytes, 0) / MIB, self.ledger.step_peak_mib)
        unique = {id(p): p for params in self.groups.values() for p in params}
        trainable = sum(p.numel() for p in unique.values())
        method = "cuda_allocator_peak" if self.device.type == "cuda" else "process_rss_peak"
        segment_seconds = time.perf_counter() - self.segment_started
        result = TrainResult(
            self.config.steps,
            self.seconds_before + segment_seconds,
            peak_mb,
            method,
            trainable,
            self.history,
            self.config.steps - self.start_step,
            segment_seconds,
        )
        self.write_records()
        return result

    def write_records(self) -> None:
        """The logged history and the time ledger (main process)."""
        if self.out_dir is not None and self.distributed.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "history.json").write_text(json.dumps(self.history))
            self.ledger.write(self.out_dir)


@contextmanager
def tensorboard_writer(out_dir: Path | None) -> Iterator:
    """Event files in ``<out_dir>/tensorboard``, closed at the end of the block; None without ``out_dir``."""
    if out_dir is None:
        yield None
        return
    from torch.utils.tensorboard import SummaryWriter

    board = SummaryWriter(str(out_dir / "tensorboard"))
    try:
        yield board
    finally:
        board.close()
