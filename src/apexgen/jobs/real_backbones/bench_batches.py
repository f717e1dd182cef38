"""The batches of ``apexgen bench``: the same random latents and text conditions for every method, drawn
from a generator seeded by the bench's seed, shaped for the backbone's transformer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from apexgen.backbones.registry import adapter_class
from apexgen.batch import Batch, DataStream
from apexgen.condition import TextCondition
from apexgen.jobs.real_backbones.bench_settings import BenchSettings

if TYPE_CHECKING:
    from apexgen.jobs.real_backbones.bench_models import BenchModel


class RandomBatches(DataStream):
    """The same random batches for every method: latents and text conditions drawn from a seeded generator."""

    def __init__(self, settings: BenchSettings, model: BenchModel, latent_channels: int):
        self.settings, self.model, self.channels = settings, model, latent_channels
        self.generator = torch.Generator().manual_seed(settings.seed)

    def condition(self, zero: bool = False) -> TextCondition:
        settings, config = self.settings, self.model.config
        adapter = adapter_class(settings.backbone)
        shape = (settings.batch, self.model.text_tokens, config[adapter.text_width_key])
        tokens = torch.zeros(shape) if zero else torch.randn(shape, generator=self.generator)
        if adapter.takes_pooled():
            pooled = torch.zeros(settings.batch, config["pooled_projection_dim"])
            return TextCondition(tokens, pooled if zero else pooled.normal_(generator=self.generator))
        return TextCondition(tokens, None, torch.ones(shape[:2], dtype=torch.bool))

    def __next__(self) -> Batch:
        side = (self.settings.resolution or self.model.resolution) // self.model.vae_factor
        x0 = torch.randn(self.settings.batch, self.channels, side, side, generator=self.generator)
        batch = Batch(x0, self.condition(), self.condition(zero=True))
        device = torch.device(self.settings.device)
        return Batch(batch.x0.to(device), batch.cond.to(device), batch.null_cond.to(device))
