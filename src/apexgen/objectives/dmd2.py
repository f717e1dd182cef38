"""DMD2 (Yin et al., 2024): distribution matching with a separate fake-score network, the frozen
teacher as real score, an optional GAN head on the fake network's features, and two time-scale
updates (several critic updates per generator update). Three networks, the baseline APEX removes.

In velocity terms the DMD gradient on a one-step sample x_g is x̂0_fake − x̂0_real evaluated at
x_s = s·ε + (1 − s)·x_g, normalised by mean |x_g − x̂0_real| (DMD, Eq. 7–8).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from apexgen import flow
from apexgen.batch import Batch
from apexgen.config import require, require_non_negative, require_positive
from apexgen.flow import TimeSampler
from apexgen.guidance import guided_velocity
from apexgen.objectives.base import (
    LossKind,
    LossOutput,
    Objective,
    combine,
    per_sample_error,
    weighted_mean,
)
from apexgen.sampling import one_step_with_velocity

# Keeps the DMD normaliser away from zero when the generator already matches the teacher's x̂0.
NORMALISER_FLOOR = 1e-6


@dataclass(frozen=True)
class DMD2Config:
    guidance: float = 1.0  # CFG scale of the real score (the frozen teacher)
    critic_updates: int = 5  # fake-score (+ discriminator) updates per generator update
    weight_distribution_matching: float = 1.0
    weight_gan_generator: float = 0.0  # generator's non-saturating GAN term; 0 = no discriminator
    weight_gan_critic: float = 1.0  # discriminator's loss, when the head is on
    normalise: bool = True  # divide the DMD gradient by mean |x_g − x̂0_real|
    loss: LossKind = "mse"
    fake_time: TimeSampler = field(default_factory=TimeSampler)
    generator_time: TimeSampler = field(default_factory=TimeSampler)
    discriminator_time: TimeSampler = field(default_factory=TimeSampler)

    def check(self) -> None:
        require_positive(self, "critic_updates")
        require_non_negative(self, "weight_distribution_matching", "weight_gan_generator", "weight_gan_critic")
        require(self.guidance >= 1, "guidance", f"must be ≥ 1 (1 = no guidance), got {self.guidance}")

    def schedule(self, step: int) -> list[str]:
        """critic_updates critic updates before each generator update (two time-scale updates)."""
        return ["critic"] * self.critic_updates + ["generator"]

    @property
    def uses_discriminator(self) -> bool:
        return self.weight_gan_generator > 0


class DiscriminatorHead(nn.Module):
    """A small MLP on the fake network's pooled features → one real/fake logit per sample."""

    def __init__(self, feature_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.SiLU(), nn.Linear(feature_dim, 1))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)


class DMD2(Objective):
    def __init__(self, config: DMD2Config, student: nn.Module, teacher: nn.Module, fake: nn.Module):
        super().__init__(student)
        self.config = config
        self._teacher = [teacher]
        self.fake = fake
        self.head = DiscriminatorHead(fake.feature_dim) if config.uses_discriminator else None

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The fake score (a separate network, or in LoRA form a second adapter on the student's frozen
        base) and the head form the critic; the student's other trainable weights, the generator."""
        fake = getattr(self.fake, "trainable_parameters", None)
        critic = fake() if fake else [p for p in self.fake.parameters() if p.requires_grad]
        if self.head is not None:
            critic += list(self.head.parameters())
        critic_ids = {id(p) for p in critic}
        generator = [p for p in self.student.parameters() if p.requires_grad and id(p) not in critic_ids]
        return {"critic": critic, "generator": generator}

    def networks(self) -> dict[str, nn.Module]:
        held = {"generator": self.student, "teacher": self.teacher, "fake_score": self.fake}
        if self.head is not None:
            held["discriminator_head"] = self.head
        return held

    def schedule(self, step: int) -> list[str]:
        return self.config.schedule(step)

    def loss(self, group: str, batch: Batch, rng: torch.Generator) -> LossOutput:
        return self.critic_loss(batch, rng) if group == "critic" else self.generator_loss(batch, rng)

    def discriminate(self, x0: Tensor, t: Tensor, batch: Batch, rng: torch.Generator) -> Tensor:
        """Logits of the head on the fake network's features of x0 noised to time t."""
        path = flow.sample_path(x0, t, rng)
        _, features = self.fake.velocity_and_features(path.x_t, t, batch.cond)
        return self.head(features)

    def critic_loss(self, batch: Batch, rng: torch.Generator) -> LossOutput:
        """The fake score learns the generator's distribution by flow matching on sg(G(ε, c)); the
        discriminator head, when on, separates noised real from noised generated samples."""
        with self.ledger.section("fake_score"):
            with torch.no_grad():
                x_fake, _ = one_step_with_velocity(self.student, flow.randn_like(batch.x0, rng), batch.cond)
            t = self.config.fake_time(batch.size, rng, batch.x0.device, batch.x0.dtype)
            path = flow.sample_path(x_fake, t, rng)
            prediction = self.fake(path.x_t, t, batch.cond)
            fake_score = weighted_mean(per_sample_error(prediction, path.velocity, self.config.loss))
        terms = {"fake_score": (1.0, fake_score)}
        if self.head is not None:
            with self.ledger.section("gan_critic"):
                t_d = self.config.discriminator_time(batch.size, rng, batch.x0.device, batch.x0.dtype)
                real_logits = self.discriminate(batch.x0, t_d, batch, rng)
                fake_logits = self.discriminate(x_fake, t_d, batch, rng)
                gan = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
            terms["gan_critic"] = (self.config.weight_gan_critic, gan)
        return combine(terms, {})

    def distribution_matching_direction(self, x_generated: Tensor, batch: Batch, rng) -> Tensor:
        """(x̂0_fake − x̂0_real)/normaliser at x_s on the path from sg(x_g): the DMD gradient on x_g."""
        x_generated = x_generated.detach()
        s = self.config.generator_time(batch.size, rng, x_generated.device, x_generated.dtype)
        path = flow.sample_path(x_generated, s, rng)
        with torch.no_grad():
            real = guided_velocity(self.teacher, path.x_t, s, batch.cond, batch.null_cond, self.config.guidance)
            fake = self.fake(path.x_t, s, batch.cond)
        x0_real = flow.x0_from_velocity(path.x_t, s, real)
        direction = flow.x0_from_velocity(path.x_t, s, fake) - x0_real
        if self.config.normalise:
            scale = (x_generated - x0_real).abs().flatten(1).mean(1).clamp_min(NORMALISER_FLOOR)
            direction = direction / flow.broadcast_time(scale, direction)
        return direction

    def generator_loss(self, batch: Batch, rng: torch.Generator) -> LossOutput:
        with self.ledger.section("distribution_matching"):
            x_generated, _ = one_step_with_velocity(self.student, flow.randn_like(batch.x0, rng), batch.cond)
            direction = self.distribution_matching_direction(x_generated, batch, rng)
            matching = weighted_mean(per_sample_error(x_generated, x_generated - direction, self.config.loss))
        terms = {"distribution_matching": (self.config.weight_distribution_matching, matching)}
        if self.head is not None:
            with self.ledger.section("gan_generator"):
                t_d = self.config.discriminator_time(batch.size, rng, batch.x0.device, batch.x0.dtype)
                logits = self.discriminate(x_generated, t_d, batch, rng)
            terms["gan_generator"] = (self.config.weight_gan_generator, F.softplus(-logits).mean())
        return combine(terms, {"dmd_direction_norm": direction.flatten(1).norm(dim=1).mean().item()})
