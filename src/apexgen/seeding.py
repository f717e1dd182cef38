"""Every random stream of apexgen in one table, and the seeding of what libraries draw from torch's global
generator.

Everything apexgen draws itself comes from a ``torch.Generator`` of its own, seeded by one of the
``Stream``s below from the run's seed (and, for streams of many generators, an index: a rank, an epoch, an
image). What libraries draw from the global generator (peft's LoRA initialisation, a diffusers pipeline's
few-step re-noising, a freshly built head) is seeded inside ``seeded_global_rng(seed)``, which restores the
caller's global state afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Stream:
    """Generator ``index`` of this stream, for a run seeded ``seed``, is seeded
    ``offset + seed · per_seed + index · stride``."""

    offset: int = 0
    per_seed: int = 1
    stride: int = 1

    def seed(self, seed: int, index: int = 0) -> int:
        return self.offset + seed * self.per_seed + index * self.stride

    def generator(self, seed: int, index: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
        return torch.Generator(device).manual_seed(self.seed(seed, index))


# Training (train/loop.py): each rank's noise, times and dropout (index: the rank), the objective's
# diagnostics (index: the step), and the library draws of building the objective (seeded_global_rng).
TRAINING = Stream(stride=1_000_003)
# (DIAGNOSTICS was offset 7,000,001 until 2026-12-02, which met rank 7's stream at step 20.)
DIAGNOSTICS = Stream(offset=2**40)
OBJECTIVE_INIT = Stream(offset=1)
# Data: the order of each epoch (index: the epoch), the latent draw of each record (index: the record);
# distinct for indices below 2^32.
EPOCH_ORDER = Stream(per_seed=2**32)
RECORD_ENCODING = Stream(per_seed=2**32)
# The Fashion-MNIST job's evaluation: each image's initial noise (index: the image; every model starts from the
# same noise) and the re-noising of few-step samplers.
IMAGE_NOISE = Stream(per_seed=1_000_003)
FEW_STEP_NOISE = Stream(offset=1)
# The toy benchmark, per (dataset, seed): evaluation noise, exact reference samples, the metric's
# projections (index: the evaluation condition) and the student's data and sampler.
TOY_EVAL_NOISE = Stream(offset=1_000)
TOY_REFERENCE = Stream(offset=2_000)
TOY_METRIC = Stream(offset=3_000)
TOY_STUDENT = Stream(offset=4_000)


@contextmanager
def seeded_global_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Within the block the global generator (and, on a CUDA ``device``, that device's) starts from ``seed``."""
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
