"""``apexgen train``: distil a one-step student from a real backbone's stock pipeline.

Everything that can be wrong is checked before any work: the settings (``RunConfig.check``), the output
folder, the data's index, the pipeline's components and the LoRA rank. Then the data is encoded by the
pipeline's own encoders (the main process first, so that the others find its cache), the text encoders
leave the GPU, the method's networks are built (fp32 trainable weights, frozen weights in ``model.dtype``)
and the shared :class:`Trainer` runs them with previews, rotated checkpoints and ``--resume``. At the end
the student is exported for the stock pipeline into ``<out>/export``. With ``model.fsdp`` the method's
copies of the backbone are sharded over the processes (``apexgen.train.sharding``). A folder that holds a run
is refused unless it is resumed or overwritten (``apexgen.train.run_folder``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from apexgen.backbones.registry import adapter_class
from apexgen.batch import Batch, DataStream
from apexgen.condition import TextCondition
from apexgen.config import to_dict
from apexgen.data.encoding import PipelineEncoder
from apexgen.data.prepare import data_stream, prepare_dataset
from apexgen.data.readers import open_reader
from apexgen.data.stream import stack_texts
from apexgen.export import ExportResult, export_full, export_lora, sampling_settings
from apexgen.jobs.real_backbones.config import RunConfig
from apexgen.jobs.real_backbones.networks import check_lora_rank, prepare_student, upcast
from apexgen.jobs.real_backbones.pipeline import load_pipeline, move_text_encoders
from apexgen.jobs.real_backbones.preview import Previewer
from apexgen.objectives import build_objective
from apexgen.objectives.base import Objective
from apexgen.seeding import OBJECTIVE_INIT, seeded_global_rng
from apexgen.train import job
from apexgen.train.distributed import Distributed
from apexgen.train.loop import Trainer
from apexgen.train.run_folder import EXPORT_FOLDER, check_run_folder

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"


class RunError(RuntimeError):
    """A run that cannot start as asked (e.g. its output folder holds another run)."""


@dataclass
class RunResult:
    out: Path
    steps: int
    seconds: float
    peak_memory_mb: float
    trainable_parameters: int
    held_parameters: int
    export: Path | None  # None on processes other than the main one


class DeviceStream(DataStream):
    """The encoded stream's batches moved to the device, in fp32 (autocast picks the compute dtype)."""

    def __init__(self, stream: DataStream, device: torch.device):
        self.stream, self.device = stream, device

    def __next__(self) -> Batch:
        batch = next(self.stream)
        move = dict(device=self.device, dtype=torch.float32)
        return Batch(batch.x0.to(**move), batch.cond.to(**move), batch.null_cond.to(**move))

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)


@contextlib.contextmanager
def main_process_first(distributed: Distributed) -> Iterator[None]:
    """The main process runs the block first (e.g. builds the data cache); the others wait, then run it."""
    if not distributed.is_main:
        distributed.barrier()
    yield
    if distributed.is_main:
        distributed.barrier()


def encode_data(config: RunConfig, pipeline, distributed: Distributed):
    """The rank's stream of encoded data and the preview prompts' embeddings (None without prompts)."""
    if distributed.active and config.data.cache_dir is None:
        log.warning("data.cache_dir is not set: each of the %d processes encodes all the data", distributed.world_size)
    move_text_encoders(pipeline, distributed.device)
    pipeline.vae.to(distributed.device)
    with main_process_first(distributed):
        dataset = prepare_dataset(config.data, pipeline, config.model.backbone)
    stream = data_stream(config.data, dataset, config.train.batch_size, distributed.rank, distributed.world_size)
    cond = None
    if config.samples.prompts:
        encoder = PipelineEncoder(pipeline, config.model.backbone, config.data.max_sequence_length)
        texts = encoder.encode_prompts(config.samples.prompts)
        cond = stack_texts(texts, max(text.tokens.shape[0] for text in texts)).to(distributed.device)
    move_text_encoders(pipeline, "cpu")
    return stream, cond


def training_objective(config: RunConfig, adapter, device: torch.device) -> Objective:
    networks = prepare_student(config, adapter, device)
    with seeded_global_rng(OBJECTIVE_INIT.seed(config.train.seed), device):  # e.g. DMD2's discriminator head
        objective = build_objective(config.method, config.methods, networks.student, networks.teacher, networks.fake)
    objective.to(device)
    upcast(p for group in objective.parameter_groups().values() for p in group)  # e.g. DMD2's fake copy
    return objective


def write_config(out: Path, config: RunConfig, resume: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / CONFIG_FILE
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    if resume and path.is_file() and path.read_text() != text:
        log.warning("resuming with settings that differ from %s; it is replaced by the current ones", path)
    path.write_text(text)


def previewer(
    config: RunConfig, pipeline, adapter, cond: TextCondition | None, out: Path, distributed: Distributed
) -> Previewer | None:
    """Previews of every process (the main one writes them), or None without prompts."""
    if cond is None:
        return None
    settings = sampling_settings(adapter, "full" if config.model.full_finetune else "lora")
    autocast = None if config.model.dtype == "fp32" and config.train.precision == "fp32" else torch.bfloat16
    resolution = config.data.resolution
    folder = out / "previews"
    return Previewer(
        pipeline,
        config.model.backbone,
        settings,
        cond,
        config.samples,
        resolution,
        folder,
        autocast,
        distributed.is_main,
    )


def run_training(config: RunConfig, resume: bool = False, overwrite: bool = False) -> RunResult:
    out = Path(config.out).expanduser()
    check_run_folder(out, resume, overwrite)
    open_reader(config.data)  # the data's index is checked before any weights are read
    pipeline = load_pipeline(config.model.backbone, config.model.path, config.model.dtype)
    adapter = adapter_class(config.model.backbone)(pipeline.transformer)
    if not config.model.full_finetune:
        check_lora_rank(adapter, config.model.lora)
    # accelerate joins CPU processes into a group only when asked for the CPU (else each runs alone)
    distributed = Distributed.from_environment(cpu=not torch.cuda.is_available(), fsdp=config.model.fsdp)
    stream, cond = encode_data(config, pipeline, distributed)
    objective = training_objective(config, adapter, distributed.device)
    preview = previewer(config, pipeline, adapter, cond, out, distributed)
    stream = DeviceStream(stream, distributed.device)
    trainer = Trainer(objective, stream, config.train, out, distributed, preview, config.method, "train.steps")
    job.begin(trainer, resume, overwrite)
    if distributed.is_main:
        write_config(out, config, resume)
    result = trainer.run()
    details = {
        "backbone": config.model.backbone,
        "model": config.model.path,
        "method": config.method,
        "form": "full" if config.model.full_finetune else "lora",
    }
    exported = job.finish(
        trainer, result, lambda: export_student(config, adapter, out / EXPORT_FOLDER, distributed), details
    )
    if exported is not None:
        log.info("exported the student to %s", exported.directory)
    distributed.barrier()
    held = objective.held_parameters()
    export = exported.directory if exported is not None else None
    return RunResult(
        out, result.steps, result.seconds, result.peak_memory_mb, result.trainable_parameters, held, export
    )


def export_student(config: RunConfig, adapter, directory: Path, distributed: Distributed) -> ExportResult | None:
    """The student's export, written by the main process (None elsewhere); a fully fine-tuned one from its
    whole weights (gathered by every process when sharded)."""
    if not config.model.full_finetune:
        return export_lora(adapter, directory) if distributed.is_main else None
    weights = distributed.model_state(adapter.transformer)
    return export_full(adapter, directory, weights) if distributed.is_main else None
