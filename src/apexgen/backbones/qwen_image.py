"""Qwen-Image (``QwenImageTransformer2DModel``, dual-stream MMDiT).

How ``QwenImagePipeline`` calls it: latents packed 2×2 into tokens (B, H/2·W/2, 4C); ``img_shapes`` =
one ``[(1, H/2, W/2)]`` per sample (frames, rows, columns of tokens, for the 3-D RoPE); ``timestep`` = σ
(σ·1000 / 1000, in the latents' dtype; the time embedding scales by 1000 itself); the Qwen2.5-VL tokens
with ``encoder_hidden_states_mask``, dropped (None) when every token is valid; ``guidance`` only for a
guidance-distilled variant. The output is the packed velocity ε − x0, no sign change.

Condition shift: the text tokens pass ``txt_norm`` (RMSNorm) then ``txt_in`` (Linear); ``txt_in``'s
output is the projected text stream.

Pipeline side: ``encode_prompt`` returns ``(prompt_embeds, prompt_embeds_mask)``; the mask is None when
every token is valid. Latents are ``(z − latents_mean) / latents_std`` per channel with a frame axis (the
video VAE). True CFG as FLUX's: ``true_cfg_scale`` > 1 with a negative prompt, a second transformer call.
"""

from __future__ import annotations

import torch
from diffusers import QwenImageTransformer2DModel
from torch import Tensor

from apexgen.backbones.bench_sizes import MID_BLOCKS, TINY_BLOCKS, TINY_TEXT, blocks, table
from apexgen.backbones.diffusers_backbone import (
    FEED_FORWARD,
    JOINT_ATTENTION,
    PackedDiffusersBackbone,
    StockPipeline,
    posterior_latents,
)
from apexgen.backbones.packing import PACK, pack_latents, unpack_latents
from apexgen.condition import TextCondition


class QwenImageBackbone(PackedDiffusersBackbone):
    transformer_class = QwenImageTransformer2DModel
    text_projection = "transformer.txt_in"
    feature_output_index = 1  # a block returns (text tokens, image tokens)
    # The released APEX LoRA recipe (METHOD §5): attention q/k/v/out, add_q/k/v, to_add_out, the image
    # and text MLPs, and the timestep embedder.
    lora_targets = (
        rf"transformer_blocks\.\d+\.attn\.{JOINT_ATTENTION}",
        rf"transformer_blocks\.\d+\.(img_mlp|txt_mlp)\.{FEED_FORWARD}",
        r"time_text_embed\.timestep_embedder\.linear_[12]",
    )
    stock_pipeline = StockPipeline("QwenImagePipeline", "true_cfg_scale", off=1.0, on=4.0, cfg_batched=False)
    bench_configs = table(
        dict(patch_size=2, in_channels=64, out_channels=16, joint_attention_dim=3584, guidance_embeds=False),
        tiny=dict(TINY_BLOCKS, in_channels=16, out_channels=4, joint_attention_dim=TINY_TEXT, axes_dims_rope=(8, 4, 4)),
        # Qwen-Image's blocks at hidden 768, 6 layers, the real text width (Qwen2.5-VL-7B's hidden size): 132M
        mid=dict(MID_BLOCKS, axes_dims_rope=(8, 28, 28)),
        # Qwen-Image's architecture cut to 8 layers: 0.69B (the model measured on an H100)
        large=dict(blocks(8), axes_dims_rope=(16, 56, 56)),
    )

    def __init__(self, transformer: QwenImageTransformer2DModel, guidance_scale: float = 1.0):
        super().__init__(transformer)
        self.guidance_scale = guidance_scale  # used only by guidance-distilled transformers

    def velocity(self, x_t: Tensor, t: Tensor, cond: TextCondition) -> Tensor:
        t = self.check_inputs(x_t, t, cond)
        batch, _, height, width = x_t.shape
        guidance = None
        if self.config.guidance_embeds:
            guidance = torch.full((batch,), self.guidance_scale, device=x_t.device, dtype=torch.float32)
        velocity = self.transformer(
            hidden_states=pack_latents(x_t),
            timestep=t.to(x_t.dtype),
            guidance=guidance,
            encoder_hidden_states_mask=pipeline_mask(cond.mask),
            encoder_hidden_states=cond.tokens,
            img_shapes=[[(1, height // PACK, width // PACK)]] * batch,
            return_dict=False,
        )[0]
        return unpack_latents(velocity, height, width)

    @staticmethod
    def encode_text(pipeline, prompts: list[str], length: int) -> TextCondition:
        tokens, mask = pipeline.encode_prompt(prompts, max_sequence_length=length)
        if mask is None:  # the pipeline drops the mask when every token is valid
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TextCondition(tokens, None, mask.bool())

    @staticmethod
    def encode_latents(pipeline, images: Tensor, generators: list[torch.Generator], sample: bool) -> Tensor:
        vae = pipeline.vae
        latents = posterior_latents(vae.encode(images.unsqueeze(2)), generators, sample)  # (B, C, frames=1, h, w)
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
        return ((latents - mean) / std).squeeze(2)

    @staticmethod
    def prompt_arguments(cond: TextCondition) -> dict:
        return {"prompt_embeds": cond.tokens, "prompt_embeds_mask": cond.mask}


def pipeline_mask(mask: Tensor | None) -> Tensor | None:
    """The text mask as the pipeline hands it over: None when every token is valid."""
    return None if mask is None or bool(mask.all()) else mask
