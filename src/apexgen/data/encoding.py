"""Captions and images → model inputs, with the backbone's own stock diffusers pipeline: prompt embeddings
from its ``encode_prompt`` and latents from its VAE with the normalisation its decoder inverts. The rules
of each backbone are in its adapter (``encode_text``, ``encode_null``, ``encode_latents`` of
``backbones/<name>.py``); z is one draw of the posterior per image, from a generator seeded by (seed, the
record's index), so a record's latents do not depend on batching or on which other records were skipped;
or its mode.

Embeddings are stored per sample with trailing padding removed (:class:`EncodedText`) and padded again
per batch with a mask: masked attention ignores padding, so the velocity is unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from apexgen.backbones.diffusers_backbone import call_default
from apexgen.backbones.registry import adapter_class
from apexgen.condition import TextCondition
from apexgen.data.image_text import ImageText, Reader
from apexgen.progress import progress_bar
from apexgen.seeding import RECORD_ENCODING

log = logging.getLogger(__name__)


@dataclass
class EncodedText:
    """One prompt's embeddings: tokens (L, D), pooled (P,) or None, mask (L,) bool or None (all valid)."""

    tokens: Tensor
    pooled: Tensor | None = None
    mask: Tensor | None = None


@dataclass
class EncodedSample:
    text: EncodedText
    latents: Tensor | None  # (C, h, w); None for prompt-only data


@dataclass
class EncodedDataset:
    samples: Sequence[EncodedSample]  # a list in memory, or read lazily from a cache
    null: EncodedText  # the empty prompt "", as the pipeline encodes its unconditional input
    latent_shape: tuple[int, int, int]  # (C, h, w) of the latents the backbone denoises
    real_data: bool  # False for prompt-only data: samples hold no latents


def split_rows(cond: TextCondition) -> list[EncodedText]:
    """Per-sample embeddings on the CPU, each masked row cut after its last valid token."""
    cond = cond.to("cpu")
    rows = []
    for row in range(cond.tokens.shape[0]):
        pooled = None if cond.pooled is None else cond.pooled[row].clone()
        if cond.mask is None:
            rows.append(EncodedText(cond.tokens[row].clone(), pooled))
            continue
        valid = cond.mask[row].nonzero()
        length = int(valid[-1]) + 1 if len(valid) else 1
        rows.append(EncodedText(cond.tokens[row, :length].clone(), pooled, cond.mask[row, :length].clone()))
    return rows


class PipelineEncoder:
    """Prompt embeddings and latents from a stock pipeline's own text encoders and VAE (set to eval mode:
    dropout would make each encoding, and so the cache, random)."""

    def __init__(
        self,
        pipeline,
        backbone: str,
        max_sequence_length: int | None = None,
        latent_sample: str = "sample",
        seed: int = 0,
    ):
        self.pipeline, self.backbone, self.adapter = pipeline, backbone, adapter_class(backbone)
        self.max_sequence_length = max_sequence_length or call_default(pipeline, "max_sequence_length")
        self.latent_sample, self.seed = latent_sample, seed
        for name, component in pipeline.components.items():
            if isinstance(component, torch.nn.Module) and name != "transformer" and component.training:
                log.info("putting the pipeline's %s in eval mode (no dropout) for encoding", name)
                component.eval()

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> list[EncodedText]:
        return split_rows(self.adapter.encode_text(self.pipeline, list(prompts), self.max_sequence_length))

    @torch.no_grad()
    def null(self) -> EncodedText:
        return split_rows(self.adapter.encode_null(self.pipeline, self.max_sequence_length))[0]

    @torch.no_grad()
    def encode_images(self, images: Tensor, indices: Sequence[int]) -> Tensor:
        """(B, 3, H, W) images in [-1, 1] → (B, C, h, w) latents on the CPU; ``indices`` seed the draws."""
        vae = self.pipeline.vae
        generators = [RECORD_ENCODING.generator(self.seed, index) for index in indices]
        images = images.to(device=vae.device, dtype=vae.dtype)
        return self.adapter.encode_latents(self.pipeline, images, generators, self.latent_sample == "sample").cpu()

    def latent_shape(self, resolution: int) -> tuple[int, int, int]:
        """(C, h, w) of the latents of a ``resolution``² image."""
        vae, factor = self.pipeline.vae, self.pipeline.vae_scale_factor
        if vae is None:
            raise ValueError(f"the {self.backbone} pipeline has no VAE: the latent shape is unknown")
        if resolution % factor:
            raise ValueError(f"resolution {resolution} is not a multiple of the VAE's spatial factor {factor}")
        channels = getattr(vae.config, "latent_channels", None) or vae.config.z_dim
        return (channels, resolution // factor, resolution // factor)

    def settings(self) -> dict:
        return {
            "backbone": self.backbone,
            "max_sequence_length": self.max_sequence_length,
            "latent_sample": self.latent_sample,
            "seed": self.seed,
        }


def chunks(records: Iterator[ImageText], size: int) -> Iterator[list[ImageText]]:
    chunk = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def encode_samples(reader: Reader, encoder: PipelineEncoder, batch_size: int) -> Iterator[EncodedSample]:
    """Encode every readable record of ``reader`` (one pass; unreadable images are skipped and counted)."""
    started, count = time.perf_counter(), 0
    with progress_bar(description=f"encoding {reader.path.name}", total=len(reader), unit="sample") as bar:
        for chunk in chunks(iter(reader), batch_size):
            texts = encoder.encode_prompts([record.text for record in chunk])
            latents = [None] * len(chunk)
            if reader.has_images:
                images = torch.stack([record.image for record in chunk])
                latents = list(encoder.encode_images(images, [record.index for record in chunk]).unbind(0))
            for text, latent in zip(texts, latents, strict=True):
                yield EncodedSample(text, None if latent is None else latent.clone())
            count += len(chunk)
            bar.update(len(chunk))
    log.info("encoded %d samples of %s in %.1f s", count, reader.path, time.perf_counter() - started)


def encode_dataset(reader: Reader, encoder: PipelineEncoder, resolution: int, batch_size: int) -> EncodedDataset:
    """The whole encoded set, in memory."""
    samples = list(encode_samples(reader, encoder, batch_size))
    return EncodedDataset(samples, encoder.null(), encoder.latent_shape(resolution), reader.has_images)
