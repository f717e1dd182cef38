"""APEX: self-adversarial one-step training through condition shifting (METHOD §2–§4).

One network F_θ plays three parts. Its real branch F_θ(·, c) stays a flow of the data (anchor rows,
L_fm). Its fake branch, keyed by the shifted condition S(c) (or, for TwinFlow, by negative time), is
trained by flow matching on the model's own stop-gradient one-step samples (fake rows, L_fake, Eq. 11–12)
so that it tracks the generator's distribution. The one-step generator G_θ(ε, c) = ε − F_θ(ε, 1, c) is
moved by the difference of the two branches, in the ``dmd`` form (generator rows, L_gen) or the ``mix``
form (anchor rows, L_mix, Eq. 22–25), or both.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from apexgen import flow
from apexgen.batch import Batch
from apexgen.condition import Condition
from apexgen.config import ConfigError, require, require_fraction, require_non_negative
from apexgen.flow import TimeSampler
from apexgen.guidance import guidance_direction, guided_velocity
from apexgen.objectives.base import (
    LossKind,
    LossOutput,
    Objective,
    combine,
    partition,
    per_sample_error,
    weighted_mean,
)
from apexgen.sampling import one_step_with_velocity
from apexgen.shift import ConditionShift
from apexgen.train.ema import ema_update

FakeKey = Literal["shift", "negative_time", "both"]
GeneratorForm = Literal["dmd", "mix", "both"]
RealVelocity = Literal["live", "reference"]
Reference = Literal["teacher", "ema", "live"]
MixWeighting = Literal["endpoint", "uniform"]
DirectionNormalisation = Literal["none", "dmd"]

# Keeps the DMD-style normaliser away from zero when the real branch fits a sample's path exactly.
NORMALISER_FLOOR = 1e-6


@dataclass(frozen=True)
class APEXSlices:
    """Fractions of each batch given to each kind of row (they sum to 1). The defaults come from the toy
    ablation (benchmarks/toy.md): with the frozen teacher as the real branch, anchor rows only slowed the
    generator down."""

    generator: float = 0.5  # one-step samples moved by L_gen (``dmd`` form)
    anchor: float = 0.0  # real data: L_fm, or L_mix in the ``mix`` form
    fake: float = 0.5  # the model's own samples, training the fake branch (L_fake)

    def as_dict(self) -> dict[str, float]:
        return {"generator": self.generator, "anchor": self.anchor, "fake": self.fake}

    def check(self) -> None:
        require_fraction(self, "generator", "anchor", "fake")
        total = self.generator + self.anchor + self.fake
        require(abs(total - 1) < 1e-6, "", f"generator + anchor + fake must sum to 1, got {total:g} ({self})")


@dataclass(frozen=True)
class APEXConfig:
    shift: ConditionShift = field(default_factory=ConditionShift)
    fake_key: FakeKey = "shift"  # how the fake branch is addressed: S(c), −t (TwinFlow), or both
    generator_form: GeneratorForm = "dmd"
    slices: APEXSlices = field(default_factory=APEXSlices)
    weight_fake: float = 1.0  # λ_p
    weight_anchor: float = 1.0  # on L_fm (``dmd``) or L_mix (``mix``, λ_c)
    weight_generator: float = 1.0
    # [ours] two time-scale updates: extra fake-branch-only steps (L_fake on a whole fresh batch, with their
    # own optimiser state) before each main step, as DMD2 updates its critic more often than its generator.
    fake_updates: int = 0
    # [ours] the first fake_warmup steps train only the fake branch (L_fake on whole batches), so that g
    # starts from a fake branch that already tracks the generator: at the start S(c) is a condition the
    # teacher never saw, whereas DMD2's fake score starts as the teacher itself.
    fake_warmup: int = 0
    # [ours] the step times the generator is trained at: (1,) one step; e.g. (1, 0.6) also trains the second
    # step of the 2-step sampler on re-noised one-step samples (DMD2's backward simulation).
    generator_times: tuple[float, ...] = (1.0,)
    clamp: float = 1.0  # κ: elementwise bound on the generator direction g; 0 disables the clamp
    # [ours] "dmd": divide g per sample by mean |F_real(x_s) − (ε₂ − x_g)|, DMD's normaliser (DMD Eq. 8)
    # written in velocities; "none": the released code's unnormalised g.
    normalise: DirectionNormalisation = "none"
    mix_lambda: float = 0.5  # λ in T = (1 − λ)(ε − x0) + λ·sg(F_θ(x_t, t, S(c)))
    mix_weighting: MixWeighting = "uniform"  # w(t) = t(1 − t) ("endpoint") or 1
    loss: LossKind = "mse"
    # The real branch in g: the live model (released code) or the reference (default: the frozen teacher, which
    # for a LoRA student is the same network with its adapter off). The toy ablation chose the reference.
    real_velocity: RealVelocity = "reference"
    real_guidance: float = 1.0  # CFG scale on the reference's real velocity
    enhanced_ratio: float = 0.0  # w of the CFG-enhanced anchor target (needs a reference)
    reference: Reference = "teacher"  # F_ref: the frozen teacher (LoRA: adapter off), an EMA, the live model
    reference_ema_decay: float = 0.999
    anchor_time: TimeSampler = field(default_factory=TimeSampler)
    fake_time: TimeSampler = field(default_factory=TimeSampler)
    generator_time: TimeSampler = field(default_factory=TimeSampler)

    def check(self) -> None:
        require_non_negative(self, "fake_updates", "fake_warmup")
        require(
            len(self.generator_times) > 0 and all(0 < t <= 1 for t in self.generator_times),
            "generator_times",
            f"times in (0, 1], got {self.generator_times}",
        )
        require_non_negative(self, "weight_fake", "weight_anchor", "weight_generator", "clamp", "enhanced_ratio")
        require_fraction(self, "mix_lambda")
        require(0 <= self.reference_ema_decay < 1, "reference_ema_decay", "must be in [0, 1)")
        require(
            self.real_guidance >= 1,
            "real_guidance",
            f"must be ≥ 1 (1 = no guidance), got {self.real_guidance}",
        )
        uses_generator_rows = self.generator_form in ("dmd", "both")
        if uses_generator_rows and self.slices.generator == 0:
            raise ConfigError("slices.generator", f"generator_form={self.generator_form!r} needs generator rows (> 0)")
        if not uses_generator_rows and self.slices.generator > 0:
            raise ConfigError("slices.generator", "generator_form='mix' has no generator rows: set slices.generator=0")

    def needs_reference(self) -> bool:
        return self.real_velocity == "reference" or self.enhanced_ratio != 0


class APEX(Objective):
    def __init__(self, config: APEXConfig, student: nn.Module, teacher: nn.Module | None = None):
        super().__init__(student)
        self.config = config
        self.ema = None
        if config.needs_reference() and config.reference == "ema":
            self.ema = copy.deepcopy(student).requires_grad_(False).eval()
        if config.needs_reference() and config.reference == "teacher" and teacher is None:
            raise ValueError("APEX with reference='teacher' needs the teacher model")
        self._teacher = [teacher]

    @property
    def reference(self) -> nn.Module:
        """F_ref (METHOD §5); always evaluated without gradients."""
        return {"teacher": self._teacher[0], "ema": self.ema, "live": self.student}[self.config.reference]

    def networks(self) -> dict[str, nn.Module]:
        held = {"student": self.student}
        if self.config.needs_reference() and self.config.reference != "live":
            held["reference"] = self.reference
        return held

    def after_update(self, group: str) -> None:
        if self.ema is not None:
            ema_update(self.ema, self.student, self.config.reference_ema_decay)

    def fake_velocity(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
        """F_θ(x_t, t, S(c)); keyed by −t for TwinFlow, or by both."""
        key = self.config.fake_key
        time = -t if key in ("negative_time", "both") else t
        shift = self.config.shift if key in ("shift", "both") else None
        return self.student(x_t, time, cond, shift=shift)

    def real_velocity(self, x_t: Tensor, t: Tensor, batch: Batch) -> Tensor:
        if self.config.real_velocity == "live":
            return self.student(x_t, t, batch.cond)
        with torch.no_grad():
            return guided_velocity(self.reference, x_t, t, batch.cond, batch.null_cond, self.config.real_guidance)

    def anchor_target(self, path: flow.PathSample, batch: Batch) -> Tensor:
        """v* = ε − x0, plus w·(F_ref(x_t, t, c) − F_ref(x_t, t, ∅)) when CFG-enhanced (METHOD §3.1)."""
        target = path.velocity
        if self.config.enhanced_ratio != 0:
            with torch.no_grad():
                direction = guidance_direction(self.reference, path.x_t, path.t, batch.cond, batch.null_cond)
            target = target + self.config.enhanced_ratio * direction
        return target

    def anchor_loss(self, batch: Batch, generator: torch.Generator) -> Tensor:
        """L_fm = ‖F_θ(x_t, t, c) − v*‖² on real data (the real branch stays a flow)."""
        t = self.config.anchor_time(batch.size, generator, batch.x0.device, batch.x0.dtype)
        path = flow.sample_path(batch.x0, t, generator)
        prediction = self.student(path.x_t, t, batch.cond)
        return weighted_mean(per_sample_error(prediction, self.anchor_target(path, batch), self.config.loss))

    def mix_loss(self, batch: Batch, generator: torch.Generator) -> Tensor:
        """L_mix = w(t)·‖F_θ(x_t, t, c) − T‖², T = (1 − λ)·v* + λ·sg(F_θ(x_t, t, S(c))) (Eq. 22–25)."""
        t = self.config.anchor_time(batch.size, generator, batch.x0.device, batch.x0.dtype)
        path = flow.sample_path(batch.x0, t, generator)
        with torch.no_grad():
            shifted = self.fake_velocity(path.x_t, t, batch.cond)
        mix = self.config.mix_lambda
        target = (1 - mix) * self.anchor_target(path, batch) + mix * shifted
        prediction = self.student(path.x_t, t, batch.cond)
        weight = t * (1 - t) if self.config.mix_weighting == "endpoint" else None
        return weighted_mean(per_sample_error(prediction, target, self.config.loss), weight)

    def fake_loss(self, batch: Batch, generator: torch.Generator) -> Tensor:
        """L_fake = ‖F_θ(x_f,t', t', S(c)) − (ε'' − x_f)‖², x_f = sg(G_θ(ε', c)) (Eq. 11–12)."""
        with torch.no_grad():
            x_fake, _ = one_step_with_velocity(self.student, flow.randn_like(batch.x0, generator), batch.cond)
        t = self.config.fake_time(batch.size, generator, batch.x0.device, batch.x0.dtype)
        path = flow.sample_path(x_fake, t, generator)
        prediction = self.fake_velocity(path.x_t, t, batch.cond)
        return weighted_mean(per_sample_error(prediction, path.velocity, self.config.loss))

    def branch_difference(self, x_generated: Tensor, batch: Batch, generator: torch.Generator) -> Tensor:
        """sg(F_θ(x_s, s, S(c)) − F_real(x_s, s, c)) at x_s = s·ε₂ + (1 − s)·sg(x_g), optionally divided
        per sample by DMD's normaliser mean |F_real(x_s) − (ε₂ − x_g)| (= |x_g − x̂0_real| / s)."""
        s = self.config.generator_time(batch.size, generator, x_generated.device, x_generated.dtype)
        path = flow.sample_path(x_generated.detach(), s, generator)
        with torch.no_grad():
            real = self.real_velocity(path.x_t, s, batch)
            difference = self.fake_velocity(path.x_t, s, batch.cond) - real
            if self.config.normalise == "dmd":
                scale = (real - path.velocity).abs().flatten(1).mean(1).clamp_min(NORMALISER_FLOOR)
                difference = difference / flow.broadcast_time(scale, difference)
        return difference

    def generator_inputs(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(x_τ, τ) per generator row: pure noise at τ = 1; at an earlier step time τ of
        ``generator_times``, the model's own one-step sample re-noised to τ with fresh noise, which is what
        the few-step sampler feeds the model (DMD2's backward simulation)."""
        noise = flow.randn_like(batch.x0, generator)
        times = torch.tensor(self.config.generator_times, device=noise.device, dtype=noise.dtype)
        tau = times[torch.randint(0, len(times), (batch.size,), generator=generator, device=noise.device)]
        # decided by the settings, not by the draw: every process must call a sharded (FSDP) student equally often
        if all(time == 1 for time in self.config.generator_times):
            return noise, tau
        with torch.no_grad():
            x_one_step, _ = one_step_with_velocity(self.student, noise, batch.cond)
        renoised = flow.interpolate(x_one_step, flow.randn_like(noise, generator), tau)
        return torch.where(flow.broadcast_time(tau == 1, noise), noise, renoised), tau

    def generator_loss(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """L_gen = ‖F_θ(x_τ, τ, c) − sg(F_θ(x_τ, τ, c) − g/τ)‖², g = clamp(difference, −κ, κ): moves the
        sample x_g = x_τ − τ·F by +g, toward the real branch's denoising and away from the fake one
        (τ = 1, x_τ = ε: the one-step generator G(ε, c) = ε − F(ε, 1, c))."""
        x_in, tau = self.generator_inputs(batch, generator)
        velocity = self.student(x_in, tau, batch.cond)
        x_generated = flow.x0_from_velocity(x_in, tau, velocity)
        difference = self.branch_difference(x_generated, batch, generator)
        direction = difference.clamp(-self.config.clamp, self.config.clamp) if self.config.clamp > 0 else difference
        target = velocity - direction / flow.broadcast_time(tau, direction)
        loss = weighted_mean(per_sample_error(velocity, target, self.config.loss))
        # ‖F(x, s, c) − F(x, s, S(c))‖ near 0 means the shift is invisible: APEX degenerates (METHOD §7).
        diagnostics = {"branch_gap": difference.flatten(1).norm(dim=1).mean().item()}
        if self.config.clamp > 0:
            diagnostics["clamped_fraction"] = (difference.abs() > self.config.clamp).float().mean().item()
        return loss, diagnostics

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = super().parameter_groups()
        if self.config.fake_updates or self.config.fake_warmup:
            groups["fake"] = groups["student"]  # same weights, its own optimiser state
        return groups

    def schedule(self, step: int) -> list[str]:
        if step < self.config.fake_warmup:
            return ["fake"]
        return ["fake"] * self.config.fake_updates + ["student"]

    def loss(self, group: str, batch: Batch, generator: torch.Generator) -> LossOutput:
        if group == "fake":
            with self.ledger.section("fake"):
                return combine({"fake": (1.0, self.fake_loss(batch, generator))}, {})
        config = self.config
        rows = partition(batch, config.slices.as_dict())
        terms: dict[str, tuple[float, Tensor]] = {}
        diagnostics: dict[str, float] = {}
        if "anchor" in rows:
            uses_mix = config.generator_form in ("mix", "both")
            with self.ledger.section("mix" if uses_mix else "anchor"):
                if uses_mix:
                    terms["mix"] = (config.weight_anchor, self.mix_loss(rows["anchor"], generator))
                else:
                    terms["anchor"] = (config.weight_anchor, self.anchor_loss(rows["anchor"], generator))
        if "fake" in rows:
            with self.ledger.section("fake"):
                terms["fake"] = (config.weight_fake, self.fake_loss(rows["fake"], generator))
        if "generator" in rows:
            with self.ledger.section("generator"):
                generator_term, diagnostics = self.generator_loss(rows["generator"], generator)
            terms["generator"] = (config.weight_generator, generator_term)
        return combine(terms, diagnostics)
