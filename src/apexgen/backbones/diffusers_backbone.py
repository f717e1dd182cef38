"""What the diffusers adapters share: the unpatched stock transformer held as ``self.transformer``,
construction from a config or a checkpoint, checks of the inputs, the LoRA target preset, pooling of the
image tokens of a late block for a discriminator head, and the defaults of the pipeline side.

Each adapter (``sd3``, ``flux``, ``qwen_image``, ``sana``, ``z_image``) holds everything specific to its
backbone, in one file: how its stock pipeline calls the transformer (packing, position inputs, masks, time
scaling and sign; :meth:`velocity` returns v = ε − x0 with t = 1 at noise, ``apexgen.flow``, so that
``one_step_sample`` equals the stock pipeline run with one step), which pipeline that is and the call
arguments that turn its guidance off and on, how the pipeline's own encoders turn captions and images into
model inputs (:meth:`encode_text`, :meth:`encode_null`, :meth:`encode_latents`) and how it takes
precomputed embeddings back (:meth:`prompt_arguments`), the LoRA target preset, and the transformer configs
of ``apexgen bench`` (``bench_configs``). ``backbones/registry.py`` maps the backbone's name to the class.
"""

from __future__ import annotations

import importlib
import inspect
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from apexgen.backbones.base import FlowBackbone
from apexgen.backbones.packing import PACK
from apexgen.condition import TextCondition

# Diffusers transformers that take a time in [0, 1000] (SD3, Sana) were trained on t·1000.
TRAIN_TIMESTEPS = 1000.0

# The projections of a joint (MMDiT) attention: image q/k/v/out and text add_q/k/v/to_add_out.
JOINT_ATTENTION = r"(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
# The two linear layers of a diffusers FeedForward (GELU-approximate MLP).
FEED_FORWARD = r"net\.(0\.proj|2)"


@dataclass(frozen=True)
class StockPipeline:
    """A backbone's stock diffusers pipeline: its class name, the call argument that sets its classifier-free
    guidance with the values that turn it off (the student is sampled without guidance: it was baked in) and
    on (a teacher run, with a negative prompt), and how it evaluates the two branches: one transformer call
    on the conditional and unconditional rows batched together (``cfg_batched``), or two calls."""

    name: str
    guidance_key: str
    off: float
    on: float
    cfg_batched: bool = True

    def off_arguments(self) -> dict[str, float]:
        return {self.guidance_key: self.off}

    def on_arguments(self) -> dict[str, float]:
        return {self.guidance_key: self.on}


class DiffusersBackbone(FlowBackbone):
    """Base of the adapters. Subclasses set the class attributes and implement :meth:`velocity`."""

    transformer_class: ClassVar[type[nn.Module]]
    # Regular expressions over the transformer's module names (peft matches each name in full).
    lora_targets: ClassVar[tuple[str, ...]] = ()
    # Where the image tokens are when the late block returns a tuple; None: it returns them alone.
    feature_output_index: ClassVar[int | None] = None

    stock_pipeline: ClassVar[StockPipeline]
    # The transformer config key of the text tokens' width, and the image pixels per latent pixel of the
    # backbone's VAE (both for random inputs and latent sizes of ``apexgen bench``).
    text_width_key: ClassVar[str] = "joint_attention_dim"
    vae_factor: ClassVar[int] = 8
    # Random-init transformer configs by size ("tiny", "100m", "0.7b"; ``apexgen.jobs.real_backbones.bench_models``).
    bench_configs: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, transformer: nn.Module):
        super().__init__()
        if not isinstance(transformer, self.transformer_class):
            raise TypeError(
                f"{type(self).__name__} wraps a {self.transformer_class.__name__}, got {type(transformer).__name__}"
            )
        self.transformer = transformer
        self.feature_module = f"transformer.{self.late_block()}"
        self.feature_dim = self.hidden_size()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **adapter_options) -> DiffusersBackbone:
        """A randomly initialised transformer of ``config`` (the arguments of its constructor)."""
        return cls(cls.transformer_class.from_config(dict(config)), **adapter_options)

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        subfolder: str | None = "transformer",
        adapter_options: Mapping[str, Any] | None = None,
        **kwargs,
    ) -> DiffusersBackbone:
        """The transformer of a diffusers checkpoint (a pipeline folder, or a model folder with subfolder=None);
        ``kwargs`` go to the transformer's ``from_pretrained`` (e.g. ``torch_dtype``)."""
        transformer = cls.transformer_class.from_pretrained(path, subfolder=subfolder, **kwargs)
        return cls(transformer, **(adapter_options or {}))

    @classmethod
    def pipeline_class(cls) -> type:
        return getattr(importlib.import_module("diffusers"), cls.stock_pipeline.name)

    @classmethod
    def takes_pooled(cls) -> bool:
        """Whether the transformer takes a pooled text vector (and then no text mask)."""
        return bool(cls.pooled_projection)

    # The pipeline's encoders → model inputs, and precomputed inputs → the pipeline's arguments. Each
    # pipeline returns its embeddings differently: each adapter maps them to TextCondition (tokens, pooled,
    # mask) in encode_text.
    @staticmethod
    @abstractmethod
    def encode_text(pipeline, prompts: list[str], length: int) -> TextCondition:
        """The prompts' embeddings from the pipeline's ``encode_prompt``, ``length`` tokens at most."""

    @classmethod
    def encode_null(cls, pipeline, length: int) -> TextCondition:
        """The pipeline's own unconditional input: by default the empty prompt as encode_text encodes it."""
        return cls.encode_text(pipeline, [""], length)

    @staticmethod
    def encode_latents(pipeline, images: Tensor, generators: list[torch.Generator], sample: bool) -> Tensor:
        """(B, 3, H, W) images in [−1, 1] → latents, the inverse of the pipeline's decode; by default
        (z − shift_factor) · scaling_factor (SD3, FLUX, Z-Image; no shift when the VAE has none), with z one
        draw of the posterior from each image's generator (``sample``) or its mode."""
        vae = pipeline.vae
        latents = posterior_latents(vae.encode(images), generators, sample)
        return (latents - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor

    @staticmethod
    def prompt_arguments(cond: TextCondition) -> dict[str, Any]:
        """Precomputed prompt embeddings as the pipeline takes them (no text encoder is run); by default
        tokens and pooled vectors (SD3, FLUX)."""
        return {"prompt_embeds": cond.tokens, "pooled_prompt_embeds": cond.pooled}

    @property
    def config(self):
        return self.transformer.config

    # What subclasses describe; the defaults fit the transformers of SD3, SANA and Qwen-Image.
    @property
    def latent_channels(self) -> int:
        """C of the (B, C, H, W) latents the pipeline denoises."""
        return self.config.in_channels

    @property
    def spatial_multiple(self) -> int:
        """H and W must be multiples of this (patch size, times 2 where latents are packed)."""
        return self.config.patch_size

    def late_block(self) -> str:
        """The transformer's last block, whose output holds the image-token hidden states."""
        return f"transformer_blocks.{self.config.num_layers - 1}"

    def hidden_size(self) -> int:
        """The width of the image-token hidden states (the discriminator head's input)."""
        return self.config.num_attention_heads * self.config.attention_head_dim

    # Shared helpers.
    def sharding_root(self) -> nn.Module:
        """The transformer, not the adapter: the stock pipeline calls the transformer itself (previews)."""
        return self.transformer

    def check_inputs(self, x_t: Tensor, t: Tensor, cond: TextCondition, needs_pooled: bool = False) -> Tensor:
        """Validate the latents, times and condition; return the times as a (B,) tensor."""
        name = type(self).__name__
        if x_t.dim() != 4 or x_t.shape[1] != self.latent_channels:
            raise ValueError(f"{name} takes latents (B, {self.latent_channels}, H, W), got {tuple(x_t.shape)}")
        multiple = self.spatial_multiple
        if x_t.shape[-2] % multiple or x_t.shape[-1] % multiple:
            raise ValueError(f"{name}: latent height and width must be multiples of {multiple}, got {tuple(x_t.shape)}")
        if cond.tokens.dim() != 3 or cond.tokens.shape[0] != x_t.shape[0]:
            raise ValueError(
                f"{name}: cond.tokens must be (B, L, D) with B = {x_t.shape[0]}, got {tuple(cond.tokens.shape)}"
            )
        if needs_pooled and cond.pooled is None:
            raise ValueError(f"{name} needs pooled text embeddings (TextCondition.pooled)")
        t = torch.as_tensor(t, device=x_t.device)
        return t.expand(x_t.shape[0]) if t.dim() == 0 else t

    def pool_features(self, output) -> Tensor:
        """Mean of the late block's image tokens: (B, N, D) → (B, D)."""
        features = output if self.feature_output_index is None else output[self.feature_output_index]
        return features.mean(1)


class PackedDiffusersBackbone(DiffusersBackbone):
    """An adapter of a transformer that reads 2×2-packed latent tokens (FLUX, Qwen-Image): its ``in_channels``
    counts the channels of a packed token."""

    @property
    def latent_channels(self) -> int:
        return self.config.in_channels // (PACK * PACK)

    @property
    def spatial_multiple(self) -> int:
        return PACK


def posterior_latents(output, generators: list[torch.Generator], sample: bool) -> Tensor:
    """One draw of the VAE's posterior per image (or its mode); a deterministic autoencoder's latent as is."""
    if hasattr(output, "latent_dist"):
        return output.latent_dist.sample(generators) if sample else output.latent_dist.mode()
    return output.latent  # a deterministic autoencoder (DC-AE)


def call_default(pipeline, name: str):
    """The default of argument ``name`` of the pipeline's ``__call__`` (what a stock run uses)."""
    return inspect.signature(type(pipeline).__call__).parameters[name].default
