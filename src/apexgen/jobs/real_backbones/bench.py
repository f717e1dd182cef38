"""``apexgen bench``: every method on the same random-init backbone and the same batches (random latents and
text conditions), a few steps each through the shared :class:`Trainer`, side by side: mean step time (the
first step excluded, from the ledger), the training peak memory above the loaded model (CUDA allocator on a
GPU, the process's resident-set high-water mark on a CPU) next to the breakdown that predicts it
(``bench_memory``), trainable and held parameters.

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
from pathlib import Path

import torch

from apexgen.backbones.diffusers_backbone import DiffusersBackbone
from apexgen.backbones.registry import adapter_class
from apexgen.config import ConfigError
from apexgen.jobs.real_backbones.bench_batches import RandomBatches
from apexgen.jobs.real_backbones.bench_memory import breakdown, held_modules, tensor_bytes
from apexgen.jobs.real_backbones.bench_models import BenchModel, bench_model
from apexgen.jobs.real_backbones.bench_report import write_report
from apexgen.jobs.real_backbones.bench_settings import (
    BenchRow,
    BenchSettings,
    Variant,
    chosen_variants,
    require_steady_steps,
)
from apexgen.jobs.real_backbones.config import ModelConfig, RunConfig
from apexgen.jobs.real_backbones.estimate import estimate
from apexgen.jobs.real_backbones.networks import upcast
from apexgen.memory import PeakMemory, current_bytes
from apexgen.objectives import build_objective, require_batch_fits
from apexgen.objectives.base import Objective
from apexgen.seeding import seeded_global_rng
from apexgen.students import Networks, prepare_networks
from apexgen.train.distributed import Distributed
from apexgen.train.loop import TrainConfig, Trainer

log = logging.getLogger(__name__)

MIB = 2**20
# glibc's malloc keeps freed blocks in its heap once it has raised its mmap threshold (it does so on the first
# large free), so a CPU process's resident set would count memory already freed: a fixed threshold gives every
# block above it back to the system when freed, and the resident set then tracks the live tensors (on the
# 100M model the breakdown predicted APEX's peak within 0.87× with the default, 1.00× with this).
MEASURED_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


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
