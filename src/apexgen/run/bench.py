"""``apexgen bench``: every method on the same random-init backbone and the same batches (random latents and
text conditions), a few steps each through the shared :class:`Trainer`, side by side: mean step time (the
first step excluded, from the ledger), the training peak memory above the loaded model (CUDA allocator on a
GPU, the process's resident-set high-water mark on a CPU) next to the breakdown that predicts it
(``run.bench_memory``), trainable and held parameters.

Each method runs in a **fresh process** (``processes="fresh"``): it loads the model, and its peak is measured
above that process's memory after loading, so that one method's allocations cannot hide another's.
``processes="shared"`` runs them one after another in this process (quick checks; the memory figures are
then only rough).

Without ``--lora`` every method fine-tunes the whole model (next to a frozen teacher copy when it reads
one: APEX's ``paper`` preset does not). With it every method trains a LoRA; DMD2 runs twice: with its fake
score as a second adapter (one base, two adapters) and with the fake score as a full trainable copy,
DMD2's own three-network layout. APEX runs in each preset."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from apexgen.backbones.diffusers_backbone import DiffusersBackbone
from apexgen.backbones.lora import LoRAConfig
from apexgen.backbones.registry import adapter_class
from apexgen.config import ConfigError
from apexgen.memory import PeakMemory, current_bytes
from apexgen.objectives import MethodsConfig, build_objective, require_batch_fits
from apexgen.objectives.apex import APEXConfig
from apexgen.objectives.base import Objective
from apexgen.run.bench_batches import RandomBatches
from apexgen.run.bench_memory import MemoryBreakdown, breakdown, held_modules, tensor_bytes
from apexgen.run.bench_models import BenchModel, bench_model
from apexgen.run.bench_report import write_report
from apexgen.run.config import ModelConfig, RunConfig
from apexgen.run.estimate import estimate
from apexgen.run.networks import upcast
from apexgen.seeding import seeded_global_rng
from apexgen.students import Networks, prepare_networks
from apexgen.train.distributed import Distributed
from apexgen.train.loop import TrainConfig, Trainer

log = logging.getLogger(__name__)

MIB = 2**20
METHODS = ("flow_matching", "apex", "twinflow", "dmd2", "consistency")
APEX_PRESETS = ("paper", "released")  # benched next to the default (``ours``) as apex_<preset>
# APEX's regression anchor draws a pool of teacher endpoints before training: a few pairs of 2 Euler steps
# here (its memory is the pool's latents, negligible; its time is not a training step).
BENCH_POOL = {"regression_pairs": 8, "regression_steps": 2}
# APEX's shared fake warm-up trains the fake branch alone for its first steps with a second AdamW state on
# the same weights: one warm-up step here, so the state is held and the steps after it are regular steps.
BENCH_FAKE_WARMUP = 1
Processes = Literal["fresh", "shared"]
# glibc's malloc keeps freed blocks in its heap once it has raised its mmap threshold (it does so on the first
# large free), so a CPU process's resident set would count memory already freed: a fixed threshold gives every
# block above it back to the system when freed, and the resident set then tracks the live tensors (on the
# 100M model the breakdown predicted APEX's peak within 0.87× with the default, 1.00× with this).
MEASURED_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


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
    methods: tuple[str, ...] = ()  # variant names to run (``variant_names``); () = all of them

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


def loaded_model(settings: BenchSettings, model: BenchModel) -> DiffusersBackbone:
    """The backbone as a user's model would be loaded: random-init (from torch's global generator, which
    ``run_variant`` seeds), on the device in its dtype."""
    dtype = torch.bfloat16 if settings.precision == "bf16" else torch.float32
    with torch.device(settings.device):  # initialised where it runs: a 0.7B model in seconds on a GPU
        adapter = adapter_class(settings.backbone).from_config(model.config)
    return adapter.to(dtype=dtype)


def build(variant: Variant, settings: BenchSettings, adapter: DiffusersBackbone) -> Objective:
    """The variant's networks around the loaded ``adapter`` (the same initialisation for every variant)."""
    methods = variant.methods()
    if variant.form == "lora + full fake":  # DMD2's three networks with a LoRA generator
        fake = copy.deepcopy(adapter).requires_grad_(True).train()
        student = prepare_networks(adapter, "apex", False, settings.lora_config, methods)
        networks = Networks(student.student, student.teacher, fake)
    else:
        networks = prepare_networks(adapter, variant.method, variant.form == "full", settings.lora_config, methods)
    upcast(p for p in networks.student.parameters() if p.requires_grad)
    objective = build_objective(variant.method, methods, networks.student, networks.teacher, networks.fake)
    objective.to(settings.device)
    upcast(p for group in objective.parameter_groups().values() for p in group)
    return objective


def train_config(settings: BenchSettings) -> TrainConfig:
    return TrainConfig(
        steps=settings.steps,
        batch_size=settings.batch,
        precision=settings.precision,
        log_every=settings.steps,
        progress=False,
        tensorboard=False,
    )


def run_variant(variant: Variant, settings: BenchSettings, model: BenchModel, out: Path | None) -> BenchRow:
    """Load the model, then build the variant's networks and train ``settings.steps`` steps, measuring the
    peak above the memory after loading; in a fresh process, also the breakdown that predicts it."""
    device = torch.device(settings.device)
    with seeded_global_rng(settings.seed, device):  # the model's and the adapters' initialisation
        adapter = loaded_model(settings, model)
        loaded = tensor_bytes([adapter])
        loaded_parameters = sum(p.numel() * p.element_size() for p in adapter.parameters())  # the estimate's basis
        after_loading = current_bytes(device)
        with PeakMemory(device) as building:
            objective = build(variant, settings, adapter)
    batches = RandomBatches(settings, model, objective.student.latent_channels)
    # The trainer's device decides where its noise generator lives and what its ledger synchronises.
    trainer = Trainer(
        objective, batches, train_config(settings), out and out / variant.name, Distributed(device=device)
    )
    result = trainer.run()
    # Every step resets the peak counter (the ledger's per-step peaks): the run's peak is the highest of them.
    peak_mib = max(max(building.peak_bytes, trainer.ledger.peak_bytes) - after_loading, 0) / MIB
    predicted, dry_run = None, None
    if settings.processes == "fresh":
        dry_run = dry_run_estimate_mib(variant, settings, adapter, loaded_parameters)
        rng = torch.Generator(device).manual_seed(settings.seed)
        predicted = breakdown(objective, loaded, settings.steps - 1, next(batches), rng, trainer.autocast)
    row = BenchRow(
        variant.name,
        variant.method,
        variant.form,
        len(objective.schedule(settings.steps - 1)),
        trainer.ledger.summary()["seconds"],
        tensor_bytes(held_modules(objective)) / MIB,
        peak_mib,
        result.trainable_parameters,
        objective.held_parameters(),
        building.method,
        predicted,
        dry_run,
    )
    log.info("%s (%s): %.3f s/step, peak %.0f MiB", variant.name, variant.form, row.seconds_per_step, peak_mib)
    return row


def warm_up(settings: BenchSettings) -> None:
    """Two unrecorded flow-matching steps on the tiny model of the same backbone: the process's one-off
    allocations (the kernels' code and tables paged in, autograd, the optimiser) would otherwise count
    against the first method measured in it."""
    tiny = dataclasses.replace(settings, size="tiny", resolution=None, batch=2, steps=2)
    run_variant(Variant("warm-up", "flow_matching", "full"), tiny, bench_model(settings.backbone, "tiny"), None)


def dry_run_estimate_mib(variant: Variant, settings: BenchSettings, adapter, loaded: int) -> float | None:
    """What ``apexgen train --dry-run`` estimates for the variant (run.estimate), less the loaded model's
    parameters (``loaded`` bytes; the estimate counts parameters, not buffers);
    None for a layout a run cannot choose (DMD2's full fake copy beside a LoRA generator)."""
    if variant.form == "lora + full fake":
        return None
    lora = dataclasses.replace(RunConfig().model.lora, rank=settings.lora_config.rank, alpha=settings.lora_config.alpha)
    model = ModelConfig(settings.backbone, "bench", settings.precision, full_finetune=variant.form == "full", lora=lora)
    config = dataclasses.replace(RunConfig(), model=model, method=variant.method, methods=variant.methods())
    return (estimate(config, adapter.transformer).total_bytes - loaded) / MIB


def fresh_process_row(variant: Variant, settings: BenchSettings, model: BenchModel, out: Path, threads: int):
    torch.set_num_threads(threads)
    warm_up(settings)
    return run_variant(variant, settings, model, out)


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


def run_bench(settings: BenchSettings, out: Path) -> list[BenchRow]:
    """Every chosen variant in turn; writes ``bench.md`` and ``bench.json`` into ``out``."""
    if settings.steps < 2:
        raise ValueError("bench needs at least 2 steps: the first (warm-up) step is excluded from the mean")
    try:
        model = bench_model(settings.backbone, settings.size)
    except ValueError as error:
        raise ConfigError("", f"--size: {error}") from None
    chosen = chosen_variants(settings)
    for variant in chosen:
        require_batch_fits(variant.method, variant.methods(), settings.batch, "--batch")
        require_steady_steps(variant, settings.steps)
    if settings.processes == "shared":
        warm_up(settings)
    rows = []
    for variant in chosen:
        rows.append(measure(variant, settings, model, out))
        gc.collect()
        if settings.device.startswith("cuda"):
            torch.cuda.empty_cache()
    write_report(settings, model, rows, out)
    return rows


def measure(variant: Variant, settings: BenchSettings, model: BenchModel, out: Path) -> BenchRow:
    if settings.processes == "shared":
        return run_variant(variant, settings, model, out)
    spawn = multiprocessing.get_context("spawn")  # a new interpreter: nothing of this process's memory
    with child_environment(MEASURED_ALLOCATOR), ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(fresh_process_row, variant, settings, model, out, torch.get_num_threads()).result()


@contextlib.contextmanager
def child_environment(variables: dict[str, str]) -> Iterator[None]:
    """``variables`` set in the environment that processes started inside the block inherit."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
