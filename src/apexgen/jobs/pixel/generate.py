"""Generating evaluation images: the teacher by Euler ODE with CFG, students in one or a few steps; the
same noise for every model (seeded per image index), in batches, timed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import torch

from apexgen import seeding
from apexgen.condition import TextCondition
from apexgen.jobs.pixel.models import image_shape
from apexgen.progress import progress_bar
from apexgen.sampling import euler_sample, few_step_sample, one_step_sample

log = logging.getLogger(__name__)

Sampler = Literal["teacher", "student"]


@dataclass
class Generated:
    images: torch.Tensor  # (N, C, H, W) in model range, clamped to [-1, 1]
    seconds_per_image: float


def noise_for(indices: torch.Tensor, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The initial noise of image ``i`` depends only on (seed, i): every model starts from the same noise."""
    return torch.stack([torch.randn(shape, generator=seeding.IMAGE_NOISE.generator(seed, int(i))) for i in indices])


@torch.no_grad()
def generate(
    model,
    sampler: Sampler,
    nfe: int,
    embeddings: TextCondition,
    prompt_index: torch.Tensor,
    null: TextCondition,
    guidance: float,
    seed: int,
    batch_size: int,
) -> Generated:
    """Images for prompts ``embeddings.rows(prompt_index)``; ``nfe`` steps (each step of the teacher with
    guidance > 1 evaluates the network twice)."""
    images, started = [], time.perf_counter()
    few_step_noise = seeding.FEW_STEP_NOISE.generator(seed)
    starts = range(0, len(prompt_index), batch_size)
    name = f"{sampler}, NFE {nfe}"
    for start in progress_bar(starts, f"generating ({name})", unit="batch", shown=len(starts) > 1):
        index = torch.arange(start, min(start + batch_size, len(prompt_index)))
        noise, cond = noise_for(index, seed, image_shape(model)), embeddings.rows(prompt_index[index])
        if sampler == "teacher":
            x = euler_sample(model, noise, cond, nfe, guidance, null.expand_rows(len(index)))
        elif nfe == 1:
            x = one_step_sample(model, noise, cond)
        else:
            x = few_step_sample(model, noise, cond, nfe, few_step_noise)
        images.append(x.clamp(-1, 1))
    seconds = time.perf_counter() - started
    if len(starts) > 1:  # a long step (one batch is a preview grid: no line of its own)
        log.info("generated %d images (%s) in %.0f s", len(prompt_index), name, seconds)
    return Generated(torch.cat(images), seconds / len(prompt_index))
