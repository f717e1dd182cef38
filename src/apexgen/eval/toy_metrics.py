"""Metrics of the toy benchmark, computed against fresh exact samples (never the training stream).

* sliced Wasserstein-2: W2 of 1-D projections on fixed random directions, root-mean-square over them;
* multi-scale RBF MMD²: unbiased estimator with a sum of Gaussian kernels of several bandwidths;
* coverage: the fraction of the condition's modes that receive at least a quarter of their share;
* precision: the fraction of samples within 3σ of a mode that belongs to their condition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

PROJECTIONS = 256
MMD_BANDWIDTHS = (0.05, 0.1, 0.2, 0.5, 1.0)
MMD_MAX_SAMPLES = 1500  # the kernel matrices are O(n²); a subset keeps MMD cheap and unbiased
NEAR_MODE_SIGMAS = 3.0
COVERED_SHARE = 0.25  # a mode is covered if it receives ≥ 25% of the samples it would get


@dataclass(frozen=True)
class ToyMetrics:
    sw2: float
    mmd: float
    coverage: float
    precision: float


def sliced_wasserstein2(x: Tensor, y: Tensor, generator: torch.Generator, projections: int = PROJECTIONS) -> float:
    """SW2 between equal-size samples x, y (n, d): sqrt(mean over directions of W2² of projections)."""
    if x.shape != y.shape:
        raise ValueError(f"sliced W2 needs equal-size samples, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double()
    directions = torch.randn(x.shape[1], projections, generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)
    x_sorted = (x @ directions).sort(dim=0).values
    y_sorted = (y @ directions).sort(dim=0).values
    return (x_sorted - y_sorted).pow(2).mean().sqrt().item()


def mmd_squared(x: Tensor, y: Tensor, bandwidths: tuple[float, ...] = MMD_BANDWIDTHS) -> float:
    """Unbiased MMD² with k(a, b) = Σ_h exp(−‖a − b‖² / (2h²)); can be slightly negative."""
    x, y = x[:MMD_MAX_SAMPLES].double(), y[:MMD_MAX_SAMPLES].double()

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        distances = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-distances / (2 * h**2)) for h in bandwidths)

    n, m = x.shape[0], y.shape[0]
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return (within_x + within_y - 2 * k_xy.mean()).item()


def mode_statistics(samples: Tensor, modes: Tensor, sigma: float) -> tuple[float, float]:
    """(coverage, precision) of ``samples`` (n, 2) against one condition's mode centres (M, 2)."""
    distances = torch.cdist(samples.double(), modes.double())
    nearest_distance, nearest = distances.min(dim=1)
    near = nearest_distance < NEAR_MODE_SIGMAS * sigma
    counts = torch.bincount(nearest[near], minlength=modes.shape[0])
    share = samples.shape[0] / modes.shape[0]
    coverage = (counts >= COVERED_SHARE * share).double().mean().item()
    return coverage, near.double().mean().item()


def toy_metrics(samples: Tensor, reference: Tensor, modes: Tensor, sigma: float, generator) -> ToyMetrics:
    """All metrics for one condition: ``samples`` against exact ``reference`` samples and ``modes``."""
    coverage, precision = mode_statistics(samples, modes, sigma)
    return ToyMetrics(
        sliced_wasserstein2(samples, reference, generator),
        mmd_squared(samples, reference),
        coverage,
        precision,
    )


def mean_metrics(per_condition: list[ToyMetrics]) -> ToyMetrics:
    """Average over the evaluation conditions."""
    count = len(per_condition)
    return ToyMetrics(
        *(sum(getattr(m, f) for m in per_condition) / count for f in ("sw2", "mmd", "coverage", "precision"))
    )
