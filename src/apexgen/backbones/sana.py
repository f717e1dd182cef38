"""SANA (``SanaTransformer2DModel``: linear-attention DiT with cross-attention to Gemma tokens).

How ``SanaPipeline`` calls it: unpacked latents (B, C, H, W); ``timestep`` = the scheduler's σ·1000 times
the config's ``timestep_scale`` (1 for SANA; the flow-matching SANA checkpoints are run with a flow
scheduler); ``encoder_hidden_states`` with ``encoder_attention_mask``. The output is the velocity
ε − x0 (``flow_prediction``); a transformer with twice the input channels (learned σ) has its first
half taken. No sign change.

Condition shift: the tokens pass ``caption_projection`` (Linear–GELU–Linear) and then ``caption_norm``
(RMSNorm). The shift is hooked on ``caption_norm``, the projected tokens after the backbone's text
projection *and* norm that every cross-attention sees; a shift before the norm would be partly undone by
it (METHOD §2).

SANA-Sprint (``guidance_embeds=True``) is a TrigFlow model with another time parameterisation and
pipeline; it is not supported here.
"""

from __future__ import annotations

import torch
from diffusers import SanaTransformer2DModel
from torch import Tensor

from apexgen.backbones.diffusers_backbone import TRAIN_TIMESTEPS, DiffusersBackbone
from apexgen.condition import TextCondition


class SanaBackbone(DiffusersBackbone):
    transformer_class = SanaTransformer2DModel
    text_projection = "transformer.caption_norm"
    lora_targets = (
        r"transformer_blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)",
        r"transformer_blocks\.\d+\.ff\.(conv_inverted|conv_point)",  # the GLU-MBConv's 1×1 convolutions
        r"time_embed\.emb\.timestep_embedder\.linear_[12]",
    )

    def __init__(self, transformer: SanaTransformer2DModel):
        if transformer.config.guidance_embeds:
            raise ValueError("SANA-Sprint transformers (guidance_embeds=True) use TrigFlow; not supported")
        super().__init__(transformer)

    def velocity(self, x_t: Tensor, t: Tensor, cond: TextCondition) -> Tensor:
        t = self.check_inputs(x_t, t, cond)
        velocity = self.transformer(
            x_t,
            encoder_hidden_states=cond.tokens,
            encoder_attention_mask=cond.mask,
            timestep=t.to(torch.float32) * TRAIN_TIMESTEPS * self.config.timestep_scale,
            return_dict=False,
        )[0]
        if velocity.shape[1] == 2 * self.latent_channels:
            velocity = velocity.chunk(2, dim=1)[0]
        return velocity
