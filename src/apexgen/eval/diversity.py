"""Diversity within a prompt: the mean pairwise distance between the features (Inception features, or any
(N, D) tensor) of images generated for the same prompt. A generator that collapses to one image per
prompt scores 0; the real images of a class give the reference level."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DiversityResult:
    mean: float  # average over prompts of their mean pairwise distance
    per_prompt: dict[int, float]  # group id → its mean pairwise distance


def mean_pairwise_distance(features: Tensor) -> float:
    """Mean Euclidean distance over the N(N−1)/2 unordered pairs of rows of ``features`` (N, D), float64."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"pairwise distances need features (N ≥ 2, D), got shape {tuple(features.shape)}")
    values = features.double().flatten(1)
    distances = torch.cdist(values, values, compute_mode="donot_use_mm_for_euclid_dist")
    count = values.shape[0]
    return (distances.sum() / (count * (count - 1))).item()


def prompt_diversity(features: Tensor, groups: Tensor) -> DiversityResult:
    """Diversity of ``features`` (N, D) grouped by prompt id ``groups`` (N,); every group needs ≥ 2 rows."""
    if groups.shape != features.shape[:1]:
        raise ValueError(f"{features.shape[0]} feature rows but {groups.shape} group ids")
    per_prompt = {int(g): mean_pairwise_distance(features[groups == g]) for g in torch.unique(groups)}
    return DiversityResult(sum(per_prompt.values()) / len(per_prompt), per_prompt)
