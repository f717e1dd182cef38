"""Random-init transformer configs for ``apexgen bench``: ``tiny`` (the configs measured on our CPUs,
ENVIRONMENT.md; seconds per method), ``100m`` (SD3 and Qwen-Image at hidden 768, 6 layers: about 130M
parameters, the size whose memory a CPU can measure above the counter's noise) and ``0.7b`` (about 0.6–0.7B
parameters at each backbone's real widths: hidden 12 heads × 128 and the real text-encoder widths, for a GPU;
the Qwen-Image one is the 0.69B model measured on an H100)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SIZES = ("tiny", "100m", "0.7b")


@dataclass(frozen=True)
class BenchModel:
    config: dict[str, Any]  # the transformer's constructor arguments
    vae_factor: int  # image pixels per latent pixel: latent side = resolution / vae_factor
    text_tokens: int  # prompt tokens per sample
    resolution: int  # default image side in pixels


TINY_TEXT = 32
TINY = {
    "sd3": dict(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TINY_TEXT,
        caption_projection_dim=32,
        pooled_projection_dim=TINY_TEXT,
        pos_embed_max_size=32,
    ),
    "flux": dict(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TINY_TEXT,
        pooled_projection_dim=TINY_TEXT,
        guidance_embeds=False,
        axes_dims_rope=(4, 4, 8),
    ),
    "qwen_image": dict(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TINY_TEXT,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    ),
    "sana": dict(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=TINY_TEXT,
        sample_size=16,
        patch_size=1,
        norm_elementwise_affine=False,
    ),
    "z_image": dict(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=4,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        qk_norm=True,
        cap_feat_dim=TINY_TEXT,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32],
    ),
}

HEADS, HEAD_DIM = 12, 128
HIDDEN = HEADS * HEAD_DIM
REAL = {
    # Qwen-Image's architecture cut to 8 layers: 0.69B
    "qwen_image": dict(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=8,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=3584,  # Qwen2.5-VL-7B's hidden size
        guidance_embeds=False,
        axes_dims_rope=(16, 56, 56),
    ),
    # SD3.5's joint blocks at hidden 1536, 8 layers: 0.67B
    "sd3": dict(
        sample_size=64,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=8,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=4096,  # T5-XXL
        caption_projection_dim=HIDDEN,
        pooled_projection_dim=2048,  # CLIP-L + CLIP-G
        pos_embed_max_size=96,
        qk_norm="rms_norm",
    ),
    # FLUX.1's double and single blocks at hidden 1536, 4 + 8 layers: 0.64B
    "flux": dict(
        patch_size=1,
        in_channels=64,
        num_layers=4,
        num_single_layers=8,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=False,
        axes_dims_rope=(16, 56, 56),
    ),
    # SANA's linear-attention blocks at hidden 1536, 18 layers, DC-AE latents (32 channels, f32): 0.68B
    "sana": dict(
        in_channels=32,
        out_channels=32,
        num_attention_heads=HEADS,
        attention_head_dim=HEAD_DIM,
        num_layers=18,
        num_cross_attention_heads=HEADS,
        cross_attention_head_dim=HEAD_DIM,
        cross_attention_dim=HIDDEN,
        caption_channels=2304,  # Gemma-2-2B
        sample_size=32,
        patch_size=1,
        mlp_ratio=2.5,
    ),
    # Z-Image's single-stream blocks at hidden 1536, 18 layers: 0.67B
    "z_image": dict(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=HIDDEN,
        n_layers=18,
        n_refiner_layers=2,
        n_heads=HEADS,
        n_kv_heads=HEADS,
        qk_norm=True,
        cap_feat_dim=2560,  # Qwen3-4B
        axes_dims=[32, 48, 48],
        axes_lens=[1536, 512, 512],
    ),
}
MID_HEADS, MID_HEAD_DIM, MID_LAYERS = 12, 64, 6
MID = {
    # Qwen-Image's blocks at hidden 768, 6 layers, the real text width: 132M
    "qwen_image": dict(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=MID_LAYERS,
        attention_head_dim=MID_HEAD_DIM,
        num_attention_heads=MID_HEADS,
        joint_attention_dim=3584,
        guidance_embeds=False,
        axes_dims_rope=(8, 28, 28),
    ),
    # SD3.5's joint blocks at hidden 768, 6 layers, the real text widths: 127M
    "sd3": dict(
        sample_size=32,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=MID_LAYERS,
        attention_head_dim=MID_HEAD_DIM,
        num_attention_heads=MID_HEADS,
        joint_attention_dim=4096,
        caption_projection_dim=MID_HEADS * MID_HEAD_DIM,
        pooled_projection_dim=2048,
        pos_embed_max_size=64,
        qk_norm="rms_norm",
    ),
}
MID_RESOLUTION = 256  # 32² latents, 256 image tokens: a step in seconds on one CPU core
REAL_VAE_FACTOR = {"sana": 32}  # DC-AE; the others' VAEs downsample 8×


def bench_model(backbone: str, size: str) -> BenchModel:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; sizes: {', '.join(SIZES)}")
    if size == "tiny":
        return BenchModel(TINY[backbone], vae_factor=2, text_tokens=6, resolution=32)
    if size == "100m":
        if backbone not in MID:
            raise ValueError(f"size 100m is defined for {', '.join(MID)}, not {backbone!r}; use tiny or 0.7b")
        return BenchModel(MID[backbone], vae_factor=8, text_tokens=32, resolution=MID_RESOLUTION)
    return BenchModel(REAL[backbone], REAL_VAE_FACTOR.get(backbone, 8), text_tokens=64, resolution=512)
