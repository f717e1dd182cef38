"""Checkpoints that survive a crash: written to a temporary folder and renamed into place, rotated,
and validated on load with errors that name the file and the fix.

Layout of ``<dir>/step_<N>/``: ``student.safetensors`` (the student's trainable parameters),
``objective.pt`` (the objective's own modules: fake network, heads, EMA targets, pools),
``optimizers.pt``, ``random_and_ema.pt`` (the trainer's random state and the student's EMA) and
``trainer.json`` (step, the run's total steps, train seconds of every segment so far, data position, logged
history).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from apexgen.config import ConfigError
from apexgen.train.distributed import Distributed

log = logging.getLogger(__name__)

STEP_PREFIX = "step_"
FILES = ("student.safetensors", "objective.pt", "optimizers.pt", "random_and_ema.pt", "trainer.json")


class CheckpointError(RuntimeError):
    pass


def trainable_shapes(module: nn.Module) -> dict[str, torch.Size]:
    """The names and (whole) shapes of the trainable parameters, as saved in ``student.safetensors``."""
    return {name: p.shape for name, p in module.named_parameters() if p.requires_grad}


def trainable_part(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trainable parameters' entries of ``module``'s state dict (empty for an empty one: a rank other
    than the main one of a sharded run)."""
    return {name: state[name].contiguous() for name in trainable_shapes(module)} if state else {}


@dataclass
class TrainerState:
    step: int
    generator_state: torch.Tensor
    data_state: dict[str, Any]
    history: list[dict[str, float]]
    ema: dict[str, torch.Tensor] | None = None
    train_seconds: float = 0.0  # summed over every segment of the run up to ``step`` (older checkpoints: 0)
    total_steps: int | None = None  # the steps the run was set to when saved (older checkpoints: None)


def step_dirs(directory: Path) -> list[Path]:
    found = [p for p in directory.glob(f"{STEP_PREFIX}*") if p.is_dir() and p.name[len(STEP_PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def step_dir(directory: Path, step: int) -> Path:
    return directory / f"{STEP_PREFIX}{step:07d}"


def latest(directory: Path) -> Path | None:
    found = step_dirs(directory) if directory.is_dir() else []
    return found[-1] if found else None


def save(
    directory: Path,
    student: nn.Module,
    objective: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    state: TrainerState,
    keep: int,
    distributed: Distributed | None = None,
) -> Path | None:
    """Write ``step_<N>`` atomically (main process), then delete all but the newest ``keep``. Every rank
    takes part: sharded weights are gathered whole, and each rank's random state and data position saved."""
    distributed = distributed or Distributed()
    per_rank = distributed.gather({"generator": state.generator_state, "data_state": state.data_state})
    final = step_dir(directory, state.step)
    partial = directory / f".{final.name}.partial"
    if distributed.is_main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    write_networks(partial, student, objective, optimizers, distributed)
    ema = None if state.ema is None else {**state.ema, "shadow": distributed.whole_tensors(state.ema["shadow"])}
    if distributed.is_main:
        torch.save({"ranks": per_rank, "ema": ema}, partial / "random_and_ema.pt")
        trainer = {
            "step": state.step,
            "total_steps": state.total_steps,
            "train_seconds": state.train_seconds,
            "world_size": distributed.world_size,
            "history": state.history,
        }
        (partial / "trainer.json").write_text(json.dumps(trainer))
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        for old in step_dirs(directory)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    return final if distributed.is_main else None


def write_networks(
    folder: Path,
    student: nn.Module,
    objective: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    distributed: Distributed,
) -> None:
    """The student's trainable weights, the objective's modules and the optimiser states, each gathered by
    every rank (whole on the main one) and written before the next, so the main rank holds one at a time."""
    main = distributed.is_main
    weights = trainable_part(student, distributed.model_state(student))
    if main:
        save_file(weights, folder / "student.safetensors")
    objective_state = distributed.model_state(objective)
    if main:
        torch.save(objective_state, folder / "objective.pt")
    states = {name: distributed.optimizer_state(optimizer) for name, optimizer in optimizers.items()}
    if main:
        torch.save(states, folder / "optimizers.pt")


def load(
    path: Path,
    student: nn.Module,
    objective: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    distributed: Distributed | None = None,
) -> TrainerState:
    """Restore everything saved by :func:`save`; a missing, truncated or mismatched file is an error."""
    distributed = distributed or Distributed()
    for name in FILES:
        if not (path / name).is_file():
            raise CheckpointError(
                f"checkpoint {path} is incomplete: {name} is missing; delete {path} to resume from the previous "
                "checkpoint"
            )
    trainer = read_trainer_state(path / "trainer.json")
    if trainer["world_size"] != distributed.world_size:
        raise CheckpointError(
            f"{path} was written by {trainer['world_size']} process(es), this run has "
            f"{distributed.world_size}; resume with the same number of processes"
        )
    load_student(path / "student.safetensors", student, distributed)
    distributed.load_model_state(objective, read_torch(path / "objective.pt"))
    saved = read_torch(path / "optimizers.pt")
    if set(saved) != set(optimizers):
        raise CheckpointError(f"{path}/optimizers.pt holds groups {sorted(saved)}, this run has {sorted(optimizers)}")
    for name, optimizer in optimizers.items():
        distributed.load_optimizer_state(optimizer, saved[name])
    extra = read_torch(path / "random_and_ema.pt")
    mine = extra["ranks"][distributed.rank]
    return TrainerState(
        trainer["step"],
        mine["generator"],
        mine["data_state"],
        trainer["history"],
        extra["ema"],
        trainer.get("train_seconds", 0.0),
        trainer.get("total_steps"),
    )


TRAINER_KEYS = ("step", "world_size", "history")  # what every trainer.json holds (older ones lack the rest)


def read_trainer_state(path: Path) -> dict[str, Any]:
    """``trainer.json``, checked: a file cut short or overwritten is named with the fix, not a JSON traceback."""
    try:
        trainer = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(
            f"{path} is corrupt or truncated ({type(error).__name__}: {error}); delete its folder to resume from "
            "the previous checkpoint"
        ) from None
    missing = [key for key in TRAINER_KEYS if key not in trainer] if isinstance(trainer, dict) else list(TRAINER_KEYS)
    if missing:
        raise CheckpointError(
            f"{path} is not a checkpoint's trainer state (no {', '.join(missing)}); delete its folder to resume "
            "from the previous checkpoint"
        )
    return trainer


def check_continuation(path: Path, state: TrainerState, total_steps: int, steps_key: str, decay: str) -> None:
    """Refuse to resume the checkpoint at ``path`` past the run's ``total_steps`` (``steps_key`` names the
    setting); say so when the run's total changed since it was saved (e.g. a finished run extended)."""
    if state.step > total_steps:
        raise ConfigError(
            steps_key,
            f"the checkpoint {path} is at step {state.step}, past this run's {total_steps} steps; set "
            f"{steps_key}={state.step} or more to continue it, or pass --overwrite to start the run again",
        )
    if state.total_steps is not None and state.total_steps != total_steps:
        schedule = (
            f"the cosine learning-rate decay is recomputed over {total_steps} steps"
            if decay == "cosine"
            else "the learning rate is constant after warm-up, so the schedule does not change"
        )
        log.warning(
            "%s was saved by a run of %d steps; continuing it to %d steps: %s",
            path,
            state.total_steps,
            total_steps,
            schedule,
        )


def load_student(path: Path, student: nn.Module, distributed: Distributed | None = None) -> None:
    """Check the saved trainable weights against ``student``'s and load them (every rank reads the file)."""
    try:
        weights = load_file(path)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({error}); delete its folder to resume from the previous checkpoint"
        ) from None
    expected = trainable_shapes(student)
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match this model: missing {missing[:3]}, unexpected {unexpected[:3]} "
            "(was it written with another model or LoRA configuration?)"
        )
    for name, tensor in weights.items():
        if tensor.shape != expected[name]:
            raise CheckpointError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[name])}"
            )
    (distributed or Distributed()).load_model_state(student, weights, strict=False)


def load_averaged_student(path: Path, student: nn.Module) -> bool:
    """Load checkpoint ``path``'s trainable weights into ``student``, then its EMA of them over those when the
    run kept one (what an export holds); returns whether it did."""
    load_student(path / "student.safetensors", student)
    ema = read_torch(path / "random_and_ema.pt")["ema"]
    if ema is None:
        return False
    parameters = dict(student.named_parameters())
    with torch.no_grad():
        for name, value in ema["shadow"].items():
            parameters[name].copy_(value)
    return True


def read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"{path} is corrupt or truncated ({type(error).__name__}: {error}); delete its "
            "folder to resume from the previous checkpoint"
        ) from None
