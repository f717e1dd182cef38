"""Seeding what libraries draw from torch's global generator (peft's LoRA initialisation, a diffusers
pipeline's few-step re-noising, a freshly built head): inside ``seeded_global_rng(seed)`` those draws come
from ``seed``, and the caller's global state is restored afterwards. Everything apexgen draws itself uses
its own ``torch.Generator``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded_global_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Within the block the global generator (and, on a CUDA ``device``, that device's) starts from ``seed``."""
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
