"""Settings of a training run on a real backbone, filled strictly from YAML and ``KEY=VALUE`` overrides
(``apexgen.config``), and the rules that must hold before any weights are loaded: each failure names the
key and the setting to change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from apexgen.backbones.lora import LoRAConfig
from apexgen.backbones.registry import BACKBONES
from apexgen.config import ConfigError, require, require_non_negative
from apexgen.data.config import DataConfig
from apexgen.objectives import STUDENT_METHODS, MethodsConfig, require_batch_fits, uses_fake_network
from apexgen.train.settings import OptimizerConfig, TrainConfig

Dtype = Literal["fp32", "bf16", "fp16"]
# The step counts whose σ grids the export records (apexgen.export.EXPORTED_STEPS).
SAMPLING_STEPS = (1, 2, 4)
# Backbones whose prompt embeddings carry a mask, batched at the length of each batch's longest prompt.
DEFAULT_PROMPTS = (
    "a photo of a red fox sitting in fresh snow",
    "a watercolor painting of a lighthouse at dawn",
    "a bowl of ramen on a wooden table, studio lighting",
    "a cyberpunk street at night with neon signs in the rain",
)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = ""  # a registry name: sd3, flux, qwen_image, sana, z_image
    path: str = ""  # a local diffusers pipeline folder or a hub id
    dtype: Dtype = "bf16"  # of the frozen weights (the LoRA base, the teacher copy); trainable weights are fp32
    gradient_checkpointing: bool = False
    full_finetune: bool = False  # False: LoRA through peft on the frozen model (the teacher for free)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    fsdp: bool = False  # shard the method's copies of a fully fine-tuned model over the processes (FSDP2)

    def check(self) -> None:
        known = ", ".join(BACKBONES)
        require(
            bool(self.backbone),
            "backbone",
            f"required: the backbone of the model to distil, one of {known} (e.g. model.backbone=sd3 "
            "model.path=/models/sd35), or a recipe that sets it (--config configs/sd35_lora.yaml)",
        )
        require(self.backbone in BACKBONES, "backbone", f"unknown backbone {self.backbone!r}; known backbones: {known}")
        require(bool(self.path), "path", "set it to a local diffusers pipeline folder or a hub id, e.g. model.path=...")
        require(
            self.full_finetune or not self.fsdp,
            "fsdp",
            "FSDP shards a fully fine-tuned model; a LoRA run keeps one frozen base and small adapters, which "
            "data-parallel training handles: set model.full_finetune=true, or model.fsdp=false for LoRA",
        )


@dataclass(frozen=True)
class SamplesConfig:
    """Preview grids during training: one row per step count, one column per prompt."""

    prompts: tuple[str, ...] = DEFAULT_PROMPTS  # empty: no previews
    steps: tuple[int, ...] = (1,)
    seed: int = 0

    def check(self) -> None:
        require_non_negative(self, "seed")
        wrong = [steps for steps in self.steps if steps not in SAMPLING_STEPS]
        require(not wrong, "steps", f"{wrong} not allowed; previews sample with {SAMPLING_STEPS} steps")
        require(bool(self.steps), "steps", "give at least one step count, e.g. [1]")


def default_run_training() -> TrainConfig:
    """The released LoRA recipe's optimiser (METHOD §5) with bf16 autocast and a small per-GPU batch."""
    return TrainConfig(
        steps=2000,
        batch_size=4,
        optimizer=OptimizerConfig(lr=1e-4, betas=(0.9, 0.99), grad_clip=1.0),
        precision="bf16",
        log_every=10,
        checkpoint_every=250,
        keep_checkpoints=2,
        preview_every=250,
    )


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: str = "apex"
    methods: MethodsConfig = field(default_factory=MethodsConfig)
    train: TrainConfig = field(default_factory=default_run_training)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    out: str = "runs/train"

    def check(self) -> None:
        for name in ("model", "data"):  # a section left out keeps its default, which the loader does not check
            try:
                getattr(self, name).check()
            except ConfigError as error:
                raise error.under(name) from None
        require(self.method in STUDENT_METHODS, "method", f"got {self.method!r}; allowed: {', '.join(STUDENT_METHODS)}")
        self.check_batch()
        self.check_precision()
        self.check_checkpointing()
        self.check_sharding()
        if self.data.kind == "prompts":
            self.check_prompt_only_data()

    def check_batch(self) -> None:
        require_batch_fits(self.method, self.methods, self.train.batch_size, "train.batch_size")

    def check_precision(self) -> None:
        if self.model.dtype != "fp32" and self.train.precision != "bf16":
            raise ConfigError(
                "train.precision",
                f"frozen {self.model.dtype} weights run under bf16 autocast: set train.precision=bf16, "
                "or model.dtype=fp32 for an fp32 run",
            )

    def check_checkpointing(self) -> None:
        if (
            self.model.gradient_checkpointing
            and uses_fake_network(self.method, self.methods)
            and not self.model.full_finetune
        ):
            raise ConfigError(
                "model.gradient_checkpointing",
                f"{self.method} in LoRA form switches to its fake-network adapter only during that adapter's "
                "forward, and checkpointed blocks are recomputed in backward with the student's adapter active, "
                "which gives wrong gradients; set model.gradient_checkpointing=false or model.full_finetune=true",
            )

    def check_sharding(self) -> None:
        if self.model.fsdp and self.method in ("apex", "twinflow") and getattr(self.methods, self.method).lag_every:
            raise ConfigError(
                f"methods.{self.method}.lag_every",
                "the lag diagnostic re-fits a copy of the fake branch, which a sharded (FSDP) network cannot "
                "give; set it to 0, or model.fsdp=false",
            )
        if self.model.fsdp and self.method == "dmd2" and self.methods.dmd2.uses_discriminator:
            raise ConfigError(
                "methods.dmd2.weight_gan_generator",
                "the GAN head reads a late block's features of the fake score, not its output, and with model.fsdp "
                "gradients through a sharded network must start at its output (FSDP gathers its outer weights "
                "again there); set it to 0, or model.fsdp=false",
            )

    def check_prompt_only_data(self) -> None:
        """Prompt-only data has no images: every row that needs a real sample must be switched off."""
        fix = "or train on images (data.kind=imagefolder or parquet)"
        method = getattr(self.methods, self.method)
        if self.method in ("apex", "twinflow") and method.generator_form == "paper":
            raise ConfigError(
                f"methods.{self.method}.preset",
                "the paper's objective (generator_form='paper') builds its fake samples from noised real images "
                f"(Eq. 11), and data.kind=prompts has none; choose preset=ours or preset=released, {fix}",
            )
        if self.method in ("apex", "twinflow") and method.slices.anchor > 0:
            raise ConfigError(
                f"methods.{self.method}.slices.anchor",
                "anchor rows fit the real branch to real images, and data.kind=prompts has none; set it to 0 "
                f"and give its share to slices.generator and slices.fake, {fix}",
            )
        if self.method == "consistency":
            raise ConfigError(
                "method",
                "consistency distillation starts from noised real images, and data.kind=prompts has none; use "
                f"apex, twinflow, dmd2 or regression, which need only prompts, {fix}",
            )
        if self.method == "dmd2" and self.methods.dmd2.uses_discriminator:
            raise ConfigError(
                "methods.dmd2.weight_gan_generator",
                f"the GAN head compares generated with real images, and data.kind=prompts has none; set it to 0, {fix}",
            )
