"""The stock diffusers pipeline of a backbone, loaded with ``from_pretrained`` after its folder was checked
(a missing component is named with what the backbone needs), and the arguments under which it samples
an exported student: the exported scheduler and steps (prompt embeddings in each pipeline's own form are
the adapter's ``prompt_arguments``)."""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

import torch

from apexgen.backbones.registry import BACKBONES, adapter_class, pipeline_class

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODEL_INDEX = "model_index.json"
TEXT_ENCODER_PREFIX = "text_encoder"


class PipelineError(RuntimeError):
    """A model folder or hub id that is not a usable pipeline of the backbone; the message says what is
    missing and how to fix it."""


def required_components(pipeline_type: type) -> list[str]:
    """The components the pipeline cannot run without (its constructor's arguments, less the optional ones)."""
    names = [name for name in inspect.signature(pipeline_type.__init__).parameters if name != "self"]
    optional = set(getattr(pipeline_type, "_optional_components", ()))
    return [name for name in names if name not in optional]


def backbone_of_pipeline(class_name: str) -> str | None:
    return next((name for name in BACKBONES if adapter_class(name).stock_pipeline.name == class_name), None)


def check_folder(path: Path, backbone: str) -> None:
    """A local pipeline folder must hold model_index.json of the backbone's pipeline and a subfolder per
    required component."""
    adapter = adapter_class(backbone)
    required = required_components(adapter.pipeline_class())
    needs = f"the {backbone} backbone needs a {adapter.stock_pipeline.name} folder with {', '.join(required)}"
    index_file = path / MODEL_INDEX
    if not index_file.is_file():
        raise PipelineError(
            f"{path} is not a diffusers pipeline folder: {MODEL_INDEX} is missing; {needs} "
            f"(as written by {adapter.stock_pipeline.name}.save_pretrained or downloaded from the hub)"
        )
    index = json.loads(index_file.read_text())
    class_name = index.get("_class_name")
    if class_name != adapter.stock_pipeline.name:
        other = backbone_of_pipeline(class_name)
        fix = f" or use the {other} backbone (model.backbone={other} in a run)" if other else ""
        raise PipelineError(
            f"{path} holds a {class_name}, but the {backbone} backbone needs a {adapter.stock_pipeline.name}; point to "
            f"a {backbone} model{fix}"
        )
    missing = [name for name in required if not (path / name).is_dir() or not any(index.get(name) or ())]
    if missing:
        raise PipelineError(
            f"{path} has no {', '.join(f'{name}/' for name in missing)} component; {needs}: copy the missing "
            f"folder(s) from the original model"
        )


def load_pipeline(backbone: str, path: str, dtype: str = "fp32", **components):
    """The backbone's stock pipeline from ``path`` (a local folder, checked first, or a hub id), on the CPU;
    ``components`` replace the folder's (e.g. a fine-tuned ``transformer``)."""
    name = adapter_class(backbone).stock_pipeline.name
    local = Path(path).expanduser()
    if local.exists():
        check_folder(local, backbone)
    try:
        source = str(local) if local.exists() else path
        pipeline = pipeline_class(backbone).from_pretrained(source, dtype=DTYPES[dtype], **components)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise PipelineError(
            f"could not load a {name} from {path!r} ({type(error).__name__}: {str(error)[:400]}); "
            "model.path must be a diffusers pipeline folder or a hub id of the backbone's model"
        ) from None
    absent = [name for name in required_components(type(pipeline)) if getattr(pipeline, name, None) is None]
    if absent:
        raise PipelineError(f"the {name} loaded from {path!r} has no {', '.join(absent)}")
    pipeline.set_progress_bar_config(disable=True)
    log.info("loaded %s from %s (%s)", name, path, dtype)
    return pipeline


def move_text_encoders(pipeline, device: torch.device | str) -> None:
    """Text encoders are needed only to encode the data and the preview prompts: they leave the GPU after."""
    for name, component in pipeline.components.items():
        if name.startswith(TEXT_ENCODER_PREFIX) and isinstance(component, torch.nn.Module):
            component.to(device)


def sampling_arguments(pipeline, settings: dict[str, Any], steps: int) -> dict[str, Any]:
    """The exported call arguments for ``steps`` steps (guidance off, the σ grid). Pipelines that snap the
    size to a table of trained aspect ratios (SANA's resolution binning) are asked not to: the student
    samples the size it is given."""
    if str(steps) not in settings["steps"]:
        raise ValueError(f"the export has settings for {sorted(settings['steps'], key=int)} steps, not {steps}")
    return {**settings["pipeline_arguments"], **settings["steps"][str(steps)], **exact_size(pipeline)}


def exact_size(pipeline) -> dict[str, Any]:
    """The argument that stops a pipeline snapping the size it is given to a table of trained aspect ratios
    (SANA's resolution binning); none for pipelines that do not."""
    if "use_resolution_binning" in inspect.signature(type(pipeline).__call__).parameters:
        return {"use_resolution_binning": False}
    return {}
