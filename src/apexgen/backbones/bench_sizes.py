"""The widths the backbones' ``bench_configs`` share (``apexgen bench --size``): ``tiny`` (the configs
measured on our CPUs, ENVIRONMENT.md; text width 32), ``100m`` (hidden 768 = 12 heads × 64, 6 layers,
the real text widths: about 130M parameters, the size whose memory a CPU can measure above the counter's
noise) and ``0.7b`` (hidden 12 heads × 128 at each backbone's real text widths, for a GPU).

A backbone writes its table with :func:`table`: the real model's settings that every size keeps, then what
each size changes, so that a size reads as its difference from the real model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SIZES = ("tiny", "100m", "0.7b")

TINY_TEXT = 32
HEADS, HEAD_DIM = 12, 128
HIDDEN = HEADS * HEAD_DIM
MID_HEADS, MID_HEAD_DIM, MID_LAYERS = 12, 64, 6
MID_HIDDEN = MID_HEADS * MID_HEAD_DIM


def blocks(layers: int, heads: int = HEADS, head_dim: int = HEAD_DIM) -> dict[str, int]:
    """Depth and attention width under the config names most diffusers transformers use."""
    return dict(num_layers=layers, num_attention_heads=heads, attention_head_dim=head_dim)


TINY_BLOCKS = blocks(2, heads=2, head_dim=16)
MID_BLOCKS = blocks(MID_LAYERS, heads=MID_HEADS, head_dim=MID_HEAD_DIM)


def table(
    real: Mapping[str, Any],
    *,
    tiny: Mapping[str, Any],
    large: Mapping[str, Any],
    mid: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """``bench_configs`` by size name: ``real`` updated by each size's own settings (``mid``: ``100m``, where
    the backbone defines it; ``large``: ``0.7b``)."""
    sizes = {"tiny": tiny, "100m": mid, "0.7b": large}
    return {name: {**real, **own} for name, own in sizes.items() if own is not None}
