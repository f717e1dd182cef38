"""``apexgen sample --teacher``: a student of ``apexgen distill`` sampled from a prompt by the stock
``StableDiffusion3Pipeline``, as a user of diffusers would run it: the teacher's transformer, the export's
LoRA through ``load_lora_weights`` (or its fully fine-tuned transformer), the exported scheduler, steps and
call arguments. Two things differ from a latent-space SD3 model, because this one was trained in pixel
space on MiniLM prompts: the prompt is encoded by MiniLM and passed as ``prompt_embeds`` /
``pooled_prompt_embeds`` (the pipeline has no text encoders), and there is no VAE, so the pipeline returns
its denoised "latents" (``output_type="latent"``), which are the images (grey or RGB, as the teacher was
trained), saved as one PNG grid."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from apexgen.backbones.registry import pipeline_class
from apexgen.export import LORA_WEIGHTS, read_settings, sampling_scheduler
from apexgen.jobs.pixel.generate import noise_for
from apexgen.jobs.pixel.images import save_grid
from apexgen.jobs.pixel.models import TEACHER_INFO, ModelFileError, check_lora_loaded, load_teacher
from apexgen.jobs.sample_request import SampleRequest
from apexgen.text import DEFAULT_MAX_TOKENS, MiniLMEncoder

log = logging.getLogger(__name__)

GRID_COLUMNS = 8
# The SD3 pipeline's components this pixel-space model has no use for (prompts come as MiniLM embeddings).
ABSENT_COMPONENTS = (
    "vae",
    "text_encoder",
    "tokenizer",
    "text_encoder_2",
    "tokenizer_2",
    "text_encoder_3",
    "tokenizer_3",
)


@dataclass(frozen=True)
class GridSample:
    grid: Path
    images: torch.Tensor  # (N, C, H, W) in [-1, 1]
    settings: dict[str, Any]


def export_settings(export: Path) -> dict[str, Any]:
    """The export's sampler settings; a run folder, another backbone's export or no export is named."""
    try:
        settings = read_settings(export)
    except FileNotFoundError:
        inside = " (it is a run folder: pass its export/ subfolder)" if (export / "export").is_dir() else ""
        raise ModelFileError(
            f"{export} is not an apexgen export{inside}: pass the export folder of `apexgen distill` "
            "(<out>/export, e.g. runs/demo/apex/export)"
        ) from None
    if settings["backbone"] != "sd3":
        raise ModelFileError(
            f"{export} holds a {settings['backbone']} student of a diffusers model, not one of an apexgen teacher: "
            "sample it with --model <the base model's folder or hub id>"
        )
    return settings


def stock_pipeline(teacher_dir: Path, export: Path, settings: dict[str, Any]):
    """``StableDiffusion3Pipeline`` carrying the student: the teacher with the export's LoRA loaded by
    ``load_lora_weights``, or the export's own transformer."""
    pipeline_type = pipeline_class("sd3")
    scheduler = sampling_scheduler(settings)
    if settings["weights"] == "full":
        transformer = load_teacher(export).transformer
        return pipeline_type(transformer=transformer, scheduler=scheduler, **dict.fromkeys(ABSENT_COMPONENTS))
    teacher = load_teacher(teacher_dir)
    pipeline = pipeline_type(transformer=teacher.transformer, scheduler=scheduler, **dict.fromkeys(ABSENT_COMPONENTS))
    try:
        pipeline.load_lora_weights(str(export), weight_name=LORA_WEIGHTS)
    except (ValueError, RuntimeError, KeyError, OSError) as error:
        raise ModelFileError(
            f"{export / LORA_WEIGHTS} does not fit the teacher in {teacher_dir} ({type(error).__name__}: "
            f"{str(error)[:300]}); pass the --teacher it was distilled from"
        ) from None
    check_lora_loaded(teacher, export / LORA_WEIGHTS)
    return pipeline


def max_tokens(teacher_dir: Path) -> int:
    """The prompt length the teacher was trained with (its teacher.json), else the default."""
    info = teacher_dir / TEACHER_INFO
    try:
        return int(json.loads(info.read_text())["config"]["text"]["max_tokens"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_MAX_TOKENS


@torch.no_grad()
def sample_grid(teacher_dir: Path, export: Path, request: SampleRequest) -> GridSample:
    """The request's images (image i from the noise of its seed and index i, as ``apexgen eval`` draws it)
    from the stock pipeline, saved as one grid of up to 8 columns."""
    prompt, steps, images, seed, device = request.prompt, request.steps, request.images, request.seed, request.device
    settings = export_settings(export)
    if str(steps) not in settings["steps"]:
        raise ModelFileError(
            f"{export} has sampler settings for {sorted(settings['steps'], key=int)} steps, not {steps}"
        )
    pipeline = stock_pipeline(teacher_dir, export, settings).to(device)
    pipeline.set_progress_bar_config(disable=True)
    config = pipeline.transformer.config
    noise = noise_for(torch.arange(images), seed, (config.in_channels, config.sample_size, config.sample_size))
    cond = MiniLMEncoder(max_tokens(teacher_dir)).encode([prompt] * images).to(device)
    output = pipeline(
        latents=noise.to(device),
        prompt_embeds=cond.tokens,
        pooled_prompt_embeds=cond.pooled,
        **settings["pipeline_arguments"],
        **settings["steps"][str(steps)],
        generator=torch.Generator(device).manual_seed(seed),
        output_type="latent",
    )
    pictures = output.images.float().clamp(-1, 1).cpu()
    grid = save_grid(pictures, min(images, GRID_COLUMNS), request.out)
    log.info("%d image(s) of %r with %d step(s) of the stock StableDiffusion3Pipeline: %s", images, prompt, steps, grid)
    return GridSample(grid, pictures, settings)
