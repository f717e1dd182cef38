"""Stable Diffusion 3 / 3.5 (``SD3Transformer2DModel``, MMDiT).

How ``StableDiffusion3Pipeline`` calls it: unpacked latents (B, C, H, W); ``timestep`` = the scheduler's
time σ·1000 in float32; ``encoder_hidden_states`` = the joint CLIP+T5 tokens and ``pooled_projections``
= the pooled CLIP vectors; no text mask. The output is the velocity ε − x0 as is (no sign change), and
``scheduler.step`` moves x by (σ_next − σ)·v. So F(x_t, t, c) = transformer(x_t, 1000·t, c).

Condition shift: ``context_embedder`` (a Linear, no norm before it) projects the text tokens into the
joint stream; its output is what every joint attention block sees.
"""

from __future__ import annotations

import torch
from diffusers import SD3Transformer2DModel
from torch import Tensor

from apexgen.backbones.diffusers_backbone import FEED_FORWARD, JOINT_ATTENTION, TRAIN_TIMESTEPS, DiffusersBackbone
from apexgen.condition import TextCondition


class SD3Backbone(DiffusersBackbone):
    transformer_class = SD3Transformer2DModel
    text_projection = "transformer.context_embedder"
    pooled_projection = "transformer.time_text_embed.text_embedder"  # the pooled vector's way into AdaLN
    feature_output_index = 1  # a joint block returns (text tokens, image tokens)
    lora_targets = (
        rf"transformer_blocks\.\d+\.attn2?\.{JOINT_ATTENTION}",  # attn2: SD3.5's dual-attention layers
        rf"transformer_blocks\.\d+\.(ff|ff_context)\.{FEED_FORWARD}",
        r"time_text_embed\.timestep_embedder\.linear_[12]",
    )

    def velocity(self, x_t: Tensor, t: Tensor, cond: TextCondition) -> Tensor:
        t = self.check_inputs(x_t, t, cond, needs_pooled=True)
        return self.transformer(
            hidden_states=x_t,
            timestep=t.to(torch.float32) * TRAIN_TIMESTEPS,
            encoder_hidden_states=cond.tokens,
            pooled_projections=cond.pooled,
            return_dict=False,
        )[0]
