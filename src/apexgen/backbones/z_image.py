"""Z-Image (``ZImageTransformer2DModel``: single-stream DiT over [image tokens, caption tokens]).

How ``ZImagePipeline`` calls it, which differs from the other four:
* inputs are lists, one entry per sample: latents (C, 1, H, W) (a frame axis) and caption features
  (L_i, D) holding only that prompt's valid tokens (the text mask applied);
* the time is reversed: the pipeline passes (1000 − σ·1000) / 1000 = 1 − σ, so the transformer's time is
  0 at noise and 1 at data (it multiplies by ``t_scale`` = 1000 itself);
* the output is negated before ``scheduler.step``: the transformer predicts x0 − ε, our −v.
So F(x_t, t, c) = −transformer(x_t, 1 − t, c).

Condition shift: ``cap_embedder`` = Sequential(RMSNorm, Linear), the caption norm and projection; its
output (before the caption refiner blocks) is the projected text stream.

Pipeline side: ``encode_prompt`` returns a list of (L_i, D) embeddings holding only each prompt's valid
tokens, and ``prompt_embeds`` takes them back in that form (:func:`caption_features`). ``ZImagePipeline``
runs CFG when ``guidance_scale`` > 0 (default 5.0), both branches in one call.
"""

from __future__ import annotations

import torch
from diffusers import ZImageTransformer2DModel
from torch import Tensor

from apexgen.backbones.bench_sizes import HEADS, HIDDEN, TINY_TEXT, table
from apexgen.backbones.diffusers_backbone import DiffusersBackbone, StockPipeline
from apexgen.condition import TextCondition


def z_blocks(layers: int, refiner_layers: int, heads: int, dim: int) -> dict[str, int]:
    """Depth and width in ``ZImageTransformer2DModel``'s config names (as many key/value heads as heads)."""
    return dict(n_layers=layers, n_refiner_layers=refiner_layers, n_heads=heads, n_kv_heads=heads, dim=dim)


TINY_ROPE = dict(axes_dims=[8, 4, 4], axes_lens=[256, 32, 32])


class ZImageBackbone(DiffusersBackbone):
    transformer_class = ZImageTransformer2DModel
    text_projection = "transformer.cap_embedder"
    lora_targets = (
        r"(layers|noise_refiner|context_refiner)\.\d+\.attention\.(to_q|to_k|to_v|to_out\.0)",
        r"(layers|noise_refiner|context_refiner)\.\d+\.feed_forward\.(w1|w2|w3)",
        r"t_embedder\.mlp\.(0|2)",
    )
    stock_pipeline = StockPipeline("ZImagePipeline", "guidance_scale", off=0.0, on=5.0)
    text_width_key = "cap_feat_dim"
    bench_configs = table(
        # Qwen3-4B's text width
        dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, qk_norm=True, cap_feat_dim=2560),
        tiny=dict(z_blocks(2, 1, heads=2, dim=32), in_channels=4, cap_feat_dim=TINY_TEXT, **TINY_ROPE),
        # Z-Image's single-stream blocks at hidden 1536, 18 layers: 0.67B
        large=dict(z_blocks(18, 2, heads=HEADS, dim=HIDDEN), axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512]),
    )

    def __init__(self, transformer: ZImageTransformer2DModel):
        super().__init__(transformer)
        self.image_tokens = 0  # image tokens (first in the unified sequence) of the latest call, for pooling

    @property
    def spatial_multiple(self) -> int:
        return self.patch_size

    @property
    def patch_size(self) -> int:
        return self.config.all_patch_size[0]

    def late_block(self) -> str:
        return f"layers.{self.config.n_layers - 1}"

    def hidden_size(self) -> int:
        return self.config.dim

    def velocity(self, x_t: Tensor, t: Tensor, cond: TextCondition) -> Tensor:
        t = self.check_inputs(x_t, t, cond)
        self.image_tokens = (x_t.shape[-2] // self.patch_size) * (x_t.shape[-1] // self.patch_size)
        outputs = self.transformer(
            list(x_t.unsqueeze(2).unbind(0)),
            1 - t.to(torch.float32),
            caption_features(cond),
            patch_size=self.patch_size,
            f_patch_size=self.config.all_f_patch_size[0],
            return_dict=False,
        )[0]
        return -torch.stack(outputs, dim=0).squeeze(2)

    def pool_features(self, output) -> Tensor:
        """Mean over the image tokens, which come first in each sample's unified sequence."""
        return output[:, : self.image_tokens].mean(1)

    @staticmethod
    def encode_text(pipeline, prompts: list[str], length: int) -> TextCondition:
        # encode_prompt rewrites the list it is given in place (chat template): hand it a copy.
        embeddings, _ = pipeline.encode_prompt(
            list(prompts), do_classifier_free_guidance=False, max_sequence_length=length
        )
        longest = max(e.shape[0] for e in embeddings)
        tokens = embeddings[0].new_zeros(len(embeddings), longest, embeddings[0].shape[-1])
        mask = torch.zeros(len(embeddings), longest, dtype=torch.bool, device=tokens.device)
        for row, embedding in enumerate(embeddings):
            tokens[row, : embedding.shape[0]], mask[row, : embedding.shape[0]] = embedding, True
        return TextCondition(tokens, None, mask)

    @staticmethod
    def prompt_arguments(cond: TextCondition) -> dict:
        return {"prompt_embeds": caption_features(cond)}


def caption_features(cond: TextCondition) -> list[Tensor]:
    """One (L_i, D) tensor per sample: the valid tokens only, as the pipeline's text encoding returns them."""
    if cond.mask is None:
        return list(cond.tokens.unbind(0))
    empty = [row for row, mask in enumerate(cond.mask) if not mask.any()]
    if empty:
        raise ValueError(
            f"Z-Image needs at least one valid caption token per sample; rows {empty} have none (the pipeline "
            "encodes even the empty prompt into chat-template tokens: use those for the null condition)"
        )
    return [tokens[mask.bool()] for tokens, mask in zip(cond.tokens, cond.mask, strict=True)]
