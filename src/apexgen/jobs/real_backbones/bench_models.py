"""Random-init transformers for ``apexgen bench``: each backbone's ``bench_configs`` (in its own file,
``backbones/<name>.py``) at a size of ``backbones/bench_sizes.py`` (``tiny``: the configs measured on our
CPUs, ENVIRONMENT.md; ``100m``: SD3 and Qwen-Image at hidden 768, 6 layers, about 130M parameters;
``0.7b``: about 0.6–0.7B parameters at each backbone's real widths, for a GPU), with the latent and text
sizes the bench feeds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apexgen.backbones.bench_sizes import SIZES
from apexgen.backbones.registry import BACKBONES, adapter_class


@dataclass(frozen=True)
class BenchModel:
    config: dict[str, Any]  # the transformer's constructor arguments
    vae_factor: int  # image pixels per latent pixel: latent side = resolution / vae_factor
    text_tokens: int  # prompt tokens per sample
    resolution: int  # default image side in pixels


MID_RESOLUTION = 256  # 32² latents, 256 image tokens: a step in seconds on one CPU core


def bench_model(backbone: str, size: str) -> BenchModel:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; sizes: {', '.join(SIZES)}")
    adapter = adapter_class(backbone)
    if size not in adapter.bench_configs:
        defined = [name for name in BACKBONES if size in adapter_class(name).bench_configs]
        others = [other for other in SIZES if other in adapter.bench_configs]
        raise ValueError(
            f"size {size} is defined for {', '.join(defined)}, not {backbone!r}; use {' or '.join(others)}"
        )
    config = dict(adapter.bench_configs[size])
    if size == "tiny":
        return BenchModel(config, vae_factor=2, text_tokens=6, resolution=32)
    if size == "100m":
        return BenchModel(config, vae_factor=8, text_tokens=32, resolution=MID_RESOLUTION)
    return BenchModel(config, adapter.vae_factor, text_tokens=64, resolution=512)
