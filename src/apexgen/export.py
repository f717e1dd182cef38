"""Export a trained student for its stock diffusers pipeline: the LoRA in diffusers format
(``pytorch_lora_weights.safetensors``, loaded with ``pipeline.load_lora_weights(dir)``) or the full
transformer (``save_pretrained``), and a JSON of the scheduler settings and pipeline arguments under which
the pipeline's steps are exactly our samplers' (``apexgen.sampling``).

Scheduler facts (``FlowMatchEulerDiscreteScheduler``, diffusers 0.42):
* With one step the first σ is 1 for any ``shift``, with or without ``use_dynamic_shifting`` (Flux,
  Qwen-Image and Z-Image pass ``mu``; both time shifts map σ = 1 to 1), so the stock one-step pipeline
  computes x0 = ε − F(ε, 1, c), our one-step sample. Except with ``shift_terminal`` (the terminal
  stretch, which Qwen-Image's released scheduler config uses): one step divides 0 by 0 and gives NaN.
* For a few steps our sampler re-noises x̂0 with fresh noise at each grid time; the scheduler does that
  with ``stochastic_sampling=True`` (x_next = (1 − σ_next)·x̂0 + σ_next·noise), and keeps the grid passed
  as ``sigmas`` unchanged only with ``shift = 1``, no dynamic shifting and no terminal stretch.
So the exported settings replace the scheduler config with ``SAMPLING_SCHEDULER`` and pass the grid as
``sigmas``. The pipeline draws its re-noising noise from its own generator, so few-step samples match
ours in distribution, one-step samples exactly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from apexgen.backbones.diffusers_backbone import DiffusersBackbone
from apexgen.backbones.lora import ADAPTER_NAME, has_lora
from apexgen.backbones.registry import backbone_name
from apexgen.sampling import few_step_times

log = logging.getLogger(__name__)

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
TRANSFORMER_FOLDER = "transformer"
SETTINGS_FILE = "apexgen_sampling.json"
SETTINGS_FORMAT = 1
EXPORTED_STEPS = (1, 2, 4)

# FlowMatchEulerDiscreteScheduler settings under which its steps are our samplers' (see the module doc).
SAMPLING_SCHEDULER: dict[str, Any] = {
    "shift": 1.0,
    "use_dynamic_shifting": False,
    "shift_terminal": None,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "invert_sigmas": False,
    "stochastic_sampling": True,
}


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    weights: Path  # the LoRA file or the transformer folder
    settings: Path


def pipeline_arguments(backbone: DiffusersBackbone) -> dict[str, Any]:
    """Pipeline call arguments with classifier-free guidance off (and the distilled guidance input, if any)."""
    arguments = type(backbone).stock_pipeline.off_arguments()
    if getattr(backbone.config, "guidance_embeds", False) and hasattr(backbone, "guidance_scale"):
        arguments["guidance_scale"] = backbone.guidance_scale
    return arguments


def sampling_settings(backbone: DiffusersBackbone, weights: str) -> dict[str, Any]:
    """The JSON-ready settings: pipeline, scheduler, call arguments and the σ grid of each step count."""
    name = backbone_name(backbone)
    return {
        "format": SETTINGS_FORMAT,
        "backbone": name,
        "pipeline": type(backbone).stock_pipeline.name,
        "weights": weights,
        "scheduler": {"class_name": "FlowMatchEulerDiscreteScheduler", "config": SAMPLING_SCHEDULER},
        "pipeline_arguments": pipeline_arguments(backbone),
        "steps": {str(n): {"num_inference_steps": n, "sigmas": few_step_times(n)} for n in EXPORTED_STEPS},
    }


def write_settings(directory: Path, settings: dict[str, Any]) -> Path:
    path = Path(directory) / SETTINGS_FILE
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path


def read_settings(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not an apexgen export")
    return json.loads(path.read_text())


def sampling_scheduler(settings: dict[str, Any], base_config=None):
    """The scheduler the settings name, built on ``base_config`` (e.g. ``pipeline.scheduler.config``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    overrides = settings["scheduler"]["config"]
    if base_config is None:
        return FlowMatchEulerDiscreteScheduler(**overrides)
    return FlowMatchEulerDiscreteScheduler.from_config(base_config, **overrides)


def export_lora(backbone: DiffusersBackbone, directory: str | Path) -> ExportResult:
    """Write the student's LoRA as ``pytorch_lora_weights.safetensors`` with its peft config as metadata,
    through the pipeline class's own ``save_lora_weights``, and the sampling settings."""
    from peft.utils import get_peft_model_state_dict

    if not has_lora(backbone):
        raise ValueError("the backbone has no LoRA adapter to export; use export_full for a fully fine-tuned model")
    directory = Path(directory)
    transformer = backbone.transformer
    pipeline = type(backbone).pipeline_class()
    pipeline.save_lora_weights(
        directory,
        transformer_lora_layers=get_peft_model_state_dict(transformer, adapter_name=ADAPTER_NAME),
        transformer_lora_adapter_metadata=transformer.peft_config[ADAPTER_NAME].to_dict(),
        weight_name=LORA_WEIGHTS,
    )
    settings = write_settings(directory, sampling_settings(backbone, "lora"))
    log.info("exported LoRA to %s", directory / LORA_WEIGHTS)
    return ExportResult(directory, directory / LORA_WEIGHTS, settings)


def export_full(
    backbone: DiffusersBackbone, directory: str | Path, weights: dict[str, Tensor] | None = None
) -> ExportResult:
    """Write the whole transformer with ``save_pretrained`` (load it with the transformer class's
    ``from_pretrained(directory, subfolder="transformer")``) and the sampling settings. ``weights``: the
    transformer's whole state dict, for a transformer whose own tensors are shards (gathered from FSDP)."""
    if has_lora(backbone):
        raise ValueError("the backbone carries a LoRA adapter: export it with export_lora")
    directory = Path(directory)
    transformer = backbone.transformer if weights is None else transformer_around(backbone.transformer, weights)
    transformer.save_pretrained(directory / TRANSFORMER_FOLDER)
    settings = write_settings(directory, sampling_settings(backbone, "full"))
    log.info("exported the transformer to %s", directory / TRANSFORMER_FOLDER)
    return ExportResult(directory, directory / TRANSFORMER_FOLDER, settings)


def transformer_around(transformer: nn.Module, weights: dict[str, Tensor]) -> nn.Module:
    """A transformer of ``transformer``'s class and config holding ``weights`` themselves: built on the meta
    device, then given the tensors (no second copy of the weights is made)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        copy = type(transformer).from_config(transformer.config)
    copy.load_state_dict(weights, assign=True)
    return copy
