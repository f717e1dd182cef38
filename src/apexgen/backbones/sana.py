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

Pipeline side: ``encode_prompt`` returns ``(prompt_embeds, prompt_attention_mask, negative,
negative_mask)``; prompts get the complex human instruction of ``SanaPipeline.__call__``'s default, the
unconditional "" does not (as in the pipeline). Latents are ``z · scaling_factor`` (the deterministic DC-AE,
32× downsampling). CFG runs when ``guidance_scale`` > 1 (default 4.5), both branches in one call of 2× batch.

SANA-Sprint (``guidance_embeds=True``) is a TrigFlow model with another time parameterisation and
pipeline; it is not supported here.
"""

from __future__ import annotations

import torch
from diffusers import SanaTransformer2DModel
from torch import Tensor

from apexgen.backbones.bench_sizes import HEAD_DIM, HEADS, TINY_BLOCKS, TINY_TEXT, blocks, table
from apexgen.backbones.diffusers_backbone import (
    TRAIN_TIMESTEPS,
    DiffusersBackbone,
    StockPipeline,
    call_default,
    posterior_latents,
)
from apexgen.condition import TextCondition


def cross_attention(heads: int, head_dim: int) -> dict[str, int]:
    """The cross-attention's heads and width in ``SanaTransformer2DModel``'s config names."""
    return dict(
        num_cross_attention_heads=heads, cross_attention_head_dim=head_dim, cross_attention_dim=heads * head_dim
    )


# The tiny size's latents, and its norms without affine weights.
TINY_SANA = dict(in_channels=4, out_channels=4, sample_size=16, norm_elementwise_affine=False)


class SanaBackbone(DiffusersBackbone):
    transformer_class = SanaTransformer2DModel
    text_projection = "transformer.caption_norm"
    lora_targets = (
        r"transformer_blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)",
        r"transformer_blocks\.\d+\.ff\.(conv_inverted|conv_point)",  # the GLU-MBConv's 1×1 convolutions
        r"time_embed\.emb\.timestep_embedder\.linear_[12]",
    )
    stock_pipeline = StockPipeline("SanaPipeline", "guidance_scale", off=1.0, on=4.5)
    text_width_key = "caption_channels"
    vae_factor = 32  # DC-AE
    bench_configs = table(
        # DC-AE latents (32 channels, f32) and Gemma-2-2B's text width
        dict(in_channels=32, out_channels=32, caption_channels=2304, sample_size=32, patch_size=1),
        tiny=dict(TINY_BLOCKS, **cross_attention(2, 16), **TINY_SANA, caption_channels=TINY_TEXT),
        # SANA's linear-attention blocks at hidden 1536, 18 layers: 0.68B
        large=dict(blocks(18), **cross_attention(HEADS, HEAD_DIM), mlp_ratio=2.5),
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

    @staticmethod
    def encode_text(pipeline, prompts: list[str], length: int) -> TextCondition:
        tokens, mask, _, _ = pipeline.encode_prompt(
            prompts,
            do_classifier_free_guidance=False,
            max_sequence_length=length,
            complex_human_instruction=call_default(pipeline, "complex_human_instruction"),
        )
        return TextCondition(tokens, None, mask.bool())

    @classmethod
    def encode_null(cls, pipeline, length: int) -> TextCondition:
        """SanaPipeline's own unconditional input: "" encoded without the complex human instruction."""
        _, _, tokens, mask = pipeline.encode_prompt(
            [""],
            do_classifier_free_guidance=True,
            negative_prompt="",
            max_sequence_length=length,
            complex_human_instruction=call_default(pipeline, "complex_human_instruction"),
        )
        return TextCondition(tokens, None, mask.bool())

    @staticmethod
    def encode_latents(pipeline, images: Tensor, generators: list[torch.Generator], sample: bool) -> Tensor:
        vae = pipeline.vae
        return posterior_latents(vae.encode(images), generators, sample) * vae.config.scaling_factor

    @staticmethod
    def prompt_arguments(cond: TextCondition) -> dict:
        return {"prompt_embeds": cond.tokens, "prompt_attention_mask": cond.mask}
