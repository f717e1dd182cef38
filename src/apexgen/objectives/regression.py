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


class PoolHolder(nn.Module):
    """Holds an endpoint pool so that checkpoints save it with the objective that owns this module."""

    def __init__(self):
        super().__init__()
        self.pool: EndpointPool | None = None

    def get_extra_state(self):
        return self.pool

    def set_extra_state(self, state) -> None:
        self.pool = state


class Regression(Objective):
    def __init__(self, config: RegressionConfig, student: nn.Module, teacher: nn.Module):
        super().__init__(student)
        self.config = config
        self._teacher = [teacher]
        self.pool: EndpointPool | None = None

    def networks(self) -> dict[str, nn.Module]:
        return {"student": self.student, "teacher": self._teacher[0]}

    def preparation_rows(self) -> int:
        return self.config.pairs if self.pool is None else 0

    def prepare(self, batches: Iterator[Batch], rng: torch.Generator) -> None:
        """Fill the pool: conditions from the data stream, noise from ``generator``, x0 from the teacher."""
        if self.pool is None:  # else restored from a checkpoint
            config = self.config
            self.pool = endpoint_pool(
                self._teacher[0], batches, rng, config.pairs, config.teacher_steps, config.guidance
            )

    def get_extra_state(self):
        return self.pool

    def set_extra_state(self, state) -> None:
        self.pool = state

    def loss(self, group: str, batch: Batch, rng: torch.Generator) -> LossOutput:
        with self.ledger.section("regression"):
            term = regression_loss(self.student, self.pool, batch.size, rng, self.config.loss)
        return combine({"regression": (1.0, term)}, {})


@torch.no_grad()
def endpoint_pool(
    teacher: nn.Module, batches: Iterator[Batch], rng: torch.Generator, pairs: int, steps: int, guidance: float
) -> EndpointPool:
    """``pairs`` triples (ε, c, x0 = the teacher's Euler ODE endpoint from ε under c with CFG ``guidance``),
    conditions from the data stream, noise from ``rng``."""
    log.info("computing the pool of %d teacher endpoints once (Euler, %d steps, guidance %g)", pairs, steps, guidance)
    noises, endpoints, conditions, collected = [], [], [], 0
    while collected < pairs:
        batch = next(batches)
        noise = flow.randn_like(batch.x0, rng)
        x0 = euler_sample(teacher, noise, batch.cond, steps, guidance, batch.null_cond)
        noises.append(noise), endpoints.append(x0), conditions.append(batch.cond)
        collected += batch.size
    keep = slice(0, pairs)
    return EndpointPool(
        torch.cat(noises)[keep], torch.cat(endpoints)[keep], type(conditions[0]).cat(conditions).rows(keep)
    )


def regression_loss(
    student: nn.Module, pool: EndpointPool | None, rows: int, rng: torch.Generator, kind: LossKind = "mse"
) -> Tensor:
    """‖G_θ(ε, c) − x0‖² on ``rows`` pairs drawn from the pool."""
    if pool is None:
        raise RuntimeError("prepare() must fill the pool of teacher endpoints before training")
    index = torch.randint(0, pool.noise.shape[0], (rows,), generator=rng, device=pool.noise.device)
    x_generated, _ = one_step_with_velocity(student, pool.noise[index], pool.cond.rows(index))
    return weighted_mean(per_sample_error(x_generated, pool.endpoints[index], kind))
