"""What the diffusers adapters share: the unpatched stock transformer held as ``self.transformer``,
construction from a config or a checkpoint, checks of the inputs, the LoRA target preset, and pooling of
the image tokens of a late block for a discriminator head.

Each adapter (``sd3``, ``flux``, ``qwen_image``, ``sana``, ``z_image``) only says how its stock pipeline
calls the transformer: packing, position inputs, masks, time scaling and sign. Its :meth:`velocity`
returns v = ε − x0 with t = 1 at noise (``apexgen.flow``), so that ``one_step_sample`` equals the stock
pipeline run with one step.
"""

from __future__ import annotations

from collections.abc import Mapping
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


class DiffusersBackbone(FlowBackbone):
    """Base of the adapters. Subclasses set the class attributes and implement :meth:`velocity`."""

    transformer_class: ClassVar[type[nn.Module]]
    # Regular expressions over the transformer's module names (peft matches each name in full).
    lora_targets: ClassVar[tuple[str, ...]] = ()
    # Where the image tokens are when the late block returns a tuple; None: it returns them alone.
    feature_output_index: ClassVar[int | None] = None

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
