"""Stable Diffusion 3 / 3.5 (``SD3Transformer2DModel``, MMDiT).

How ``StableDiffusion3Pipeline`` calls it: unpacked latents (B, C, H, W); ``timestep`` = the scheduler's
time σ·1000 in float32; ``encoder_hidden_states`` = the joint CLIP+T5 tokens and ``pooled_projections``
= the pooled CLIP vectors; no text mask. The output is the velocity ε − x0 as is (no sign change), and
``scheduler.step`` moves x by (σ_next − σ)·v. So F(x_t, t, c) = transformer(x_t, 1000·t, c).

Condition shift: ``context_embedder`` (a Linear, no norm before it) projects the text tokens into the
joint stream; its output is what every joint attention block sees.

Pipeline side: ``encode_prompt`` returns ``(prompt_embeds, negative, pooled, negative_pooled)``: CLIP-L/G +
T5 tokens, pooled CLIP; no mask. CFG runs when ``guidance_scale`` > 1 (default 7.0), both branches in one
call of 2× batch.
"""

from __future__ import annotations

import torch
from diffusers import SD3Transformer2DModel
from torch import Tensor

from apexgen.backbones.bench_sizes import HIDDEN, MID_BLOCKS, MID_HIDDEN, TINY_BLOCKS, TINY_TEXT, blocks, table
from apexgen.backbones.diffusers_backbone import (
    FEED_FORWARD,
    JOINT_ATTENTION,
    TRAIN_TIMESTEPS,
    DiffusersBackbone,
    StockPipeline,
)
from apexgen.condition import TextCondition

# The tiny size's text widths (tokens, their projection, the pooled vector) and SD3.5's block norm.
TINY_TEXTS = dict(joint_attention_dim=TINY_TEXT, caption_projection_dim=32, pooled_projection_dim=TINY_TEXT)
SD35_BLOCKS = dict(qk_norm="rms_norm")


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
    stock_pipeline = StockPipeline("StableDiffusion3Pipeline", "guidance_scale", off=1.0, on=7.0)
    bench_configs = table(
        # the real text widths: T5-XXL tokens, pooled CLIP-L + CLIP-G
        dict(patch_size=2, in_channels=16, out_channels=16, joint_attention_dim=4096, pooled_projection_dim=2048),
        tiny=dict(TINY_BLOCKS, **TINY_TEXTS, sample_size=16, in_channels=4, out_channels=4, pos_embed_max_size=32),
        # SD3.5's joint blocks at hidden 768, 6 layers, the real text widths: 127M
        mid=dict(MID_BLOCKS, **SD35_BLOCKS, sample_size=32, caption_projection_dim=MID_HIDDEN, pos_embed_max_size=64),
        # SD3.5's joint blocks at hidden 1536, 8 layers: 0.67B
        large=dict(blocks(8), **SD35_BLOCKS, sample_size=64, caption_projection_dim=HIDDEN, pos_embed_max_size=96),
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

    @staticmethod
    def encode_text(pipeline, prompts: list[str], length: int) -> TextCondition:
        tokens, _, pooled, _ = pipeline.encode_prompt(
            prompts, None, None, do_classifier_free_guidance=False, max_sequence_length=length
        )
        return TextCondition(tokens, pooled)
