"""The ``--dry-run`` memory estimate: what a run holds per process in weights, gradients and optimiser
states, from the transformer's parameter count (its config instantiated on the meta device: no weights are
read) and the copies of the network each method keeps; with ``model.fsdp`` each copy is divided over the
processes, and the weights FSDP gathers at a time are added. Activations, the text encoders and VAE (moved
off the GPU after encoding, the VAE kept for previews), the CUDA context and allocator slack are not in it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from torch import nn

from apexgen.backbones.lora import check_rank, target_pattern
from apexgen.backbones.registry import adapter_class
from apexgen.jobs.real_backbones.config import RunConfig
from apexgen.objectives import STUDENT_METHODS, needs_teacher, uses_fake_network
from apexgen.train.sharding import blocks

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
FP32 = 4
GRADIENT = 4  # fp32 gradients of fp32 trainable weights
ADAMW_STATES = 8  # two fp32 moments per trainable weight
TRAINABLE = FP32 + GRADIENT + ADAMW_STATES
UNITS = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
# FSDP holds a block gathered while it computes and prefetches the next one.
GATHERED_BLOCKS = 2


@dataclass(frozen=True)
class EstimateRow:
    component: str
    parameters: int
    bytes_per_parameter: int
    shards: int = 1  # FSDP: each process holds 1/shards of the row

    @property
    def bytes(self) -> int:
        return math.ceil(self.parameters * self.bytes_per_parameter / self.shards)

    @property
    def label(self) -> str:
        return f"{self.component}, sharded ÷ {self.shards}" if self.shards > 1 else self.component


@dataclass(frozen=True)
class MemoryEstimate:
    method: str
    form: str  # "LoRA rank r" or "full fine-tuning"
    transformer_parameters: int
    trainable_parameters: int
    network_copies: str  # the copies of the transformer the method holds, in words
    rows: list[EstimateRow]
    shards: int = 1  # FSDP: the processes the copies are sharded over

    @property
    def total_bytes(self) -> int:
        return sum(row.bytes for row in self.rows)


def meta_transformer(backbone: str, path: str) -> nn.Module:
    """The backbone's transformer built from ``<path>/transformer/config.json`` on the meta device."""
    from accelerate import init_empty_weights

    transformer_class = adapter_class(backbone).transformer_class
    config = transformer_class.load_config(path, subfolder="transformer")
    with init_empty_weights():
        return transformer_class.from_config(config)


def lora_parameters(adapter, config: RunConfig) -> int:
    """Parameters of one LoRA adapter: rank·(outputs + inputs) per target layer."""
    lora = config.model.lora
    layers = check_rank(adapter.transformer, target_pattern(lora.targets or adapter.lora_targets), lora.rank)
    return sum(lora.rank * (layer.weight.shape[0] + layer.weight[0].numel()) for layer in layers.values())


def head_parameters(feature_dim: int) -> int:
    """DMD2's discriminator head: Linear(D, D), SiLU, Linear(D, 1)."""
    return feature_dim * feature_dim + feature_dim + feature_dim + 1


def estimate(config: RunConfig, transformer: nn.Module, processes: int = 1) -> MemoryEstimate:
    """Per-process memory of ``config``'s method on ``transformer`` (a meta-device instance is enough), run by
    ``processes`` processes (they matter only to ``model.fsdp``)."""
    adapter = adapter_class(config.model.backbone)(transformer)
    total = sum(p.numel() for p in transformer.parameters())
    frozen = BYTES[config.model.dtype]
    shards = processes if config.model.fsdp and config.model.full_finetune else 1
    if config.model.full_finetune:
        rows, copies = full_rows(config, total, frozen, adapter.feature_dim, shards)
        form = "full fine-tuning"
    else:
        rows, copies = lora_rows(config, total, frozen, lora_parameters(adapter, config), adapter.feature_dim)
        form = f"LoRA rank {config.model.lora.rank}"
    if shards > 1:
        rows.append(gathered_row(adapter.sharding_root()))
    trainable = sum(row.parameters for row in rows if row.bytes_per_parameter == TRAINABLE)
    return MemoryEstimate(config.method, form, total, trainable, copies, rows, shards)


def gathered_row(root: nn.Module) -> EstimateRow:
    """What FSDP holds whole at a time: the weights outside the blocks and two blocks, with their gradients."""
    block_sizes = [sum(p.numel() for p in block.parameters()) for block in blocks(root)]
    outside = sum(p.numel() for p in root.parameters()) - sum(block_sizes)
    largest = max(block_sizes, default=0)
    parameters = min(outside + GATHERED_BLOCKS * largest, outside + sum(block_sizes))
    return EstimateRow(
        f"FSDP: gathered at a time (root + {GATHERED_BLOCKS} blocks; fp32 + grad)", parameters, FP32 + GRADIENT
    )


def lora_rows(config: RunConfig, total: int, frozen: int, lora: int, feature_dim: int):
    method, dtype = config.method, config.model.dtype
    rows = [EstimateRow(f"frozen base ({dtype}; the teacher: adapter off)", total, frozen)]
    rows.append(EstimateRow("student LoRA (fp32 + grad + AdamW)", lora, TRAINABLE))
    copies = "1 base, 1 adapter"
    if uses_fake_network(method, config.methods):
        rows.append(EstimateRow("fake-network LoRA, 2nd adapter (fp32 + grad + AdamW)", lora, TRAINABLE))
        copies = "1 base, 2 adapters"
    if method == "consistency":
        rows += [
            EstimateRow(f"EMA target: base copy ({dtype})", total, frozen),
            EstimateRow("EMA target LoRA", lora, FP32),
        ]
        copies = "2 bases (student, EMA target), 2 adapters"
    rows += shared_rows(
        config, lora, feature_dim, reference=[EstimateRow(f"EMA reference: base ({dtype})", total, frozen)]
    )
    return rows, copies


def full_rows(config: RunConfig, total: int, frozen: int, feature_dim: int, shards: int = 1):
    """The copies of the whole transformer; with FSDP each is divided over ``shards`` processes."""
    method, dtype = config.method, config.model.dtype
    rows = [EstimateRow("student (fp32 + grad + AdamW)", total, TRAINABLE, shards)]
    copies = ["student"]
    if needs_teacher(method, config.methods):
        rows.append(EstimateRow(f"frozen teacher copy ({dtype})", total, frozen, shards))
        copies.append("teacher")
    if uses_fake_network(method, config.methods):
        rows.append(EstimateRow("fake-network copy (fp32 + grad + AdamW)", total, TRAINABLE, shards))
        copies.append("fake network")
    if method == "consistency":
        rows.append(EstimateRow("EMA target (fp32)", total, FP32, shards))
        copies.append("EMA target")
    return rows + shared_rows(config, total, feature_dim, reference=[], shards=shards), copy_count(copies)


def copy_count(copies: list[str]) -> str:
    return f"{len(copies)} ({', '.join(copies)})"


def shared_rows(
    config: RunConfig, trainable: int, feature_dim: int, reference: list[EstimateRow], shards: int = 1
) -> list[EstimateRow]:
    """Extras that depend on settings rather than on the form: EMA reference, second optimiser state,
    discriminator head, EMA of the student's trainable weights (with FSDP all but the head are sharded)."""
    rows = []
    method = config.method
    if method in ("apex", "twinflow"):
        settings = getattr(config.methods, method)
        if settings.needs_reference() and settings.reference == "ema":
            rows += reference + [EstimateRow("EMA reference (fp32)", trainable, FP32, shards)]
        if settings.fake_updates and settings.fake_network == "shared":
            rows.append(EstimateRow("AdamW state of the fake-branch updates", trainable, ADAMW_STATES, shards))
    if method == "dmd2" and config.methods.dmd2.uses_discriminator:
        rows.append(EstimateRow("discriminator head (fp32 + grad + AdamW)", head_parameters(feature_dim), TRAINABLE))
    if config.train.ema_decay > 0:
        rows.append(EstimateRow("EMA of the student's trainable weights (fp32)", trainable, FP32, shards))
    return rows


def every_method(config: RunConfig, transformer: nn.Module, processes: int = 1) -> list[MemoryEstimate]:
    """The estimate of each student method with the rest of ``config`` unchanged."""
    return [estimate(dataclasses.replace(config, method=method), transformer, processes) for method in STUDENT_METHODS]


def size_text(size: int) -> str:
    for unit, scale in UNITS:
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def format_estimate(chosen: MemoryEstimate, methods: list[MemoryEstimate], processes: int = 1) -> str:
    """Markdown: the chosen method's components, then every method's total for comparison."""
    lines = [
        f"## Memory estimate per process: {chosen.method}, {chosen.form}",
        "",
        f"transformer: {chosen.transformer_parameters:,} parameters; trainable: {chosen.trainable_parameters:,}",
        "",
        "| component | parameters | bytes/param | memory |",
        "|---|---:|---:|---:|",
    ]
    for r in chosen.rows:
        lines.append(f"| {r.label} | {r.parameters:,} | {r.bytes_per_parameter} | {size_text(r.bytes)} |")
    lines += [f"| **total** | | | **{size_text(chosen.total_bytes)}** |", ""]
    lines += ["| method | copies of the transformer | trainable | memory |", "|---|---|---:|---:|"]
    for m in methods:
        lines.append(f"| {m.method} | {m.network_copies} | {m.trainable_parameters:,} | {size_text(m.total_bytes)} |")
    layout = FSDP_NOTE if chosen.shards > 1 else DATA_PARALLEL_NOTE
    lines += ["", ESTIMATE_NOTE + " " + layout.format(processes=processes)]
    return "\n".join(lines)


ESTIMATE_NOTE = (
    "Estimate of weights, gradients and AdamW states only (16 bytes per trainable parameter: fp32 weight, "
    "gradient and two moments). Not included: activations (they grow with batch size and resolution; "
    "model.gradient_checkpointing cuts them), the text encoders and VAE used for encoding, the CUDA context "
    "and allocator slack."
)
DATA_PARALLEL_NOTE = "Data-parallel: each of the {processes} process(es) holds all of it."
FSDP_NOTE = (
    "FSDP over {processes} processes: each holds its share of the sharded rows, and the weights gathered whole "
    "for the blocks being computed (last row; the frozen copies' are smaller and gathered at other times)."
)
