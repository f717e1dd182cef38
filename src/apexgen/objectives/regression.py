"""One-step regression onto the teacher's multi-step ODE endpoints (Luhman & Luhman, 2021; the
"regression loss" of DMD): a pool of (ε, c, x0 = teacher ODE(ε, c)) pairs is computed once before
training, then ‖G_θ(ε, c) − x0‖² with G_θ(ε, c) = ε − F_θ(ε, 1, c)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from apexgen import flow
from apexgen.batch import Batch
from apexgen.condition import Condition
from apexgen.config import require, require_positive
from apexgen.objectives.base import (
    LossKind,
    LossOutput,
    Objective,
    combine,
    per_sample_error,
    weighted_mean,
)
from apexgen.sampling import euler_sample, one_step_with_velocity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegressionConfig:
    pairs: int = 4096  # size of the pool of teacher endpoints, computed once
    teacher_steps: int = 50
    guidance: float = 1.0
    loss: LossKind = "mse"

    def check(self) -> None:
        require_positive(self, "pairs", "teacher_steps")
        require(self.guidance >= 1, "guidance", f"must be ≥ 1 (1 = no guidance), got {self.guidance}")


@dataclass
class EndpointPool:
    noise: Tensor
    endpoints: Tensor
    cond: Condition


class Regression(Objective):
    def __init__(self, config: RegressionConfig, student: nn.Module, teacher: nn.Module):
        super().__init__(student)
        self.config = config
        self._teacher = [teacher]
        self.pool: EndpointPool | None = None

    def networks(self) -> dict[str, nn.Module]:
        return {"student": self.student, "teacher": self._teacher[0]}

    @torch.no_grad()
    def prepare(self, batches: Iterator[Batch], generator: torch.Generator) -> None:
        """Fill the pool: conditions from the data stream, noise from ``generator``, x0 from the teacher."""
        if self.pool is not None:  # restored from a checkpoint
            return
        config = self.config
        log.info(
            "computing the pool of %d teacher endpoints once (Euler, %d steps, guidance %g)",
            config.pairs,
            config.teacher_steps,
            config.guidance,
        )
        noises, endpoints, conditions, collected = [], [], [], 0
        while collected < self.config.pairs:
            batch = next(batches)
            noise = flow.randn_like(batch.x0, generator)
            x0 = euler_sample(
                self._teacher[0], noise, batch.cond, config.teacher_steps, config.guidance, batch.null_cond
            )
            noises.append(noise), endpoints.append(x0), conditions.append(batch.cond)
            collected += batch.size
        keep = slice(0, self.config.pairs)
        self.pool = EndpointPool(
            torch.cat(noises)[keep],
            torch.cat(endpoints)[keep],
            type(conditions[0]).cat(conditions).rows(keep),
        )

    def get_extra_state(self):
        return self.pool

    def set_extra_state(self, state) -> None:
        self.pool = state

    def loss(self, group: str, batch: Batch, generator: torch.Generator) -> LossOutput:
        if self.pool is None:
            raise RuntimeError("Regression.prepare() must fill the pool of teacher endpoints before training")
        index = torch.randint(0, self.config.pairs, (batch.size,), generator=generator, device=batch.x0.device)
        with self.ledger.section("regression"):
            x_generated, _ = one_step_with_velocity(self.student, self.pool.noise[index], self.pool.cond.rows(index))
            term = weighted_mean(per_sample_error(x_generated, self.pool.endpoints[index], self.config.loss))
        return combine({"regression": (1.0, term)}, {})
