"""The paper's APEX objective (METHOD §3, paper Eq. 11–25) on rows of real data (x, c).

    x_t      = t·z + (1 − t)·x                               the real path
    x_fake   = f^x(F_θ(x_t, t, c), x_t, t) = x_t − t·F_θ     Eq. 11, with gradient (``fake_gradient``)
    x^fake_t = t·z + (1 − t)·x_fake                          Eq. 12 (same z and t as written, or fresh)
    L_fake   = ‖F_θ(x^fake_t, t, c_fake) − (z − x_fake)‖²    Eq. 12, no time weight
    v_fake   = sg(F_θ(x_t, t, c_fake))                       Eq. 14, 17: queried at the *real* x_t
    L_mix    = (1/ω)‖f^x(F_θ) − T_mix‖², ω = (1 − t)/t       Eq. 20–24, T_mix = (1 − λ)·x + λ·f^x(v_fake)
             = (t³/(1 − t))·‖F_θ − T_v‖²,  T_v = (1 − λ)(z − x) + λ·v_fake   (velocity units, Eq. 18–19)

The weight t³/(1 − t) is capped at ``mix_weight_cap`` (the paper states no cap; without one it is unbounded
as t → 1). The total λ_p·L_fake + λ_e·L_mix (Eq. 25) is formed by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from apexgen import flow
from apexgen.batch import Batch
from apexgen.objectives.base import per_sample_error, per_sample_loss, weighted_mean

if TYPE_CHECKING:
    from apexgen.objectives.apex import APEX


@dataclass
class PaperTerms:
    fake: Tensor  # L_fake (Eq. 12)
    mix: Tensor  # L_mix (Eq. 24), weighted and capped


def fake_trajectory(objective: APEX, path: flow.PathSample, x_fake: Tensor, rng: torch.Generator) -> flow.PathSample:
    """x^fake_t on the straight path from x_fake, with the real path's z and t or fresh ones (Eq. 12)."""
    options = objective.config.paper
    t = path.t
    if options.fake_time == "fresh":
        t = objective.config.fake_time(path.t.shape[0], rng, x_fake.device, x_fake.dtype)
    noise = path.noise if options.fake_noise == "same" else flow.randn_like(x_fake, rng)
    return flow.PathSample(x_fake, noise, t, flow.interpolate(x_fake, noise, t), flow.velocity_target(x_fake, noise))


def paper_terms(objective: APEX, batch: Batch, rng: torch.Generator) -> PaperTerms:
    """L_fake and L_mix of Eq. 11–24 on ``batch`` (real images and their conditions)."""
    config = objective.config
    path = objective.anchor_path(batch, rng)
    velocity = objective.student(path.x_t, path.t, batch.cond)  # F_θ(x_t, t, c)
    x_fake = flow.x0_from_velocity(path.x_t, path.t, velocity)  # Eq. 11
    if not config.paper.fake_gradient:
        x_fake = x_fake.detach()
    fake_path = fake_trajectory(objective, path, x_fake, rng)
    fake_prediction = objective.fake_velocity(fake_path.x_t, fake_path.t, batch.cond)
    # Eq. 12 without a stop-gradient: the target z − x_fake carries ∂x_fake/∂θ too
    fake = weighted_mean(per_sample_loss(fake_prediction - fake_path.velocity, config.loss))
    with torch.no_grad():
        v_fake = objective.fake_velocity(path.x_t, path.t, batch.cond)  # Eq. 14, 17
    target = (1 - config.mix_lambda) * objective.anchor_target(path, batch) + config.mix_lambda * v_fake
    mix = weighted_mean(per_sample_error(velocity, target, config.loss), objective.mix_weight(path.t))
    return PaperTerms(fake, mix)
