"""Tiny random-init configs of the five diffusers backbones (ENVIRONMENT.md), matching inputs, and each
stock pipeline's own way of calling its transformer, written from the pipeline's code so that the
adapters can be compared with it."""

from __future__ import annotations

import pytest
import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    AutoencoderKLQwenImage,
    FluxPipeline,
    QwenImagePipeline,
)
from torch import Tensor

from apexgen.backbones.bench_sizes import TINY_TEXT
from apexgen.backbones.registry import BACKBONES, adapter_class
from apexgen.batch import Batch, DataStream
from apexgen.condition import TextCondition

NAMES = ("sd3", "flux", "qwen_image", "sana", "z_image")
TEXT_DIM = TINY_TEXT
TOKENS = 6
LATENT_SHAPE = (4, 16, 16)  # (C, H, W) of the latents every tiny backbone denoises
POOLED = tuple(name for name in BACKBONES if adapter_class(name).takes_pooled())  # and no text mask

# the package's tiny configs (apexgen bench --size tiny), shared so they cannot drift
CONFIGS = {name: adapter_class(name).bench_configs["tiny"] for name in BACKBONES}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny transformers run fastest on one thread; with two on a busy machine, spinning OpenMP workers
    made each small matmul about 1000× slower (2 s instead of 2 ms for a training step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_backbone(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return adapter_class(name).from_config(CONFIGS[name])


def text_condition(name: str, batch: int, generator: torch.Generator, null: bool = False) -> TextCondition:
    """Random prompt embeddings; masked backbones get rows with 1–2 padding tokens (row 0 has none)."""
    tokens = torch.randn(batch, TOKENS, TEXT_DIM, generator=generator)
    pooled = torch.randn(batch, TEXT_DIM, generator=generator) if name in POOLED else None
    if null:
        tokens, pooled = tokens.zero_(), None if pooled is None else pooled.zero_()
    mask = None
    if name not in POOLED:
        valid = torch.tensor([TOKENS - (row % 3) for row in range(batch)])
        mask = torch.arange(TOKENS)[None, :] < valid[:, None]
        if null:
            mask = torch.ones_like(mask)
    return TextCondition(tokens, pooled, mask)


def latents(batch: int, generator: torch.Generator) -> Tensor:
    return torch.randn(batch, *LATENT_SHAPE, generator=generator)


class RandomLatents(DataStream):
    """An endless stream of random latents with random text conditions (no real data needed)."""

    def __init__(self, name: str, batch: int, seed: int = 0):
        self.name, self.batch = name, batch
        self.generator = torch.Generator().manual_seed(seed)

    def __next__(self) -> Batch:
        x0 = latents(self.batch, self.generator)
        cond = text_condition(self.name, self.batch, self.generator)
        return Batch(x0, cond, text_condition(self.name, self.batch, self.generator, null=True))


def stock_velocity(name: str, transformer, x: Tensor, t: Tensor, cond: TextCondition) -> Tensor:
    """The velocity ε − x0 as each stock pipeline computes it: its transformer call, with the inputs built
    as the pipeline builds them from the scheduler's timestep T = 1000·t, and its own packing helpers."""
    batch, channels, height, width = x.shape
    timestep = t.to(torch.float32) * 1000  # scheduler.timesteps
    if name == "sd3":
        return transformer(
            hidden_states=x,
            timestep=timestep,
            encoder_hidden_states=cond.tokens,
            pooled_projections=cond.pooled,
            return_dict=False,
        )[0]
    if name == "flux":
        packed = FluxPipeline._pack_latents(x, batch, channels, height, width)
        output = transformer(
            hidden_states=packed,
            timestep=timestep.to(x.dtype) / 1000,
            guidance=None,
            pooled_projections=cond.pooled,
            encoder_hidden_states=cond.tokens,
            txt_ids=torch.zeros(cond.tokens.shape[1], 3, dtype=x.dtype),
            img_ids=FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2, x.device, x.dtype),
            return_dict=False,
        )[0]
        return FluxPipeline._unpack_latents(output, height, width, vae_scale_factor=1)
    if name == "qwen_image":
        packed = QwenImagePipeline._pack_latents(x, batch, channels, height, width)
        output = transformer(
            hidden_states=packed,
            timestep=timestep.to(x.dtype) / 1000,
            guidance=None,
            encoder_hidden_states_mask=cond.mask,
            encoder_hidden_states=cond.tokens,
            img_shapes=[[(1, height // 2, width // 2)]] * batch,
            return_dict=False,
        )[0]
        return QwenImagePipeline._unpack_latents(output, height, width, vae_scale_factor=1).squeeze(2)
    if name == "sana":
        return transformer(
            x,
            encoder_hidden_states=cond.tokens,
            encoder_attention_mask=cond.mask,
            timestep=timestep * transformer.config.timestep_scale,
            return_dict=False,
        )[0]
    if name == "z_image":
        captions = [tokens[mask] for tokens, mask in zip(cond.tokens, cond.mask, strict=True)]
        outputs = transformer(list(x.unsqueeze(2).unbind(0)), (1000 - timestep) / 1000, captions, return_dict=False)[0]
        return -torch.stack([output.float() for output in outputs], dim=0).squeeze(2)
    raise ValueError(name)


def tiny_vae(name: str):
    """A tiny VAE of the kind the pipeline expects, with a spatial factor of 2 (never run: latents out)."""
    if name == "qwen_image":
        return AutoencoderKLQwenImage(
            base_dim=8,
            z_dim=4,
            dim_mult=[1, 2],
            num_res_blocks=1,
            temperal_downsample=[False],
            latents_mean=[0.0] * 4,
            latents_std=[1.0] * 4,
        )
    if name == "sana":
        return AutoencoderDC(
            latent_channels=4,
            attention_head_dim=8,
            encoder_block_types="ResBlock",
            decoder_block_types="ResBlock",
            encoder_block_out_channels=(8, 16),
            decoder_block_out_channels=(8, 16),
            encoder_layers_per_block=(1, 1),
            decoder_layers_per_block=(1, 1),
            encoder_qkv_multiscales=((), ()),
            decoder_qkv_multiscales=((), ()),
        )
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )
