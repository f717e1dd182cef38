"""What ``apexgen bench`` measures: its settings, the variants (every method, APEX in each preset, DMD2's two
LoRA layouts) with the short regression pool and fake warm-up they run with, and a measured row."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from apexgen.backbones.lora import LoRAConfig
from apexgen.config import ConfigError
from apexgen.jobs.real_backbones.bench_memory import MemoryBreakdown
from apexgen.objectives import MethodsConfig
from apexgen.objectives.apex import APEXConfig

METHODS = ("flow_matching", "apex", "twinflow", "dmd2", "consistency")
APEX_PRESETS = ("paper", "released")  # benched next to the default (``ours``) as apex_<preset>
# APEX's regression anchor draws a pool of teacher endpoints before training: a few pairs of 2 Euler steps
# here (its memory is the pool's latents, negligible; its time is not a training step).
BENCH_POOL = {"regression_pairs": 8, "regression_steps": 2}
# APEX's shared fake warm-up trains the fake branch alone for its first steps with a second AdamW state on
# the same weights: one warm-up step here, so the state is held and the steps after it are regular steps.
BENCH_FAKE_WARMUP = 1
Processes = Literal["fresh", "shared"]


@dataclass(frozen=True)
class BenchSettings:
    backbone: str
    size: str = "tiny"
    lora: bool = False
    rank: int | None = None  # None: 4 for tiny models, 64 (the released recipe) otherwise
    steps: int = 5
    batch: int = 4
    resolution: int | None = None  # image side in pixels; None: the size's default
    device: str = "cpu"
    seed: int = 0
    autocast: str | None = None  # "bf16" (frozen weights bf16, bf16 autocast) or "fp32"; None: bf16 on a GPU
    processes: Processes = "fresh"
    methods: tuple[str, ...] = ()  # variant names to run (``variants``); () = all of them

    @property
    def precision(self) -> str:
        return self.autocast or ("bf16" if self.device.startswith("cuda") else "fp32")

    @property
    def lora_config(self) -> LoRAConfig:
        rank = self.rank or (4 if self.size == "tiny" else 64)
        return LoRAConfig(rank=rank, alpha=float(rank))


@dataclass(frozen=True)
class Variant:
    name: str
    method: str
    form: str  # "full", "lora" or "lora + full fake"
    preset: str = ""  # APEX only: the preset ("" = the default, ours)

    def methods(self) -> MethodsConfig:
        """The method's default settings (APEX: its preset) with the bench's short pool and warm-up."""
        apex = APEXConfig.from_preset(self.preset or "ours")
        short = BENCH_POOL | {"fake_warmup": min(apex.fake_warmup, BENCH_FAKE_WARMUP)}
        return dataclasses.replace(MethodsConfig(), apex=dataclasses.replace(apex, **short))


@dataclass
class BenchRow:
    name: str
    method: str
    form: str
    updates_per_step: int
    seconds_per_step: float
    weights_mib: float
    training_peak_mib: float
    trainable_parameters: int
    held_parameters: int
    memory_method: str
    breakdown: MemoryBreakdown | None = None  # None when measured in a shared process
    dry_run_mib: float | None = None  # ``apexgen train --dry-run``'s estimate above the loaded model (no activations)


def variants(lora: bool) -> list[Variant]:
    form = "lora" if lora else "full"
    rows = [Variant(method, method, form) for method in METHODS]
    apex = [Variant(f"apex_{preset}", "apex", form, preset) for preset in APEX_PRESETS]
    rows[2:2] = apex
    if lora:
        rows.insert(6, Variant("dmd2_full_fake", "dmd2", "lora + full fake"))
    return rows


def chosen_variants(settings: BenchSettings) -> list[Variant]:
    every = variants(settings.lora)
    names = [v.name for v in every]
    unknown = [name for name in settings.methods if name not in names]
    if unknown:
        raise ConfigError(
            "", f"--methods: unknown bench method(s) {', '.join(unknown)}; choose from {', '.join(names)}"
        )
    return [v for v in every if not settings.methods or v.name in settings.methods]


def require_steady_steps(variant: Variant, steps: int) -> None:
    """Two regular steps after APEX's fake warm-up: only from the second on are the student's optimiser
    states held through its backward pass, as in a long run (the peak of a shorter run is too low)."""
    warm_up = variant.methods().apex.fake_warmup if variant.method == "apex" else 0
    if steps < warm_up + 2:
        raise ConfigError(
            "",
            f"--steps {steps}: {variant.name} trains its fake branch alone for its first {warm_up} step(s) and "
            f"needs {warm_up + 2} or more to measure its regular steps; pass --steps {warm_up + 2} or more",
        )
