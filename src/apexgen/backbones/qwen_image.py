"""Qwen-Image (``QwenImageTransformer2DModel``, dual-stream MMDiT).

How ``QwenImagePipeline`` calls it: latents packed 2×2 into tokens (B, H/2·W/2, 4C); ``img_shapes`` =
one ``[(1, H/2, W/2)]`` per sample (frames, rows, columns of tokens, for the 3-D RoPE); ``timestep`` = σ
(σ·1000 / 1000, in the latents' dtype; the time embedding scales by 1000 itself); the Qwen2.5-VL tokens
with ``encoder_hidden_states_mask``, dropped (None) when every token is valid; ``guidance`` only for a
guidance-distilled variant. The output is the packed velocity ε − x0, no sign change.

Condition shift: the text tokens pass ``txt_norm`` (RMSNorm) then ``txt_in`` (Linear); ``txt_in``'s
output is the projected text stream.
"""

from __future__ import annotations

import torch
from diffusers import QwenImageTransformer2DModel
from torch import Tensor

from apexgen.backbones.diffusers_backbone import FEED_FORWARD, JOINT_ATTENTION, PackedDiffusersBackbone
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


def pipeline_mask(mask: Tensor | None) -> Tensor | None:
    """The text mask as the pipeline hands it over: None when every token is valid."""
    return None if mask is None or bool(mask.all()) else mask
