"""FLUX.1 (``FluxTransformer2DModel``: joint blocks, then single-stream blocks).

How ``FluxPipeline`` calls it: latents packed 2×2 into tokens (B, H/2·W/2, 4C); ``img_ids`` = (0, row,
column) of each token and ``txt_ids`` = zeros, both 2-D; ``timestep`` = σ (the scheduler's σ·1000 divided
by 1000; the transformer multiplies by 1000 itself), in the latents' dtype; ``guidance`` = the distilled
guidance scale (FLUX.1-dev, ``guidance_embeds=True``) or None; T5 tokens and pooled CLIP vectors; no
text mask. The output is the packed velocity ε − x0, no sign change.

Condition shift: ``context_embedder`` (a Linear, no norm before it) projects the T5 tokens.

Pipeline side: ``encode_prompt`` returns ``(prompt_embeds, pooled, text_ids)``: T5 tokens, pooled CLIP; no
mask. True CFG runs when ``true_cfg_scale`` > 1 and a negative prompt is given, as a second transformer
call; ``guidance_scale`` is the distilled guidance input of FLUX.1-dev (not CFG), set from the adapter's
guidance_scale at export. The pipeline's ``true_cfg_scale`` default (1.0) is off: 4.0 is Qwen-Image's.
"""

from __future__ import annotations

import torch
from diffusers import FluxTransformer2DModel
from torch import Tensor

from apexgen.backbones.bench_sizes import TINY_TEXT, blocks, table
from apexgen.backbones.diffusers_backbone import FEED_FORWARD, JOINT_ATTENTION, PackedDiffusersBackbone, StockPipeline
from apexgen.backbones.packing import pack_latents, token_grid_ids, unpack_latents
from apexgen.condition import TextCondition

# FluxPipeline's default guidance_scale, used only by guidance-distilled transformers (FLUX.1-dev).
DEFAULT_GUIDANCE = 3.5


# One double-stream and one single-stream block of two heads of 16, the rotary axes to match.
TINY_FLUX_BLOCKS = dict(blocks(1, heads=2, head_dim=16), num_single_layers=1, axes_dims_rope=(4, 4, 8))


class FluxBackbone(PackedDiffusersBackbone):
    transformer_class = FluxTransformer2DModel
    text_projection = "transformer.context_embedder"
    pooled_projection = "transformer.time_text_embed.text_embedder"  # the pooled vector's way into AdaLN
    feature_output_index = 1  # both kinds of block return (text tokens, image tokens)
    lora_targets = (
        rf"transformer_blocks\.\d+\.attn\.{JOINT_ATTENTION}",
        rf"transformer_blocks\.\d+\.(ff|ff_context)\.{FEED_FORWARD}",
        r"single_transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v)",
        r"single_transformer_blocks\.\d+\.(proj_mlp|proj_out)",  # proj_out: attention output and MLP output
        r"time_text_embed\.timestep_embedder\.linear_[12]",
    )
    stock_pipeline = StockPipeline("FluxPipeline", "true_cfg_scale", off=1.0, on=4.0, cfg_batched=False)
    bench_configs = table(
        # the real text widths: T5-XXL tokens, pooled CLIP-L
        dict(patch_size=1, in_channels=64, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=False),
        tiny=dict(TINY_FLUX_BLOCKS, in_channels=16, joint_attention_dim=TINY_TEXT, pooled_projection_dim=TINY_TEXT),
        # FLUX.1's double and single blocks at hidden 1536, 4 + 8 layers: 0.64B
        large=dict(blocks(4), num_single_layers=8, axes_dims_rope=(16, 56, 56)),
    )

    def __init__(self, transformer: FluxTransformer2DModel, guidance_scale: float = DEFAULT_GUIDANCE):
        super().__init__(transformer)
        self.guidance_scale = guidance_scale

    def late_block(self) -> str:
        if self.config.num_single_layers:
            return f"single_transformer_blocks.{self.config.num_single_layers - 1}"
        return f"transformer_blocks.{self.config.num_layers - 1}"

    def velocity(self, x_t: Tensor, t: Tensor, cond: TextCondition) -> Tensor:
        t = self.check_inputs(x_t, t, cond, needs_pooled=True)
        height, width = x_t.shape[-2:]
        guidance = None
        if self.config.guidance_embeds:
            guidance = torch.full((x_t.shape[0],), self.guidance_scale, device=x_t.device, dtype=torch.float32)
        velocity = self.transformer(
            hidden_states=pack_latents(x_t),
            timestep=t.to(x_t.dtype),
            guidance=guidance,
            pooled_projections=cond.pooled,
            encoder_hidden_states=cond.tokens,
            txt_ids=torch.zeros(cond.tokens.shape[1], 3, device=x_t.device, dtype=x_t.dtype),
            img_ids=token_grid_ids(height, width, device=x_t.device, dtype=x_t.dtype),
            return_dict=False,
        )[0]
        return unpack_latents(velocity, height, width)

    @staticmethod
    def encode_text(pipeline, prompts: list[str], length: int) -> TextCondition:
        tokens, pooled, _text_ids = pipeline.encode_prompt(prompts, max_sequence_length=length)
        return TextCondition(tokens, pooled)
