"""``apexgen export``: the newest checkpoint of a run exported again for the stock pipeline (e.g. a run that
was stopped, or an export folder that was lost): its settings from ``<run>/config.yaml``, the base
transformer from ``model.path``, the student's trained weights (their EMA, when the run kept one)."""

from __future__ import annotations

import logging
from pathlib import Path

from safetensors import SafetensorError

from apexgen.backbones.registry import adapter_class
from apexgen.config import load, load_yaml
from apexgen.export import ExportResult, export_full, export_lora
from apexgen.jobs.real_backbones.config import RunConfig
from apexgen.jobs.real_backbones.networks import prepare_student
from apexgen.jobs.real_backbones.pipeline import DTYPES, PipelineError
from apexgen.jobs.real_backbones.train import CONFIG_FILE, RunError
from apexgen.train import checkpoint
from apexgen.train.run_folder import EXPORT_FOLDER

log = logging.getLogger(__name__)


def run_config(run: Path) -> RunConfig:
    path = run / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{run} holds no {CONFIG_FILE}: pass the out folder of `apexgen train`")
    return load(RunConfig, load_yaml(path))


def load_transformer(config: RunConfig):
    """The run's base transformer (only the transformer: no text encoder or VAE is needed to export)."""
    adapter_type = adapter_class(config.model.backbone)
    try:
        return adapter_type.from_pretrained(config.model.path, dtype=DTYPES[config.model.dtype])
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise PipelineError(
            f"could not load the transformer of {config.model.path!r} ({type(error).__name__}: {str(error)[:300]}); "
            "the run's model.path must still point at its base model"
        ) from None


def reexport(run: Path, out: Path | None = None) -> ExportResult:
    """Export the newest checkpoint of ``run`` into ``out`` (default: ``<run>/export``)."""
    config = run_config(run)
    latest = checkpoint.latest(run / "checkpoints")
    if latest is None:
        raise RunError(
            f"{run / 'checkpoints'} holds no checkpoint (train.checkpoint_every was 0 or the run stopped before the "
            f"first); the export written at the end of a complete run is in {run / EXPORT_FOLDER}"
        )
    student = prepare_student(config, load_transformer(config)).student
    averaged = checkpoint.load_averaged_student(latest, student)
    student.eval()
    export = (export_full if config.model.full_finetune else export_lora)(student, out or run / EXPORT_FOLDER)
    log.info("exported %s%s to %s", latest, " (EMA weights)" if averaged else "", export.directory)
    return export
