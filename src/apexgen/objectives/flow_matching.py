"""Plain conditional flow matching (how the teacher is trained): ‖F_θ(x_t, t, c) − (ε − x0)‖², with
the condition replaced by the null condition on a random fraction of rows (for CFG at sampling)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from apexgen import flow
from apexgen.batch import Batch
from apexgen.config import require_fraction
from apexgen.flow import TimeSampler
from apexgen.objectives.base import (
    LossKind,
    LossOutput,
    Objective,
    combine,
    per_sample_error,
    weighted_mean,
)


@dataclass(frozen=True)
class FlowMatchingConfig:
    condition_dropout: float = 0.1
    loss: LossKind = "mse"
    time: TimeSampler = field(default_factory=TimeSampler)

    def check(self) -> None:
        require_fraction(self, "condition_dropout")


class FlowMatching(Objective):
    def __init__(self, config: FlowMatchingConfig, student: torch.nn.Module):
        super().__init__(student)
        self.config = config

    def loss(self, group: str, batch: Batch, rng: torch.Generator) -> LossOutput:
        t = self.config.time(batch.size, rng, batch.x0.device, batch.x0.dtype)
        path = flow.sample_path(batch.x0, t, rng)
        dropped = torch.rand(batch.size, generator=rng, device=batch.x0.device) < self.config.condition_dropout
        cond = batch.cond.where(dropped, batch.null_cond)
        with self.ledger.section("flow_matching"):
            prediction = self.student(path.x_t, t, cond)
            term = weighted_mean(per_sample_error(prediction, path.velocity, self.config.loss))
        return combine({"flow_matching": (1.0, term)}, {})
