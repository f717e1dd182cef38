"""``apexgen bench``: every method on the same random-init backbone and the same batches (random latents and
text conditions), a few steps each through the shared :class:`Trainer`, side by side: mean step time (the
first step excluded, from the ledger), the weights each method holds, the training peak memory above them
(CUDA allocator on a GPU, process RSS on a CPU: approximate there), trainable and held parameters.

Without ``--lora`` every method fine-tunes the whole model (next to a frozen teacher copy). With it every
method trains a LoRA; DMD2 runs twice: with its fake score as a second adapter (one base, two adapters) and
with the fake score as a full trainable copy, DMD2's own three-network layout."""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import logging
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from apexgen.backbones.lora import LoRAConfig
from apexgen.backbones.registry import backbone_spec
from apexgen.batch import Batch, DataStream
from apexgen.condition import TextCondition
from apexgen.objectives import MethodsConfig, build_objective
from apexgen.objectives.base import Objective
from apexgen.run.bench_models import BenchModel, bench_model
from apexgen.run.networks import upcast
from apexgen.students import Networks, prepare_networks
from apexgen.train.distributed import Distributed
from apexgen.train.loop import TrainConfig, Trainer

log = logging.getLogger(__name__)

MIB = 2**20
METHODS = ("flow_matching", "apex", "twinflow", "dmd2", "consistency")
TEXT_WIDTH = {"sd3": "joint_attention_dim", "flux": "joint_attention_dim", "qwen_image": "joint_attention_dim"}
TEXT_WIDTH |= {"sana": "caption_channels", "z_image": "cap_feat_dim"}
POOLED = ("sd3", "flux")  # backbones that take a pooled text vector (and no text mask)


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


def variants(lora: bool) -> list[Variant]:
    if not lora:
        return [Variant(method, method, "full") for method in METHODS]
    rows = [Variant(method, method, "lora") for method in METHODS if method != "dmd2"]
    rows.insert(3, Variant("dmd2", "dmd2", "lora"))
    rows.insert(4, Variant("dmd2_full_fake", "dmd2", "lora + full fake"))
    return rows


class RandomBatches(DataStream):
    """The same random batches for every method: latents and text conditions drawn from a seeded generator."""

    def __init__(self, settings: BenchSettings, model: BenchModel, latent_channels: int):
        self.settings, self.model, self.channels = settings, model, latent_channels
        self.generator = torch.Generator().manual_seed(settings.seed)

    def condition(self, zero: bool = False) -> TextCondition:
        settings, config = self.settings, self.model.config
        shape = (settings.batch, self.model.text_tokens, config[TEXT_WIDTH[settings.backbone]])
        tokens = torch.zeros(shape) if zero else torch.randn(shape, generator=self.generator)
        if settings.backbone in POOLED:
            pooled = torch.zeros(settings.batch, config["pooled_projection_dim"])
            return TextCondition(tokens, pooled if zero else pooled.normal_(generator=self.generator))
        return TextCondition(tokens, None, torch.ones(shape[:2], dtype=torch.bool))

    def __next__(self) -> Batch:
        side = (self.settings.resolution or self.model.resolution) // self.model.vae_factor
        x0 = torch.randn(self.settings.batch, self.channels, side, side, generator=self.generator)
        batch = Batch(x0, self.condition(), self.condition(zero=True))
        device = torch.device(self.settings.device)
        return Batch(batch.x0.to(device), batch.cond.to(device), batch.null_cond.to(device))


def build(variant: Variant, settings: BenchSettings, model: BenchModel) -> Objective:
    """The variant's networks on a fresh backbone (the same initialisation for every variant)."""
    torch.manual_seed(settings.seed)
    dtype = torch.bfloat16 if settings.precision == "bf16" else torch.float32
    adapter = backbone_spec(settings.backbone).adapter_class().from_config(model.config)
    adapter.to(device=settings.device, dtype=dtype)
    if variant.form == "full":
        networks = prepare_networks(adapter, variant.method, True, settings.lora_config)
    elif variant.form == "lora":
        networks = prepare_networks(adapter, variant.method, False, settings.lora_config)
    else:  # DMD2's three networks with a LoRA generator: a trainable copy of the base is the fake score
        fake = copy.deepcopy(adapter).requires_grad_(True).train()
        student = prepare_networks(adapter, "apex", False, settings.lora_config)
        networks = Networks(student.student, student.teacher, fake)
    upcast(p for p in networks.student.parameters() if p.requires_grad)
    objective = build_objective(variant.method, MethodsConfig(), networks.student, networks.teacher, networks.fake)
    objective.to(settings.device)
    upcast(p for group in objective.parameter_groups().values() for p in group)
    return objective


def weights_mib(objective: Objective) -> float:
    """Bytes of every parameter and buffer the method's networks hold, shared tensors once."""
    tensors = {}
    for module in [*objective.networks().values(), objective]:
        for tensor in [*module.parameters(), *module.buffers()]:
            tensors[id(tensor)] = tensor
    return sum(t.numel() * t.element_size() for t in tensors.values()) / MIB


def run_variant(variant: Variant, settings: BenchSettings, model: BenchModel, out: Path | None) -> BenchRow:
    objective = build(variant, settings, model)
    channels = objective.student.latent_channels
    config = TrainConfig(
        steps=settings.steps,
        batch_size=settings.batch,
        precision=settings.precision,
        log_every=settings.steps,
        progress=False,
        tensorboard=False,
    )
    # The trainer's device decides where its noise generator lives, what its ledger synchronises and whether
    # peak memory is the CUDA allocator's or the process RSS.
    placement = Distributed(device=torch.device(settings.device))
    batches = RandomBatches(settings, model, channels)
    trainer = Trainer(objective, batches, config, out and out / variant.name, distributed=placement)
    result = trainer.run()
    row = BenchRow(
        variant.name,
        variant.method,
        variant.form,
        len(objective.schedule(0)),
        trainer.ledger.summary()["seconds"],
        weights_mib(objective),
        result.peak_memory_mb,
        result.trainable_parameters,
        objective.held_parameters(),
        result.memory_method,
    )
    log.info(
        "%s (%s): %.3f s/step, %.0f MiB weights", variant.name, variant.form, row.seconds_per_step, row.weights_mib
    )
    return row


def run_bench(settings: BenchSettings, out: Path) -> list[BenchRow]:
    """Every variant in turn; writes ``bench.md`` and ``bench.json`` into ``out``."""
    if settings.steps < 2:
        raise ValueError("bench needs at least 2 steps: the first (warm-up) step is excluded from the mean")
    model = bench_model(settings.backbone, settings.size)
    # One unrecorded run first: the process's one-off allocations (kernels, autograd, allocator pools) would
    # otherwise count against the first method.
    run_variant(variants(settings.lora)[0], dataclasses.replace(settings, steps=2), model, None)
    rows = []
    for variant in variants(settings.lora):
        rows.append(run_variant(variant, settings, model, out))
        gc.collect()
        if settings.device.startswith("cuda"):
            torch.cuda.empty_cache()
    write_report(settings, model, rows, out)
    return rows


def format_table(rows: list[BenchRow]) -> str:
    lines = [
        "| method | form | updates/step | s/step | weights MiB | training peak MiB | trainable | held |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.form} | {r.updates_per_step} | {r.seconds_per_step:.4f} | {r.weights_mib:.1f} | "
            f"{r.training_peak_mib:.1f} | {r.trainable_parameters:,} | {r.held_parameters:,} |"
        )
    return "\n".join(lines)


def environment(device: str) -> dict:
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or "cpu"
    return {"torch": torch.__version__, "device": device, "device_name": name, "threads": torch.get_num_threads()}


def write_report(settings: BenchSettings, model: BenchModel, rows: list[BenchRow], out: Path) -> None:
    side = settings.resolution or model.resolution
    header = (
        f"# apexgen bench: {settings.backbone} ({settings.size}), batch {settings.batch}, {side}² images "
        f"({side // model.vae_factor}² latents), {settings.steps} steps, {settings.precision} on {settings.device}"
    )
    notes = (
        "s/step: mean over the steps after the first; an update is one optimiser step (DMD2 updates its critic "
        "several times per generator update). weights: parameters and buffers the method's networks hold. "
        "training peak: memory above those weights during training (gradients, optimiser states, activations)."
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text("\n\n".join([header, format_table(rows), notes]) + "\n")
    report = {
        "settings": asdict(settings),
        "environment": environment(settings.device),
        "rows": [asdict(r) for r in rows],
    }
    (out / "bench.json").write_text(json.dumps(report, indent=1))
