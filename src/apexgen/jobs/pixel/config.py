"""Settings of the text-to-image job: data, text encoder, teacher architecture and training, distillation,
evaluation. Every field is typed and checked (``apexgen.config``); YAML files and KEY=VALUE override them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from apexgen.backbones.lora import LoRAConfig
from apexgen.config import ConfigError, require, require_positive
from apexgen.data.prompts import HELD_OUT
from apexgen.eval.classifier import ClassifierConfig
from apexgen.eval.fid import FIDConfig
from apexgen.flow import TimeSampler
from apexgen.jobs.pixel.data import PixelDataConfig
from apexgen.objectives import STUDENT_METHODS, MethodsConfig, require_batch_fits
from apexgen.objectives.apex import APEXConfig
from apexgen.objectives.consistency import ConsistencyConfig
from apexgen.objectives.dmd2 import DMD2Config
from apexgen.objectives.flow_matching import FlowMatchingConfig
from apexgen.objectives.regression import RegressionConfig
from apexgen.objectives.twinflow import TwinFlowConfig
from apexgen.text import TextEncoderConfig
from apexgen.train.settings import OptimizerConfig, TrainConfig

TEXT_DIM = 384  # MiniLM's hidden size: the width of the prompt tokens and of the pooled vector
GUIDANCE = 3.0  # the teacher's CFG scale, for sampling it and for every distillation target but APEX's
# APEX's real branch and its anchor's pool at CFG 2, the teacher's best-FID setting (a job field: every APEX
# preset takes it): at 3,000 updates FID 88.7 / 88.6 (seeds 0, 1) against 88.3 / 89.2 at CFG 1.5 and 92.6 / 91.4
# at CFG 3, accuracy 0.674 / 0.656 against 0.643 / 0.634 and 0.695 / 0.687, Inception diversity 14.71 / 14.72
# (the teacher's at CFG 2: 14.72), near-dup. 0.29 / 0.25 % against 0.19 / 0.13 % and 0.6 % (benchmarks/
# apex_study.md: apex_regression4_guidance2 against apex_regression4_guidance1.5 and apex_regression4).
APEX_GUIDANCE = 2.0


@dataclass(frozen=True)
class TeacherModelConfig:
    """A small ``SD3Transformer2DModel`` in pixel space, of the data's channels and size (Fashion-MNIST: 1
    channel, 32×32; 4×4 patches: 64 image tokens, which keeps a training step under a second on 2 CPU cores)."""

    patch_size: int = 4
    num_layers: int = 4
    attention_head_dim: int = 32
    num_attention_heads: int = 4

    def check(self) -> None:
        require_positive(self, "patch_size", "num_layers", "attention_head_dim", "num_attention_heads")

    def diffusers_config(self, image_shape: tuple[int, int, int]) -> dict:
        """The transformer's config for images of ``image_shape`` (channels, side, side)."""
        channels, side, _ = image_shape
        if side % self.patch_size:
            raise ConfigError(
                "model.patch_size",
                f"{self.patch_size} does not divide the data's image side {side}: set model.patch_size to a divisor "
                "or data.resolution to a multiple of it",
            )
        return {
            "sample_size": side,
            "patch_size": self.patch_size,
            "in_channels": channels,
            "out_channels": channels,
            "num_layers": self.num_layers,
            "attention_head_dim": self.attention_head_dim,
            "num_attention_heads": self.num_attention_heads,
            "joint_attention_dim": TEXT_DIM,
            # the projected text tokens join the image tokens' stream, so they share its width
            "caption_projection_dim": self.num_attention_heads * self.attention_head_dim,
            "pooled_projection_dim": TEXT_DIM,
            "pos_embed_max_size": side // self.patch_size,
        }


def default_teacher_training() -> TrainConfig:
    return TrainConfig(
        steps=6000,
        batch_size=64,
        optimizer=OptimizerConfig(lr=5e-4, warmup_steps=200, decay="cosine"),
        log_every=50,
        checkpoint_every=500,
        preview_every=1000,
        ema_decay=0.999,
    )


def default_distill_training() -> TrainConfig:
    return TrainConfig(
        steps=600,
        batch_size=32,
        optimizer=OptimizerConfig(lr=1e-3, decay="cosine"),
        log_every=10,
        checkpoint_every=100,
        preview_every=200,
    )


def default_methods() -> MethodsConfig:
    """The text-to-image defaults: every student distils the teacher with guidance CFG 3 (TwinFlow's real
    branch, DMD2's real score, the consistency and regression teachers' ODE solvers) but APEX, whose real
    branch and anchor pool take CFG 2 (``APEX_GUIDANCE``); APEX's anchor draws its pool as the regression row
    does (2,048 pairs from 25-step CFG trajectories: ~100k network evaluations before training starts)."""
    regression = RegressionConfig(pairs=2048, teacher_steps=25, guidance=GUIDANCE)
    apex = APEXConfig.from_preset(
        "ours",
        real_guidance=APEX_GUIDANCE,
        regression_pairs=regression.pairs,
        regression_steps=regression.teacher_steps,
    )
    return MethodsConfig(
        flow_matching=FlowMatchingConfig(condition_dropout=0.1, time=TimeSampler("logit_normal")),
        apex=apex,
        twinflow=TwinFlowConfig.from_preset("released", real_guidance=GUIDANCE),
        dmd2=DMD2Config(guidance=GUIDANCE),
        consistency=ConsistencyConfig(guidance=GUIDANCE),
        regression=regression,
    )


@dataclass(frozen=True)
class DistillConfig:
    method: str = "apex"
    full_finetune: bool = False  # False: LoRA through peft on the frozen teacher (the reference for free)
    lora: LoRAConfig = field(default_factory=lambda: LoRAConfig(rank=32, alpha=32.0))
    train: TrainConfig = field(default_factory=default_distill_training)

    def check(self) -> None:
        require(
            self.method in STUDENT_METHODS,
            "method",
            f"got {self.method!r}; allowed methods: {', '.join(STUDENT_METHODS)}",
        )


@dataclass(frozen=True)
class EvalConfig:
    fid: FIDConfig = field(default_factory=lambda: FIDConfig(samples=5000))
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    teacher_nfe: tuple[int, ...] = (1, 2, 4, 8, 50)
    student_nfe: tuple[int, ...] = (1, 2, 4)
    guidance: float = GUIDANCE  # CFG scale of the teacher's sampler
    batch_size: int = 250
    grid_seeds: int = 8
    seed: int = 0

    def check(self) -> None:
        require(self.fid.samples >= 2, "fid.samples", "must be ≥ 2: diversity needs 2 images of a prompt")
        require_positive(self, "batch_size", "grid_seeds")
        for name in ("teacher_nfe", "student_nfe"):
            values = getattr(self, name)
            require(all(n > 0 for n in values), name, f"NFE values must be > 0, got {list(values)}")
        require(self.guidance >= 1, "guidance", f"must be ≥ 1 (1 = no guidance), got {self.guidance}")


@dataclass(frozen=True)
class T2IConfig:
    data: PixelDataConfig = field(default_factory=PixelDataConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    model: TeacherModelConfig = field(default_factory=TeacherModelConfig)
    teacher: TrainConfig = field(default_factory=default_teacher_training)
    distill: DistillConfig = field(default_factory=DistillConfig)
    methods: MethodsConfig = field(default_factory=default_methods)  # every method's settings (distill.method chooses)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # keys of earlier releases that a YAML file may still hold, and their names now
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"method": "methods"}

    def check(self) -> None:
        if self.data.kind == "fashion_mnist":
            held_out = len(HELD_OUT.all_prompts())
            require(
                self.eval.fid.samples >= 2 * held_out,
                "eval.fid.samples",
                f"must be ≥ {2 * held_out}: diversity needs 2 images for each of the {held_out} held-out prompts",
            )
        require_batch_fits(self.distill.method, self.methods, self.distill.train.batch_size, "distill.train.batch_size")


# The demo's settings over the defaults: a short distillation and a small evaluation. On 2 CPU cores the
# Inception network embeds only about 5 images per second, so FID here uses 300 images per row (biased
# upward and noisier than the benchmark's; benchmarks/t2i_fashion_mnist.md has those).
DEMO = {
    "distill": {"train": {"steps": 300, "checkpoint_every": 100, "preview_every": 100}},
    "eval": {"fid": {"samples": 300}, "teacher_nfe": [1, 4, 50], "student_nfe": [1, 2]},
}
