"""APEX: self-adversarial one-step training through condition shifting (METHOD §2–§5).

One network F_θ plays three parts. Its real branch F_θ(·, c) stays a flow of the data (anchor rows). Its
fake branch, keyed by the shifted condition S(c) (or, for TwinFlow, by negative time), is trained by flow
matching on the model's own samples (L_fake) so that it tracks the generator's distribution. The generator
is moved by the difference of the two branches: in the ``dmd`` form (generator rows, L_gen), the ``mix``
form (anchor rows, L_mix), both, or the ``paper`` form (``apex_paper``: Eq. 11–25 on real rows). With
``fake_network="private"`` the fake branch has weights of its own ([ours], METHOD §5).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from apexgen import flow
from apexgen.batch import Batch
from apexgen.condition import Condition
from apexgen.ema import ema_update
from apexgen.guidance import guidance_direction, guided_velocity
from apexgen.objectives.apex_config import (
    APEXConfig,
    APEXSlices,
    FakeKey,
    GeneratorForm,
    PaperOptions,
)
from apexgen.objectives.apex_paper import paper_terms
from apexgen.objectives.base import (
    LossOutput,
    Objective,
    combine,
    partition,
    per_sample_error,
    weighted_mean,
)
from apexgen.objectives.lag import fake_branch_lag
from apexgen.objectives.regression import PoolHolder, endpoint_pool, regression_loss
from apexgen.sampling import one_step_with_velocity

__all__ = ["APEX", "APEXConfig", "APEXSlices", "FakeKey", "GeneratorForm", "PaperOptions"]

# Keeps the DMD-style normaliser away from zero when the real branch fits a sample's path exactly.
NORMALISER_FLOOR = 1e-6


class APEX(Objective):
    def __init__(
        self, config: APEXConfig, student: nn.Module, teacher: nn.Module | None = None, fake: nn.Module | None = None
    ):
        super().__init__(student)
        self.config = config
        self.ema = None
        if config.needs_reference() and config.reference == "ema":
            self.ema = copy.deepcopy(student).requires_grad_(False).eval()
        if config.needs_reference() and config.reference == "teacher" and teacher is None:
            raise ValueError("APEX with reference='teacher' needs the teacher model")
        if config.fake_network == "private" and fake is None:
            raise ValueError("APEX with fake_network='private' needs its fake network")
        self._teacher = [teacher]
        # registered when it is a network of its own (saved with checkpoints); an adapter view owns no weights
        self.fake = fake if config.fake_network == "private" else None
        self.endpoints = PoolHolder() if config.weight_regression > 0 else None

    @property
    def reference(self) -> nn.Module:
        """F_ref (METHOD §5); always evaluated without gradients."""
        return {"teacher": self._teacher[0], "ema": self.ema, "live": self.student}[self.config.reference]

    def networks(self) -> dict[str, nn.Module]:
        held = {"student": self.student}
        if self.config.needs_reference() and self.config.reference != "live":
            held["reference"] = self.reference
        if self.fake is not None:
            held["fake"] = self.fake
        return held

    def preparation_rows(self) -> int:
        needs_pool = self.endpoints is not None and self.endpoints.pool is None
        return self.config.regression_pairs if needs_pool else 0

    def prepare(self, batches, rng: torch.Generator) -> None:
        """The pool of teacher endpoints of the regression anchor, when it is on (and not restored)."""
        if self.endpoints is not None and self.endpoints.pool is None:
            config = self.config
            self.endpoints.pool = endpoint_pool(
                self.reference, batches, rng, config.regression_pairs, config.regression_steps, config.real_guidance
            )

    def after_update(self, group: str) -> None:
        if self.ema is not None:
            ema_update(self.ema, self.student, self.config.reference_ema_decay)

    @property
    def fake_network(self) -> nn.Module:
        return self.student if self.fake is None else self.fake

    def fake_velocity(self, x_t: Tensor, t: Tensor, cond: Condition, network: nn.Module | None = None) -> Tensor:
        """F_θ(x_t, t, S(c)); keyed by −t for TwinFlow, by both, or (private network) by neither. ``network``:
        another network holding the fake branch (the lag diagnostic's re-fit copy)."""
        key = self.config.fake_key
        time = -t if key in ("negative_time", "both") else t
        shift = self.config.condition_shift if key in ("shift", "both") else None
        return (network or self.fake_network)(x_t, time, cond, shift=shift)

    def real_velocity(self, x_t: Tensor, t: Tensor, batch: Batch) -> Tensor:
        if self.config.real_velocity == "live":
            return self.student(x_t, t, batch.cond)
        with torch.no_grad():
            return guided_velocity(self.reference, x_t, t, batch.cond, batch.null_cond, self.config.real_guidance)

    def anchor_target(self, path: flow.PathSample, batch: Batch) -> Tensor:
        """v* = ε − x0, plus w·(F_ref(x_t, t, c) − F_ref(x_t, t, ∅)) when CFG-enhanced (METHOD §4)."""
        target = path.velocity
        if self.config.enhanced_ratio != 0:
            with torch.no_grad():
                direction = guidance_direction(self.reference, path.x_t, path.t, batch.cond, batch.null_cond)
            target = target + self.config.enhanced_ratio * direction
        return target

    def anchor_path(self, batch: Batch, rng: torch.Generator) -> flow.PathSample:
        t = self.config.anchor_time(batch.size, rng, batch.x0.device, batch.x0.dtype)
        return flow.sample_path(batch.x0, t, rng)

    def anchor_loss(self, batch: Batch, rng: torch.Generator) -> Tensor:
        """L_fm = ‖F_θ(x_t, t, c) − v*‖² on real data (the real branch stays a flow)."""
        path = self.anchor_path(batch, rng)
        prediction = self.student(path.x_t, path.t, batch.cond)
        return weighted_mean(per_sample_error(prediction, self.anchor_target(path, batch), self.config.loss))

    def mix_weight(self, t: Tensor) -> Tensor | None:
        """w(t) of L_mix in velocity units; the paper's t³/(1 − t) (= t²·1/ω, Eq. 18–24) capped."""
        weighting = self.config.mix_weighting
        if weighting == "endpoint":
            return t * (1 - t)
        if weighting == "paper":
            return (t.pow(3) / (1 - t)).clamp(max=self.config.mix_weight_cap)
        return None

    def mix_loss(self, batch: Batch, rng: torch.Generator) -> Tensor:
        """L_mix = w(t)·‖F_θ(x_t, t, c) − T‖², T = (1 − λ)·v* + λ·sg(F_θ(x_t, t, S(c))) (Eq. 22–24)."""
        path = self.anchor_path(batch, rng)
        with torch.no_grad():
            shifted = self.fake_velocity(path.x_t, path.t, batch.cond)
        mix = self.config.mix_lambda
        target = (1 - mix) * self.anchor_target(path, batch) + mix * shifted
        prediction = self.student(path.x_t, path.t, batch.cond)
        return weighted_mean(per_sample_error(prediction, target, self.config.loss), self.mix_weight(path.t))

    def fake_loss(self, batch: Batch, rng: torch.Generator, network: nn.Module | None = None) -> Tensor:
        """L_fake = ‖F_θ(x_f,t', t', S(c)) − (ε'' − x_f)‖², x_f = sg(G_θ(ε', c)) (the released code's rows)."""
        with torch.no_grad():
            x_fake, _ = one_step_with_velocity(self.student, flow.randn_like(batch.x0, rng), batch.cond)
        t = self.config.fake_time(batch.size, rng, batch.x0.device, batch.x0.dtype)
        path = flow.sample_path(x_fake, t, rng)
        prediction = self.fake_velocity(path.x_t, t, batch.cond, network)
        return weighted_mean(per_sample_error(prediction, path.velocity, self.config.loss))

    def branch_difference(self, x_generated: Tensor, batch: Batch, rng: torch.Generator) -> Tensor:
        """sg(F_θ(x_s, s, S(c)) − F_real(x_s, s, c)) at x_s = s·ε₂ + (1 − s)·sg(x_g), optionally divided
        per sample by DMD's normaliser mean |F_real(x_s) − (ε₂ − x_g)| (= |x_g − x̂0_real| / s)."""
        s = self.config.generator_time(batch.size, rng, x_generated.device, x_generated.dtype)
        path = flow.sample_path(x_generated.detach(), s, rng)
        with torch.no_grad():
            real = self.real_velocity(path.x_t, s, batch)
            difference = self.fake_velocity(path.x_t, s, batch.cond) - real
            if self.config.normalise == "dmd":
                scale = (real - path.velocity).abs().flatten(1).mean(1).clamp_min(NORMALISER_FLOOR)
                difference = difference / flow.broadcast_time(scale, difference)
        return difference

    def generator_inputs(self, batch: Batch, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        """(x_τ, τ) per generator row: pure noise at τ = 1; at an earlier step time τ of
        ``generator_times``, the model's own one-step sample re-noised to τ with fresh noise, which is what
        the few-step sampler feeds the model (DMD2's backward simulation)."""
        noise = flow.randn_like(batch.x0, rng)
        times = torch.tensor(self.config.generator_times, device=noise.device, dtype=noise.dtype)
        tau = times[torch.randint(0, len(times), (batch.size,), generator=rng, device=noise.device)]
        # decided by the settings, not by the draw: every process must call a sharded (FSDP) student equally often
        if all(time == 1 for time in self.config.generator_times):
            return noise, tau
        with torch.no_grad():
            x_one_step, _ = one_step_with_velocity(self.student, noise, batch.cond)
        renoised = flow.interpolate(x_one_step, flow.randn_like(noise, rng), tau)
        return torch.where(flow.broadcast_time(tau == 1, noise), noise, renoised), tau

    def generator_loss(self, batch: Batch, rng: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """L_gen = ‖F_θ(x_τ, τ, c) − sg(F_θ(x_τ, τ, c) − g/τ)‖², g = clamp(difference, −κ, κ): moves the
        sample x_g = x_τ − τ·F by +g, toward the real branch's denoising and away from the fake one
        (τ = 1, x_τ = ε: the one-step generator G(ε, c) = ε − F(ε, 1, c))."""
        x_in, tau = self.generator_inputs(batch, rng)
        velocity = self.student(x_in, tau, batch.cond)
        x_generated = flow.x0_from_velocity(x_in, tau, velocity)
        difference = self.branch_difference(x_generated, batch, rng)
        direction = difference.clamp(-self.config.clamp, self.config.clamp) if self.config.clamp > 0 else difference
        target = velocity - direction / flow.broadcast_time(tau, direction)
        loss = weighted_mean(per_sample_error(velocity, target, self.config.loss))
        # ‖F(x, s, c) − F(x, s, S(c))‖ near 0 means the shift is invisible: APEX degenerates (METHOD §7).
        diagnostics = {"branch_gap": difference.flatten(1).norm(dim=1).mean().item()}
        if self.config.clamp > 0:
            diagnostics["clamped_fraction"] = (difference.abs() > self.config.clamp).float().mean().item()
        return loss, diagnostics

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        if self.fake is not None:
            own = getattr(self.fake, "trainable_parameters", None)
            fake = own() if own else [p for p in self.fake.parameters() if p.requires_grad]
            fake_ids = {id(p) for p in fake}
            student = [p for p in self.student.parameters() if p.requires_grad and id(p) not in fake_ids]
            return {"student": student, "fake": fake}
        groups = super().parameter_groups()
        if self.config.fake_updates or self.config.fake_warmup:
            groups["fake"] = groups["student"]  # same weights, its own optimiser state
        return groups

    def schedule(self, step: int) -> list[str]:
        return self.config.schedule(step)

    def finished_groups(self, step: int) -> list[str]:
        return self.config.finished_groups(step)

    def loss(self, group: str, batch: Batch, rng: torch.Generator) -> LossOutput:
        if group == "fake":
            with self.ledger.section("fake"):
                return combine({"fake": (1.0, self.fake_loss(batch, rng))}, {})
        config = self.config
        rows = partition(batch, config.slices.as_dict())
        terms: dict[str, tuple[float, Tensor]] = {}
        diagnostics: dict[str, float] = {}
        if "anchor" in rows:
            terms |= self.anchor_terms(rows["anchor"], rng)
        if "fake" in rows:
            with self.ledger.section("fake"):
                terms["fake"] = (config.weight_fake, self.fake_loss(rows["fake"], rng))
        if "generator" in rows:
            with self.ledger.section("generator"):
                generator_term, diagnostics = self.generator_loss(rows["generator"], rng)
            terms["generator"] = (config.weight_generator, generator_term)
        if self.endpoints is not None:
            with self.ledger.section("regression"):
                size = rows["generator"].size if "generator" in rows else batch.size
                regression = regression_loss(self.student, self.endpoints.pool, size, rng, config.loss)
            terms["regression"] = (config.weight_regression, regression)
        return combine(terms, diagnostics)

    def anchor_terms(self, rows: Batch, rng: torch.Generator) -> dict[str, tuple[float, Tensor]]:
        """The terms of the real rows: the paper's L_fake and L_mix, L_mix alone, or plain L_fm."""
        config = self.config
        form: GeneratorForm = config.generator_form
        if form == "paper":
            with self.ledger.section("paper"):
                terms = paper_terms(self, rows, rng)
            return {"paper_fake": (config.weight_fake, terms.fake), "mix": (config.weight_anchor, terms.mix)}
        if form in ("mix", "both"):
            with self.ledger.section("mix"):
                return {"mix": (config.weight_anchor, self.mix_loss(rows, rng))}
        with self.ledger.section("anchor"):
            return {"anchor": (config.weight_anchor, self.anchor_loss(rows, rng))}

    def diagnostics(self, batch: Batch, step: int, rng: torch.Generator) -> dict[str, float]:
        """The lag diagnostic every ``lag_every`` steps (``apexgen.objectives.lag``)."""
        if not self.config.lag_every or step % self.config.lag_every:
            return {}
        return fake_branch_lag(self, batch, rng).as_dict()
