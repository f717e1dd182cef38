"""Save a stock pipeline folder with tiny random-init text encoders, VAE and transformer, for
``apexgen bench --inference --model <folder> --size ...`` (benchmarks/speed.md) where no real model can be
downloaded. Run from the repository root (it imports tests.data.tiny_pipelines):

    PYTHONPATH=src:. python benchmarks/tiny_pipeline.py --backbone sd3 --out runs/pipelines/sd3_tiny
    PYTHONPATH=src:. python benchmarks/tiny_pipeline.py --backbone sd3 --widths 0.7b --out runs/pipelines/sd3_0.7b

``--widths tiny``: the test suite's tiny pipeline (32-wide text, 4-channel latents, VAE factor 2), which
fits ``--size tiny``. ``--widths 0.7b`` (SD3 only): one-layer text encoders and a small VAE at the widths
of the ``0.7b`` bench transformer (CLIP-L 768 + CLIP-G 1280, T5 4096; 16 latent channels, VAE factor 8), so
that ``--size 0.7b`` times a real-size transformer; text encoding and decoding then cost far less than
with the real encoders and VAE, so only the transformer column is the real model's.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel

from apexgen.jobs.real_backbones.bench_models import bench_model
from apexgen.seeding import seeded_global_rng
from tests.data.tiny_pipelines import clip_encoder, clip_tokenizer, t5_tokenizer, tiny_pipeline
from tests.jobs.real_backbones.helpers import SHIFTED_VAES

log = logging.getLogger("tiny_pipeline")

CLIP_WIDTHS = (768, 1280)  # CLIP-L and CLIP-G: their tokens side by side, then padded to the T5 width


def sd3_at_real_widths() -> StableDiffusion3Pipeline:
    """SD3 with the text and latent widths of the 0.7b bench transformer, everything else one layer deep."""
    real = bench_model("sd3", "0.7b").config
    assert sum(CLIP_WIDTHS) == real["pooled_projection_dim"]
    t5 = T5EncoderModel(
        T5Config(vocab_size=64, d_model=real["joint_attention_dim"], d_kv=8, d_ff=37, num_layers=1, num_heads=2)
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32,) * 4,  # 2^3 = 8× downsampling, as the real VAE
        layers_per_block=1,
        latent_channels=real["in_channels"],
        norm_num_groups=32,
        shift_factor=0.0,
    )
    transformer = SD3Transformer2DModel(  # replaced by --size; its widths are those of the real config
        sample_size=real["sample_size"],
        in_channels=real["in_channels"],
        out_channels=real["out_channels"],
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=real["joint_attention_dim"],
        caption_projection_dim=32,
        pooled_projection_dim=real["pooled_projection_dim"],
        pos_embed_max_size=real["pos_embed_max_size"],
    )
    clip_l, clip_g = (clip_encoder(CLIPTextModelWithProjection, width, width) for width in CLIP_WIDTHS)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=clip_l,
        tokenizer=clip_tokenizer(),
        text_encoder_2=clip_g,
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=t5,
        tokenizer_3=t5_tokenizer(),
    )


def build(backbone: str, widths: str, seed: int):
    if widths == "0.7b":
        if backbone != "sd3":
            raise SystemExit(f"--widths 0.7b is written for sd3 only, not {backbone}")
        with seeded_global_rng(seed):
            return sd3_at_real_widths()
    pipeline = tiny_pipeline(backbone, seed)
    if backbone in SHIFTED_VAES:  # the tiny AutoencoderKL has no shift factor (None breaks decoding)
        pipeline.vae.register_to_config(shift_factor=0.0)
    return pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="sd3", choices=("sd3", "flux", "qwen_image", "sana", "z_image"))
    parser.add_argument("--widths", default="tiny", choices=("tiny", "0.7b"), help="the bench size it must fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (args.out / "model_index.json").exists():
        raise SystemExit(f"{args.out} already holds a pipeline; choose another --out")
    build(args.backbone, args.widths, args.seed).save_pretrained(args.out)
    log.info("saved a %s pipeline at the %s widths to %s", args.backbone, args.widths, args.out)


if __name__ == "__main__":
    main()
