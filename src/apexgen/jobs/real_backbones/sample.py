"""``apexgen sample``: an exported student run by the stock diffusers pipeline, exactly as a user would run
it (``from_pretrained``, ``load_lora_weights`` or the exported transformer, the exported scheduler settings
and call arguments), and the image generation that training previews share."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from apexgen.backbones.registry import adapter_class
from apexgen.config import ConfigError
from apexgen.export import LORA_WEIGHTS, TRANSFORMER_FOLDER, read_settings, sampling_scheduler
from apexgen.jobs.real_backbones.pipeline import DTYPES, PipelineError, load_pipeline, sampling_arguments
from apexgen.jobs.sample_request import SampleRequest
from apexgen.seeding import seeded_global_rng

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleResult:
    images: list[Path]
    settings: dict[str, Any]


def generate(
    pipeline, settings: dict[str, Any], steps: int, seed: int | Sequence[int], resolution: int | None, **prompt
) -> list:
    """PIL images from the pipeline with the exported arguments for ``steps`` steps; ``prompt`` holds either
    ``prompt=`` (text, encoded by the pipeline) or precomputed embeddings (the adapter's ``prompt_arguments``).
    One ``seed`` draws the whole batch's noise; a list of seeds draws each image's from its own seed (the
    global generator, from which most pipelines draw their few-step re-noising, starts from the first)."""
    size = {} if resolution is None else {"height": resolution, "width": resolution}
    seeds = [seed] if isinstance(seed, int) else list(seed)
    generators = [torch.Generator().manual_seed(value) for value in seeds]
    with seeded_global_rng(seeds[0], pipeline.device), torch.no_grad():
        output = pipeline(
            **prompt,
            **sampling_arguments(pipeline, settings, steps),
            **size,
            generator=generators[0] if isinstance(seed, int) else generators,
            output_type="pil",
        )
    return output.images


def export_settings(export: Path) -> dict[str, Any]:
    """The sampling settings of an export folder (``apexgen.export``), or a PipelineError saying what to pass."""
    try:
        return read_settings(export)
    except FileNotFoundError as error:
        raise PipelineError(f"{error}; pass the export folder of a run (<out>/export or `apexgen export`)") from None


def check_steps(settings: dict[str, Any], steps: int, export: Path) -> None:
    """``steps`` must be a step count the export has settings for."""
    exported = sorted(settings["steps"], key=int)
    if str(steps) not in settings["steps"]:
        raise ConfigError(
            "", f"--steps {steps}: the export {export} has settings for {', '.join(exported)} step(s); pass one of them"
        )


def load_lora(pipeline, export: Path, model: str) -> None:
    """``load_lora_weights``, insisting that every LoRA matrix of the file found its layer (peft skips
    unmatched keys with a warning only)."""
    weights = export / LORA_WEIGHTS
    mismatch = f"{weights} does not fit the transformer of {model!r}: was it trained on another model?"
    try:
        pipeline.load_lora_weights(str(export), weight_name=LORA_WEIGHTS)
    except (ValueError, RuntimeError, KeyError, OSError, SafetensorError) as error:
        raise PipelineError(f"{mismatch} ({type(error).__name__}: {str(error)[:300]})") from None
    expected = sum(1 for key in load_file(str(weights)) if "lora_" in key)
    loaded = sum(1 for name, _ in pipeline.transformer.named_parameters() if "lora_" in name)
    if expected == 0 or loaded != expected:
        raise PipelineError(f"{mismatch} ({expected} LoRA matrices in the file, {loaded} loaded)")


def student_pipeline(model: str, export: Path, dtype: str, device: str):
    """The stock pipeline of ``model`` carrying the student exported to ``export`` and its sampling scheduler."""
    settings = export_settings(export)
    backbone = settings["backbone"]
    if settings["weights"] == "full":
        transformer_class = adapter_class(backbone).transformer_class
        try:
            transformer = transformer_class.from_pretrained(str(export / TRANSFORMER_FOLDER), dtype=DTYPES[dtype])
        except (OSError, ValueError, RuntimeError, SafetensorError) as error:
            raise PipelineError(
                f"the exported transformer in {export / TRANSFORMER_FOLDER} could not be read "
                f"({type(error).__name__}: {str(error)[:300]}); export it again with `apexgen export --run <out>`"
            ) from None
        pipeline = load_pipeline(backbone, model, dtype, transformer=transformer)
    else:
        pipeline = load_pipeline(backbone, model, dtype)
        load_lora(pipeline, export, model)
    pipeline.scheduler = sampling_scheduler(settings, pipeline.scheduler.config)
    return pipeline.to(device), settings


def run_sample(
    model: str, export: Path, request: SampleRequest, resolution: int | None = None, dtype: str = "fp32"
) -> SampleResult:
    """Sample the request's images and save them as its ``out`` (several: ``<stem>_<i><suffix>``)."""
    prompt, out, steps, images, seed = request.prompt, request.out, request.steps, request.images, request.seed
    check_steps(export_settings(export), steps, export)
    pipeline, settings = student_pipeline(model, export, dtype, request.device)
    pictures = generate(pipeline, settings, steps, seed, resolution, prompt=[prompt] * images)
    paths = [out] if images == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(images)]
    out.parent.mkdir(parents=True, exist_ok=True)
    for picture, path in zip(pictures, paths, strict=True):
        picture.save(path)
    log.info("%d image(s) of %r with %d step(s): %s", images, prompt, steps, ", ".join(map(str, paths)))
    return SampleResult(paths, settings)
