"""Preview grids during training: the student sampled by the stock pipeline it is being trained in (its
transformer is the student), from prompt embeddings computed once, decoded by the pipeline's VAE. Rows
are the configured step counts, columns the prompts; same seed at every step, so grids compare.

In a run of several processes every process samples (a sharded model's forward needs all of them, and in a
data-parallel run the others would wait for the main one anyway); the main one writes the grid."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from apexgen.backbones.registry import adapter_class
from apexgen.condition import TextCondition
from apexgen.export import sampling_scheduler
from apexgen.jobs.real_backbones.config import SamplesConfig
from apexgen.jobs.real_backbones.sample import generate

log = logging.getLogger(__name__)


def image_grid(rows: list[list[Image.Image]]) -> Image.Image:
    """Tile equally sized images: one list per row."""
    width, height = rows[0][0].size
    grid = Image.new("RGB", (width * max(len(row) for row in rows), height * len(rows)))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            grid.paste(image, (c * width, r * height))
    return grid


@dataclass
class Previewer:
    """Called with the step number; writes ``<folder>/step_<N>.png`` (``writes``: on the main process)."""

    pipeline: Any
    backbone: str
    settings: dict[str, Any]  # the export's sampling settings (apexgen.export.sampling_settings)
    cond: TextCondition  # the preview prompts' embeddings, on the device
    samples: SamplesConfig
    resolution: int
    folder: Path
    autocast_dtype: torch.dtype | None = None  # mixed fp32/bf16 weights run under autocast, as in training
    writes: bool = True  # False on the other processes: they sample along and write nothing

    def __post_init__(self):
        self.pipeline.scheduler = sampling_scheduler(self.settings, self.pipeline.scheduler.config)

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.pipeline.device.type, dtype=self.autocast_dtype)

    def __call__(self, step: int) -> Path | None:
        transformer = self.pipeline.transformer
        was_training = transformer.training
        transformer.eval()
        prompt = adapter_class(self.backbone).prompt_arguments(self.cond)
        try:
            with self.autocast():
                rows = [
                    generate(self.pipeline, self.settings, steps, self.samples.seed, self.resolution, **prompt)
                    for steps in self.samples.steps
                ]
        finally:
            transformer.train(was_training)
        if not self.writes:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"step_{step:07d}.png"
        image_grid(rows).save(path)
        log.info("preview (%s steps): %s", "/".join(map(str, self.samples.steps)), path)
        return path
