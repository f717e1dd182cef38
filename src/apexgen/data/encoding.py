"""Captions and images → model inputs, with the backbone's own stock diffusers pipeline: prompt embeddings
from its ``encode_prompt`` and latents from its VAE with the normalisation its decoder inverts.

Each pipeline returns its embeddings differently; one small rule per backbone maps them to
:class:`TextCondition` (tokens, pooled, mask):

* ``sd3``: ``(prompt_embeds, negative, pooled, negative_pooled)``: CLIP-L/G + T5 tokens, pooled CLIP; no mask.
* ``flux``: ``(prompt_embeds, pooled, text_ids)``: T5 tokens, pooled CLIP; no mask.
* ``qwen_image``: ``(prompt_embeds, prompt_embeds_mask)``; the mask is None when every token is valid.
* ``sana``: ``(prompt_embeds, prompt_attention_mask, negative, negative_mask)``; prompts get the complex human
  instruction of ``SanaPipeline.__call__``'s default, the unconditional "" does not (as in the pipeline).
* ``z_image``: a list of (L_i, D) embeddings holding only each prompt's valid tokens.

Latents, the inverse of each pipeline's decode: ``(z − shift_factor) · scaling_factor`` (SD3, Flux,
Z-Image; no shift when the VAE has none), ``(z − latents_mean) / latents_std`` per channel with a frame
axis (Qwen-Image's video VAE), ``z · scaling_factor`` (SANA's deterministic DC-AE). z is one draw of the
posterior per image, from a generator seeded by (seed, the record's index), so a record's latents do not
depend on batching or on which other records were skipped; or its mode.

Embeddings are stored per sample with trailing padding removed (:class:`EncodedText`) and padded again
per batch with a mask: masked attention ignores padding, so the velocity is unchanged.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

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


TextRule = Callable[[Any, list[str], int], TextCondition]
LatentRule = Callable[[Any, Tensor, list[torch.Generator], bool], Tensor]


def call_default(pipeline, name: str):
    """The default of argument ``name`` of the pipeline's ``__call__`` (what a stock run uses)."""
    return inspect.signature(type(pipeline).__call__).parameters[name].default


def sd3_text(pipeline, prompts: list[str], length: int) -> TextCondition:
    tokens, _, pooled, _ = pipeline.encode_prompt(
        prompts, None, None, do_classifier_free_guidance=False, max_sequence_length=length
    )
    return TextCondition(tokens, pooled)


def flux_text(pipeline, prompts: list[str], length: int) -> TextCondition:
    tokens, pooled, _text_ids = pipeline.encode_prompt(prompts, max_sequence_length=length)
    return TextCondition(tokens, pooled)


def qwen_image_text(pipeline, prompts: list[str], length: int) -> TextCondition:
    tokens, mask = pipeline.encode_prompt(prompts, max_sequence_length=length)
    if mask is None:  # the pipeline drops the mask when every token is valid
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    return TextCondition(tokens, None, mask.bool())


def sana_text(pipeline, prompts: list[str], length: int) -> TextCondition:
    tokens, mask, _, _ = pipeline.encode_prompt(
        prompts,
        do_classifier_free_guidance=False,
        max_sequence_length=length,
        complex_human_instruction=call_default(pipeline, "complex_human_instruction"),
    )
    return TextCondition(tokens, None, mask.bool())


def sana_null(pipeline, length: int) -> TextCondition:
    """SanaPipeline's own unconditional input: "" encoded without the complex human instruction."""
    _, _, tokens, mask = pipeline.encode_prompt(
        [""],
        do_classifier_free_guidance=True,
        negative_prompt="",
        max_sequence_length=length,
        complex_human_instruction=call_default(pipeline, "complex_human_instruction"),
    )
    return TextCondition(tokens, None, mask.bool())


def z_image_text(pipeline, prompts: list[str], length: int) -> TextCondition:
    # encode_prompt rewrites the list it is given in place (chat template): hand it a copy.
    embeddings, _ = pipeline.encode_prompt(list(prompts), do_classifier_free_guidance=False, max_sequence_length=length)
    longest = max(e.shape[0] for e in embeddings)
    tokens = embeddings[0].new_zeros(len(embeddings), longest, embeddings[0].shape[-1])
    mask = torch.zeros(len(embeddings), longest, dtype=torch.bool, device=tokens.device)
    for row, embedding in enumerate(embeddings):
        tokens[row, : embedding.shape[0]], mask[row, : embedding.shape[0]] = embedding, True
    return TextCondition(tokens, None, mask)


def posterior_latents(output, generators: list[torch.Generator], sample: bool) -> Tensor:
    if hasattr(output, "latent_dist"):
        return output.latent_dist.sample(generators) if sample else output.latent_dist.mode()
    return output.latent  # a deterministic autoencoder (DC-AE)


def shifted_scaled_latents(pipeline, images: Tensor, generators: list[torch.Generator], sample: bool) -> Tensor:
    vae = pipeline.vae
    latents = posterior_latents(vae.encode(images), generators, sample)
    return (latents - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor


def channel_normalised_latents(pipeline, images: Tensor, generators: list[torch.Generator], sample: bool) -> Tensor:
    vae = pipeline.vae
    latents = posterior_latents(vae.encode(images.unsqueeze(2)), generators, sample)  # (B, C, frames=1, h, w)
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
    return ((latents - mean) / std).squeeze(2)


def scaled_latents(pipeline, images: Tensor, generators: list[torch.Generator], sample: bool) -> Tensor:
    vae = pipeline.vae
    return posterior_latents(vae.encode(images), generators, sample) * vae.config.scaling_factor


@dataclass(frozen=True)
class BackboneEncoding:
    text: TextRule
    latents: LatentRule
    null: Callable[[Any, int], TextCondition] | None = None  # None: the text rule applied to [""]


ENCODINGS: dict[str, BackboneEncoding] = {
    "sd3": BackboneEncoding(sd3_text, shifted_scaled_latents),
    "flux": BackboneEncoding(flux_text, shifted_scaled_latents),
    "qwen_image": BackboneEncoding(qwen_image_text, channel_normalised_latents),
    "sana": BackboneEncoding(sana_text, scaled_latents, sana_null),
    "z_image": BackboneEncoding(z_image_text, shifted_scaled_latents),
}


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
        if backbone not in ENCODINGS:
            raise ValueError(f"no encoding rules for backbone {backbone!r}; known: {', '.join(ENCODINGS)}")
        self.pipeline, self.backbone, self.rules = pipeline, backbone, ENCODINGS[backbone]
        self.max_sequence_length = max_sequence_length or call_default(pipeline, "max_sequence_length")
        self.latent_sample, self.seed = latent_sample, seed
        for name, component in pipeline.components.items():
            if isinstance(component, torch.nn.Module) and name != "transformer" and component.training:
                log.info("putting the pipeline's %s in eval mode (no dropout) for encoding", name)
                component.eval()

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> list[EncodedText]:
        return split_rows(self.rules.text(self.pipeline, list(prompts), self.max_sequence_length))

    @torch.no_grad()
    def null(self) -> EncodedText:
        if self.rules.null is None:
            return self.encode_prompts([""])[0]
        return split_rows(self.rules.null(self.pipeline, self.max_sequence_length))[0]

    @torch.no_grad()
    def encode_images(self, images: Tensor, indices: Sequence[int]) -> Tensor:
        """(B, 3, H, W) images in [-1, 1] → (B, C, h, w) latents on the CPU; ``indices`` seed the draws."""
        vae = self.pipeline.vae
        generators = [RECORD_ENCODING.generator(self.seed, index) for index in indices]
        images = images.to(device=vae.device, dtype=vae.dtype)
        return self.rules.latents(self.pipeline, images, generators, self.latent_sample == "sample").cpu()

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
