"""The check that stops a run whose loss became NaN or infinite, with what to do about it."""

from __future__ import annotations

import math

import torch


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite; ``at_first_step``: at the first step of the run (or of its resumed
    segment), where no update of this run has acted yet, so the inputs are to blame rather than the settings."""

    def __init__(self, message: str, at_first_step: bool):
        super().__init__(message)
        self.at_first_step = at_first_step


def check_finite(loss: torch.Tensor, group: str, step: int, description: str, first: bool = False) -> None:
    if math.isfinite(loss.item()):
        return
    where = f"{description}: loss of group '{group}' is {loss.item()} at step {step + 1}"
    if first:
        raise NonFiniteLoss(
            f"{where}, the first step of this run, so not a learning-rate problem: the model's "
            "weights (the teacher, base model or checkpoint) or the data may be corrupt (NaN or infinite values): "
            "check or restore them",
            at_first_step=True,
        )
    raise NonFiniteLoss(f"{where}; lower optimizer.lr or enable optimizer.grad_clip", at_first_step=False)
