"""Metrics of the toy benchmark, computed against fresh exact samples (never the training stream).

* sliced Wasserstein-2: W2 of 1-D projections on fixed random directions, root-mean-square over them;
* multi-scale RBF MMD²: unbiased estimator with a sum of Gaussian kernels of several bandwidths;
* coverage: the fraction of the condition's modes that receive at least a quarter of their share;
* precision: the fraction of samples within 3σ of a mode that belongs to their condition.

Every method of a benchmark job is measured against the same exact samples, so what the metrics need of
those (their sorted projections, MMD's within-reference term) is computed once, in ``ToyReference``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


def random_directions(dim: int, rng: torch.Generator, projections: int = PROJECTIONS) -> Tensor:
    """Unit vectors (dim, projections) in float64, the slicing directions of SW2."""
    directions = torch.randn(dim, projections, generator=rng, dtype=torch.float64)
    return directions / directions.norm(dim=0, keepdim=True)


def sorted_projections(x: Tensor, directions: Tensor) -> np.ndarray:
    """(projections, n): each direction's projections of x, sorted. NumPy sorts contiguous float64 rows
    several times faster than ``torch.sort`` along the batch dimension, with the same result."""
    return np.sort((x.double() @ directions).T.contiguous().numpy(), axis=1)


def sliced_wasserstein2_sorted(x_sorted: np.ndarray, y_sorted: np.ndarray) -> float:
    if x_sorted.shape != y_sorted.shape:
        raise ValueError(f"sliced W2 needs equal-size samples, got {x_sorted.shape[1]} and {y_sorted.shape[1]}")
    return float(np.sqrt(np.mean((x_sorted - y_sorted) ** 2)))


def sliced_wasserstein2(x: Tensor, y: Tensor, rng: torch.Generator, projections: int = PROJECTIONS) -> float:
    """SW2 between equal-size samples x, y (n, d): sqrt(mean over directions of W2² of projections)."""
    if x.shape != y.shape:
        raise ValueError(f"sliced W2 needs equal-size samples, got {tuple(x.shape)} and {tuple(y.shape)}")
    directions = random_directions(x.shape[1], rng, projections)
    return sliced_wasserstein2_sorted(sorted_projections(x, directions), sorted_projections(y, directions))


def rbf_kernel(a: Tensor, b: Tensor, bandwidths: tuple[float, ...] = MMD_BANDWIDTHS) -> Tensor:
    """k(a, b) = Σ_h exp(−‖a − b‖² / (2h²)), in float64."""
    distances = torch.cdist(a.double(), b.double()).pow(2)
    return sum(torch.exp(-distances / (2 * h**2)) for h in bandwidths)


def within_mean(x: Tensor) -> float:
    """The mean of k(x_i, x_j) over i ≠ j: one sample's term of the unbiased MMD²."""
    k = rbf_kernel(x, x)
    n = x.shape[0]
    return ((k.sum() - k.diagonal().sum()) / (n * (n - 1))).item()


def mmd_squared(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD² of the first MMD_MAX_SAMPLES rows of x and y; can be slightly negative."""
    x, y = x[:MMD_MAX_SAMPLES], y[:MMD_MAX_SAMPLES]
    return within_mean(x) + within_mean(y) - 2 * rbf_kernel(x, y).mean().item()


def mode_statistics(samples: Tensor, modes: Tensor, sigma: float) -> tuple[float, float]:
    """(coverage, precision) of ``samples`` (n, 2) against one condition's mode centres (M, 2)."""
    distances = torch.cdist(samples.double(), modes.double())
    nearest_distance, nearest = distances.min(dim=1)
    near = nearest_distance < NEAR_MODE_SIGMAS * sigma
    counts = torch.bincount(nearest[near], minlength=modes.shape[0])
    share = samples.shape[0] / modes.shape[0]
    coverage = (counts >= COVERED_SHARE * share).double().mean().item()
    return coverage, near.double().mean().item()


@dataclass(frozen=True)
class ToyReference:
    """Exact samples of one condition and the parts of every metric that depend on them alone."""

    samples: Tensor  # (n, d)
    modes: Tensor  # (M, d): the condition's mode centres
    sigma: float
    directions: Tensor  # (d, PROJECTIONS)
    sorted: np.ndarray  # (PROJECTIONS, n)
    mmd_within: float  # mean k(y_i, y_j), i ≠ j, over the MMD subset

    @classmethod
    def build(cls, samples: Tensor, modes: Tensor, sigma: float, rng: torch.Generator) -> ToyReference:
        directions = random_directions(samples.shape[1], rng)
        return cls(
            samples,
            modes,
            sigma,
            directions,
            sorted_projections(samples, directions),
            within_mean(samples[:MMD_MAX_SAMPLES]),
        )

    def metrics(self, generated: Tensor) -> ToyMetrics:
        """All metrics of ``generated`` (n, d) against this reference."""
        if generated.shape != self.samples.shape:
            raise ValueError(f"expected {tuple(self.samples.shape)} samples, got {tuple(generated.shape)}")
        subset = generated[:MMD_MAX_SAMPLES]
        cross = rbf_kernel(subset, self.samples[:MMD_MAX_SAMPLES]).mean().item()
        coverage, precision = mode_statistics(generated, self.modes, self.sigma)
        return ToyMetrics(
            sliced_wasserstein2_sorted(sorted_projections(generated, self.directions), self.sorted),
            within_mean(subset) + self.mmd_within - 2 * cross,
            coverage,
            precision,
        )


def mean_metrics(per_condition: list[ToyMetrics]) -> ToyMetrics:
    """Average over the evaluation conditions."""
    count = len(per_condition)
    return ToyMetrics(
        *(sum(getattr(m, f) for m in per_condition) / count for f in ("sw2", "mmd", "coverage", "precision"))
    )
