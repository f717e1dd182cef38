"""The pipelines and the calls of one setting of ``apexgen bench --inference``: the stock pipeline of the
model (its transformer a random-init bench size if asked) for the teacher, a second pipeline on the same
components with the export's scheduler for the student, one pipeline call of each setting, and the same
setting's transformer calls made directly.

The transformer is neither hooked nor wrapped. The calls a setting makes are known from the pipeline's code
(the adapter's ``stock_pipeline.cfg_batched``: CFG as one call of 2× batch per step, or as two calls per step; the tests
count them in the real pipeline with torch.profiler) and are replayed through the backbone adapter, whose
call is the pipeline's (tests/backbones check this), on inputs of the pipeline's shapes: latents of the
image size and the embeddings that the pipeline's own ``encode_prompt`` gives for the same prompt and
negative prompt."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from apexgen.backbones.diffusers_backbone import DiffusersBackbone, call_default
from apexgen.backbones.registry import adapter_class
from apexgen.condition import TextCondition
from apexgen.config import ConfigError
from apexgen.data.encoding import PipelineEncoder
from apexgen.export import sampling_scheduler, sampling_settings
from apexgen.jobs.real_backbones.bench_models import bench_model
from apexgen.jobs.real_backbones.pipeline import DTYPES, PipelineError, exact_size, load_pipeline, sampling_arguments
from apexgen.seeding import seeded_global_rng

log = logging.getLogger(__name__)

# One prompt for every setting; its length sets the text tokens of Qwen-Image and Z-Image (unpadded).
PROMPT = "a photograph of a red fox standing in fresh snow at dawn, soft light"
NEGATIVE_PROMPT = ""  # the unconditional branch of CFG
DEFAULT_RESOLUTION = 1024  # the native size of the five real models, when the folder's transformer is timed


@dataclass(frozen=True)
class InferenceSettings:
    backbone: str
    model: str  # a pipeline folder or hub id of the backbone
    size: str | None = None  # a random-init bench transformer in the folder's pipeline; None: the folder's own
    resolution: int | None = None  # image side in pixels; None: the size's default, else DEFAULT_RESOLUTION
    batch: int = 1  # images per pipeline call
    teacher_steps: int = 50
    repeats: int = 3
    device: str = "cpu"
    precision: str | None = None  # "fp32" or "bf16"; None: bf16 on a GPU, fp32 on a CPU
    seed: int = 0

    @property
    def dtype(self) -> str:
        return self.precision or ("bf16" if self.device.startswith("cuda") else "fp32")

    @property
    def side(self) -> int:
        default = DEFAULT_RESOLUTION if self.size is None else bench_model(self.backbone, self.size).resolution
        return self.resolution or default


@dataclass(frozen=True)
class Setting:
    name: str
    steps: int
    guided: bool  # classifier-free guidance on (the teacher) or off (the student)


@dataclass
class Pipelines:
    """The teacher's stock pipeline and the student's (the same components, the export's scheduler)."""

    teacher: Any
    student: Any
    adapter: DiffusersBackbone  # the shared transformer, called as its pipeline calls it
    export: dict[str, Any]  # the sampling settings an export of this transformer would write


def calls_per_step(backbone: str, setting: Setting) -> int:
    return 2 if setting.guided and not adapter_class(backbone).stock_pipeline.cfg_batched else 1


def batch_per_call(backbone: str, setting: Setting) -> int:
    return 2 if setting.guided and adapter_class(backbone).stock_pipeline.cfg_batched else 1


def load_pipelines(settings: InferenceSettings) -> Pipelines:
    """The stock pipeline of ``settings.model`` (its transformer replaced by a random-init one of the bench
    size, if one is given) on the device, and a second pipeline on the same components for the student."""
    components = {}
    if settings.size is not None:
        config = bench_model(settings.backbone, settings.size).config
        with seeded_global_rng(settings.seed):  # diffusers initialises from the global generator
            transformer = adapter_class(settings.backbone).transformer_class.from_config(config)
        components["transformer"] = transformer.to(DTYPES[settings.dtype]) if settings.dtype != "fp32" else transformer
    teacher = load_pipeline(settings.backbone, settings.model, settings.dtype, **components).to(settings.device)
    adapter = adapter_class(settings.backbone)(teacher.transformer)
    export = sampling_settings(adapter, "full")
    scheduler = sampling_scheduler(export, teacher.scheduler.config)
    student = type(teacher)(**{**teacher.components, "scheduler": scheduler})
    student.set_progress_bar_config(disable=True)
    return Pipelines(teacher, student, adapter, export)


def pipeline_run(pipelines: Pipelines, setting: Setting, settings: InferenceSettings) -> Callable[[], object]:
    """One stock pipeline call of the setting: the teacher with its CFG arguments and a negative prompt, the
    student with the export's arguments for its steps."""
    batch, side = settings.batch, settings.side
    if setting.guided:
        pipeline = pipelines.teacher
        arguments = {**adapter_class(settings.backbone).stock_pipeline.on_arguments(), **exact_size(pipeline)}
        arguments |= {"num_inference_steps": setting.steps, "negative_prompt": [NEGATIVE_PROMPT] * batch}
    else:
        pipeline = pipelines.student
        arguments = sampling_arguments(pipeline, pipelines.export, setting.steps)

    def run():
        generator = torch.Generator().manual_seed(settings.seed)
        with torch.no_grad():
            return pipeline(
                prompt=[PROMPT] * batch, **arguments, height=side, width=side, generator=generator, output_type="pil"
            )

    return run


def call_conditions(pipelines: Pipelines, setting: Setting, settings: InferenceSettings) -> list[TextCondition]:
    """The text of each transformer call of one step, as the pipeline's own ``encode_prompt`` gives it: the
    prompt; with batched CFG the negative and the prompt rows in one call; with two-call CFG, two calls."""
    pipeline, backbone = pipelines.teacher, settings.backbone
    text, length = adapter_class(backbone).encode_text, call_default(pipeline, "max_sequence_length")
    prompts, negatives = [PROMPT] * settings.batch, [NEGATIVE_PROMPT] * settings.batch
    with torch.no_grad():
        if not setting.guided:
            return [text(pipeline, prompts, length)]
        if adapter_class(backbone).stock_pipeline.cfg_batched:
            return [text(pipeline, negatives + prompts, length)]
        return [text(pipeline, prompts, length), text(pipeline, negatives, length)]


def latent_shape(pipelines: Pipelines, settings: InferenceSettings) -> tuple[int, int, int]:
    """(C, h, w) of the latents the pipeline denoises at the image size, checked against the transformer."""
    adapter, side = pipelines.adapter, settings.side
    try:
        shape = PipelineEncoder(pipelines.teacher, settings.backbone).latent_shape(side)
    except ValueError as error:
        raise ConfigError("", f"--resolution {side}: {error}") from None
    if shape[1] % adapter.spatial_multiple:
        multiple = adapter.spatial_multiple * side // shape[1]
        raise ConfigError("", f"--resolution {side}: the {settings.backbone} pipeline needs a multiple of {multiple}")
    if shape[0] != adapter.latent_channels:
        raise PipelineError(
            f"the VAE of {settings.model!r} gives {shape[0]}-channel latents, the transformer takes "
            f"{adapter.latent_channels}: pass a pipeline folder whose VAE fits the transformer, or another --size"
        )
    return shape


def check_text_fits(adapter: DiffusersBackbone, cond: TextCondition, settings: InferenceSettings) -> None:
    width = adapter.config[adapter.text_width_key]
    if cond.tokens.shape[-1] != width:
        raise PipelineError(
            f"the text encoders of {settings.model!r} give {cond.tokens.shape[-1]}-wide tokens, the "
            f"{settings.size or 'folder'} transformer takes {width}: pass a pipeline folder whose text encoders "
            "fit the transformer, or another --size"
        )


def transformer_run(pipelines: Pipelines, setting: Setting, settings: InferenceSettings) -> Callable[[], object]:
    """The setting's transformer calls of one pipeline call, made directly: steps × the calls of a step."""
    adapter, device = pipelines.adapter, settings.device
    dtype = next(adapter.transformer.parameters()).dtype
    conditions = [cond.to(device, dtype) for cond in call_conditions(pipelines, setting, settings)]
    check_text_fits(adapter, conditions[0], settings)
    rows = max(cond.batch_size for cond in conditions)
    generator = torch.Generator().manual_seed(settings.seed)
    latents = torch.randn(rows, *latent_shape(pipelines, settings), generator=generator).to(device, dtype)
    # The cost does not depend on the time: any grid of the setting's length will do.
    times = torch.linspace(1.0, 1.0 / setting.steps, setting.steps, device=device)

    def run():
        with torch.no_grad():
            for t in times:
                for cond in conditions:
                    adapter.velocity(latents[: cond.batch_size], t, cond)

    return run
