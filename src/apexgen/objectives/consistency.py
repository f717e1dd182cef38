"""Consistency distillation (Song et al., 2023; LCM) with the teacher's Euler ODE solver and an EMA
target network. The consistency function is the flow's endpoint estimate f_θ(x, t) = x − t·F_θ(x, t, c),
which satisfies the boundary condition f_θ(x, 0) = x by construction; at t = 1 it is the one-step
generator. Loss: ‖f_θ(x_{t_n}, t_n) − sg(f_target(x̂_{t_{n−1}}, t_{n−1}))‖², with x̂_{t_{n−1}} one
teacher Euler step (with CFG) from x_{t_n}."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from apexgen import flow
from apexgen.batch import Batch
from apexgen.config import require, require_positive
from apexgen.ema import ema_update
from apexgen.guidance import guided_velocity
from apexgen.objectives.base import (
    LossKind,
    LossOutput,
    Objective,
    combine,
    per_sample_error,
    weighted_mean,
)


@dataclass(frozen=True)
class ConsistencyConfig:
    solver_steps: int = 32  # N: the teacher ODE grid t_n = n/N (SD3-shifted by time_shift)
    time_shift: float = 1.0
    guidance: float = 1.0  # CFG scale of the teacher's solver step
    ema_decay: float = 0.95  # μ of the target network (LCM's value)
    loss: LossKind = "mse"

    def check(self) -> None:
        require_positive(self, "solver_steps", "time_shift")
        require(0 <= self.ema_decay < 1, "ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        require(self.guidance >= 1, "guidance", f"must be ≥ 1 (1 = no guidance), got {self.guidance}")


def endpoint(model, x_t: Tensor, t: Tensor, cond) -> Tensor:
    """f(x, t) = x − t·F(x, t, c): the consistency function of a velocity model."""
    return flow.x0_from_velocity(x_t, t, model(x_t, t, cond))


class ConsistencyDistillation(Objective):
    def __init__(self, config: ConsistencyConfig, student: nn.Module, teacher: nn.Module):
        super().__init__(student)
        self.config = config
        self._teacher = [teacher]
        self.target = copy.deepcopy(student).requires_grad_(False).eval()
        self.register_buffer("grid", flow.euler_time_grid(config.solver_steps, config.time_shift).flip(0))

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def networks(self) -> dict[str, nn.Module]:
        return {"student": self.student, "teacher": self.teacher, "target": self.target}

    def loss(self, group: str, batch: Batch, rng: torch.Generator) -> LossOutput:
        n = torch.randint(1, self.config.solver_steps + 1, (batch.size,), generator=rng, device=batch.x0.device)
        t_now, t_next = self.grid[n], self.grid[n - 1]
        path = flow.sample_path(batch.x0, t_now, rng)
        with torch.no_grad(), self.ledger.section("teacher_solver"):
            velocity = guided_velocity(self.teacher, path.x_t, t_now, batch.cond, batch.null_cond, self.config.guidance)
            x_next = path.x_t + flow.broadcast_time(t_next - t_now, path.x_t) * velocity
            target = endpoint(self.target, x_next, t_next, batch.cond)
        with self.ledger.section("consistency"):
            prediction = endpoint(self.student, path.x_t, t_now, batch.cond)
            term = weighted_mean(per_sample_error(prediction, target, self.config.loss))
        return combine({"consistency": (1.0, term)}, {})

    def after_update(self, group: str) -> None:
        ema_update(self.target, self.student, self.config.ema_decay)
