"""APEX's settings and its presets (METHOD §3–§5): ``paper`` (the paper's equations), ``released`` (the
released code's objective, as far as this harness expresses it) and ``ours`` (what our benchmarks chose).

A preset is a complete set of field values; keys given next to ``preset`` override it one by one, and
``--dry-run`` prints the resolved values. Only ``JOB_FIELDS`` keep the job's own value under a preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from apexgen.config import ConfigError, build, require, require_fraction, require_non_negative, require_positive
from apexgen.flow import TimeSampler
from apexgen.objectives.base import LossKind
from apexgen.shift import ConditionShift

FakeKey = Literal["shift", "negative_time", "both", "none"]
FakeNetwork = Literal["shared", "private"]
GeneratorForm = Literal["dmd", "mix", "both", "paper"]
RealVelocity = Literal["live", "reference"]
Reference = Literal["teacher", "ema", "live"]
MixWeighting = Literal["uniform", "endpoint", "paper"]
DirectionNormalisation = Literal["none", "dmd"]
PathChoice = Literal["same", "fresh"]


@dataclass(frozen=True)
class APEXSlices:
    """Fractions of each batch given to each kind of row (they sum to 1)."""

    generator: float = 0.5  # one-step samples moved by L_gen (``dmd`` form)
    anchor: float = 0.0  # real data: L_fm, L_mix (``mix``) or the paper's L_fake + L_mix (``paper``)
    fake: float = 0.5  # the model's own one-step samples, training the fake branch (L_fake)

    def as_dict(self) -> dict[str, float]:
        return {"generator": self.generator, "anchor": self.anchor, "fake": self.fake}

    def check(self) -> None:
        require_fraction(self, "generator", "anchor", "fake")
        total = self.generator + self.anchor + self.fake
        require(abs(total - 1) < 1e-6, "", f"generator + anchor + fake must sum to 1, got {total:g} ({self})")


@dataclass(frozen=True)
class PaperOptions:
    """What Eq. 11–12 leave open (``generator_form="paper"``, METHOD §3)."""

    fake_noise: PathChoice = "same"  # z of x^fake_t = t·z + (1 − t)·x_fake: the real path's (as written) or fresh
    fake_time: PathChoice = "same"  # its t: the real path's (as written) or fresh from ``fake_time``
    fake_gradient: bool = True  # keep ∂x_fake/∂θ = −t·∂F_θ(x_t, t, c)/∂θ in L_fake (Eq. 11 as written)


@dataclass(frozen=True)
class APEXConfig:
    # The preset these values started from ("": none); see PRESETS below.
    preset: str = ""
    condition_shift: ConditionShift = field(default_factory=ConditionShift)
    fake_key: FakeKey = "shift"  # how the fake branch is addressed: S(c), −t (TwinFlow), both, or none
    # [ours] "shared": the fake branch is the student itself under the key (the paper's one network);
    # "private": its own weights, initialised from the base (LoRA: a second adapter on the same frozen base;
    # full fine-tuning: a trainable copy of the teacher), trained only by L_fake in ``fake_updates`` updates.
    fake_network: FakeNetwork = "shared"
    generator_form: GeneratorForm = "dmd"
    slices: APEXSlices = field(default_factory=APEXSlices)
    weight_fake: float = 1.0  # λ_p
    weight_anchor: float = 1.0  # on L_fm (``dmd``) or L_mix (``mix``, ``paper``: λ_e)
    weight_generator: float = 1.0
    # [ours] two time-scale updates: extra fake-branch-only updates (L_fake on a whole fresh batch, with their
    # own optimiser state) before each main step, as DMD2 updates its critic more often than its generator.
    fake_updates: int = 0
    # [ours] the first fake_warmup steps train only the fake branch (L_fake on whole batches).
    fake_warmup: int = 0
    # [ours] the step times the generator is trained at: (1,) one step; e.g. (1, 0.6) also trains the second
    # step of the 2-step sampler on re-noised one-step samples (DMD2's backward simulation).
    generator_times: tuple[float, ...] = (1.0,)
    clamp: float = 1.0  # κ: elementwise bound on the generator direction g; 0 disables the clamp
    # [ours] "dmd": divide g per sample by mean |F_real(x_s) − (ε₂ − x_g)|, DMD's normaliser (DMD Eq. 8)
    # written in velocities; "none": the released code's unnormalised g.
    normalise: DirectionNormalisation = "none"
    mix_lambda: float = 0.5  # λ in T = (1 − λ)(ε − x0) + λ·sg(F_θ(x_t, t, S(c))) (Eq. 22–23)
    # w(t) of L_mix in velocity units: 1, t(1 − t), or the paper's t³/(1 − t) (1/ω in endpoint units, Eq. 24)
    mix_weighting: MixWeighting = "uniform"
    # [ours] the paper's weight grows without bound as t → 1: it is capped at this value (METHOD §3.4)
    mix_weight_cap: float = 10.0
    paper: PaperOptions = field(default_factory=PaperOptions)
    loss: LossKind = "mse"
    # The real branch in g: the live model (released code) or the reference (the frozen teacher, which for a
    # LoRA student is the same network with its adapter off).
    real_velocity: RealVelocity = "reference"
    real_guidance: float = 1.0  # CFG scale on the reference's real velocity
    enhanced_ratio: float = 0.0  # w of the CFG-enhanced anchor target (needs a reference)
    reference: Reference = "teacher"  # F_ref: the frozen teacher (LoRA: adapter off), an EMA, the live model
    reference_ema_decay: float = 0.999
    anchor_time: TimeSampler = field(default_factory=TimeSampler)
    fake_time: TimeSampler = field(default_factory=TimeSampler)
    generator_time: TimeSampler = field(default_factory=TimeSampler)
    # [ours] a regression-to-teacher anchor (DMD's regression loss): ‖G_θ(ε, c) − x0‖² on pairs of a pool of
    # regression_pairs teacher ODE endpoints (Euler, regression_steps steps, CFG real_guidance); 0 = off.
    weight_regression: float = 0.0
    regression_pairs: int = 2048
    regression_steps: int = 25
    # [ours] the lag diagnostic (METHOD §5): every lag_every steps, L_fake of the fake branch on fresh
    # generator samples against that of a copy re-fit for lag_refit_steps Adam updates; 0 = off.
    lag_every: int = 0
    lag_refit_steps: int = 25
    lag_refit_lr: float = 1e-3

    # The fields a preset leaves as the job set them: the teacher's guidance belongs to the job (CFG 3 for
    # the text-to-image teacher; 1 on the toy benchmark, whose target is p(x | c) itself), and so does the
    # anchor's pool of teacher endpoints, whose cost the job decides (each job gives it its regression row's).
    JOB_FIELDS: ClassVar[tuple[str, ...]] = ("real_guidance", "regression_pairs", "regression_steps")
    # keys of earlier releases that a YAML file may still hold, and their names now
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"shift": "condition_shift"}

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return PRESETS

    @classmethod
    def from_preset(cls, name: str, **job: Any) -> APEXConfig:
        """The preset ``name`` with the job's values of ``JOB_FIELDS`` (e.g. ``real_guidance=3``)."""
        unknown = set(job) - set(cls.JOB_FIELDS)
        if unknown:
            raise ValueError(f"from_preset takes only the job's fields {cls.JOB_FIELDS}, got {sorted(unknown)}")
        return build(cls, {"preset": name, **job})

    def check(self) -> None:
        require(
            self.preset == "" or self.preset in self.presets(),
            "preset",
            f"got {self.preset!r}; allowed presets: {', '.join(self.presets()) or 'none'}",
        )
        require_non_negative(self, "fake_updates", "fake_warmup", "lag_every", "weight_regression")
        require_positive(self, "lag_refit_steps", "lag_refit_lr", "regression_pairs", "regression_steps")
        require(
            len(self.generator_times) > 0 and all(0 < t <= 1 for t in self.generator_times),
            "generator_times",
            f"times in (0, 1], got {self.generator_times}",
        )
        require_non_negative(self, "weight_fake", "weight_anchor", "weight_generator", "clamp", "enhanced_ratio")
        require_fraction(self, "mix_lambda")
        require(self.mix_weight_cap > 0, "mix_weight_cap", f"must be > 0, got {self.mix_weight_cap}")
        require(0 <= self.reference_ema_decay < 1, "reference_ema_decay", "must be in [0, 1)")
        require(
            self.real_guidance >= 1,
            "real_guidance",
            f"must be ≥ 1 (1 = no guidance), got {self.real_guidance}",
        )
        self.check_rows()
        self.check_fake_network()

    def check_rows(self) -> None:
        uses_generator_rows = self.generator_form in ("dmd", "both")
        if uses_generator_rows and self.slices.generator == 0:
            raise ConfigError("slices.generator", f"generator_form={self.generator_form!r} needs generator rows (> 0)")
        if not uses_generator_rows and self.slices.generator > 0:
            raise ConfigError(
                "slices.generator",
                f"generator_form={self.generator_form!r} has no generator rows: set slices.generator=0",
            )
        if self.generator_form == "paper" and self.slices.anchor == 0:
            raise ConfigError(
                "slices.anchor",
                "generator_form='paper' trains L_fake and L_mix on real rows (Eq. 11–25): give them slices.anchor > 0",
            )

    def check_fake_network(self) -> None:
        if self.fake_network == "shared" and self.fake_key == "none":
            raise ConfigError(
                "fake_key",
                "a fake branch that shares the student's weights needs a key (shift, negative_time or both); "
                "fake_key='none' is for fake_network='private'",
            )
        if self.fake_network == "private":
            require(
                self.fake_updates > 0,
                "fake_updates",
                "fake_network='private' trains its fake network only in fake updates: set fake_updates ≥ 1",
            )
            require(
                self.slices.fake == 0,
                "slices.fake",
                "fake_network='private' trains the fake network on whole batches in its own updates "
                "(fake_updates): set slices.fake=0 and give its share to slices.generator",
            )

    def schedule(self, step: int) -> list[str]:
        """The parameter groups updated at ``step``: fake-only during the warm-up, then fake_updates fake
        updates before each student update."""
        if step < self.fake_warmup:
            return ["fake"]
        return ["fake"] * self.fake_updates + ["student"]

    def finished_groups(self, step: int) -> list[str]:
        """The groups no step from ``step`` on updates: the fake group after a warm-up with no fake updates
        after it (its AdamW state, 8 bytes per parameter, can then be freed)."""
        return ["fake"] if self.fake_warmup and step >= self.fake_warmup and not self.fake_updates else []

    def needs_reference(self) -> bool:
        uses_real_velocity = self.generator_form in ("dmd", "both")
        uses_reference = uses_real_velocity and self.real_velocity == "reference"
        return uses_reference or self.enhanced_ratio != 0 or self.weight_regression > 0

    def needs_images(self) -> bool:
        """Whether the objective reads real samples (anchor rows): prompt-only data cannot feed it."""
        return self.slices.anchor > 0


# The paper's objective exactly (METHOD §3): on every row of real data, x_fake from the real branch at the
# same x_t with gradient (Eq. 11), L_fake on its trajectory (Eq. 12), v_fake queried at the real x_t (Eq. 14,
# 17), L_mix weighted by 1/ω (Eq. 24, capped), λ_p = λ_e = 1 (Eq. 25). The shift a = −0.5, b = 1 is Table 7's
# best. No frozen teacher. Left open by the paper: λ (0.5 here), the time distribution (uniform).
PAPER = {
    "condition_shift": {"a": -0.5, "b": 1.0, "where": "projected"},
    "fake_key": "shift",
    "generator_form": "paper",
    "slices": {"generator": 0.0, "anchor": 1.0, "fake": 0.0},
    "weight_fake": 1.0,
    "weight_anchor": 1.0,
    "mix_lambda": 0.5,
    "mix_weighting": "paper",
    "real_velocity": "live",
}

# The released code (METHOD §4) as far as this harness expresses it: the fake branch keyed by negative time
# and the sign-flipped text tokens, one-step rows moved by the clamped branch difference of the live model,
# flow-matching anchor rows with CFG 0.8 baked into their target, fake rows on sg(G(ε')), the Barron loss.
# Not expressed: the any-step rows with the RCGM consistency target and the tan time weighting.
RELEASED = {
    "condition_shift": {"a": -1.0, "b": 0.0, "where": "projected"},
    "fake_key": "both",
    "generator_form": "dmd",
    "slices": {"generator": 0.25, "anchor": 0.5, "fake": 0.25},
    "clamp": 1.0,
    "loss": "barron",
    "real_velocity": "live",
    "enhanced_ratio": 0.8,
}

# Ours: the form of benchmarks/t2i_fashion_mnist.md (the fake branch shared, generator weight 4, 50 fake-only
# warm-up updates) with the regression anchor at weight 4, the best APEX row of benchmarks/apex_study.md
# (row apex_regression4: the lowest FID and near-duplicate rate of the APEX rows).
OURS = {
    "weight_generator": 4.0,
    "fake_warmup": 50,
    "weight_regression": 4.0,
}

PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER, "released": RELEASED, "ours": OURS}
