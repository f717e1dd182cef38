"""Diversity within a prompt: the mean pairwise distance between the features (Inception features, or any
(N, D) tensor, e.g. the pixels themselves) of images generated for the same prompt. A generator that
collapses to one image per prompt scores 0; the real images of a class give the reference level.

Collapse a user can see: the share of near-duplicate pairs within a prompt, pairs whose distance is under
a threshold (``near_duplicate_share``); the text-to-image evaluation calibrates its threshold on the
teacher's own images (``apexgen.jobs.pixel.evaluate.NEAR_DUPLICATE_PIXEL_DISTANCE``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DiversityResult:
    mean: float  # average over prompts of their mean pairwise distance
    per_prompt: dict[int, float]  # group id → its mean pairwise distance


def pairwise_distances(features: Tensor) -> Tensor:
    """The N(N−1)/2 Euclidean distances between the unordered pairs of rows of ``features`` (N, D), float64."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"pairwise distances need features (N ≥ 2, D), got shape {tuple(features.shape)}")
    values = features.double().flatten(1)
    distances = torch.cdist(values, values, compute_mode="donot_use_mm_for_euclid_dist")
    upper = torch.triu_indices(values.shape[0], values.shape[0], offset=1)
    return distances[upper[0], upper[1]]


def mean_pairwise_distance(features: Tensor) -> float:
    """Mean Euclidean distance over the N(N−1)/2 unordered pairs of rows of ``features`` (N, D), float64."""
    return pairwise_distances(features).mean().item()


def within_groups(features: Tensor, groups: Tensor) -> dict[int, Tensor]:
    """The pairwise distances of each group's rows: ``groups`` (N,) holds a prompt id per row of ``features``."""
    if groups.shape != features.shape[:1]:
        raise ValueError(f"{features.shape[0]} feature rows but {groups.shape} group ids")
    return {int(g): pairwise_distances(features[groups == g].flatten(1)) for g in torch.unique(groups)}


def prompt_diversity(features: Tensor, groups: Tensor) -> DiversityResult:
    """Diversity of ``features`` (N, ...) grouped by prompt id ``groups`` (N,); every group needs ≥ 2 rows."""
    per_prompt = {g: d.mean().item() for g, d in within_groups(features, groups).items()}
    return DiversityResult(sum(per_prompt.values()) / len(per_prompt), per_prompt)


def near_duplicate_share(features: Tensor, groups: Tensor, threshold: float) -> float:
    """The share of within-prompt pairs closer than ``threshold``: 0 when every image of a prompt differs
    visibly from the others, 1 when a prompt always draws the same image. Pairs of all prompts together."""
    if not threshold > 0:
        raise ValueError(f"the near-duplicate threshold must be > 0, got {threshold}")
    distances = torch.cat(list(within_groups(features, groups).values()))
    return (distances < threshold).double().mean().item()
