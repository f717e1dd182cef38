"""The toy benchmark's metrics: exact values where they exist, and the prepared reference agrees with the
direct computation."""

import pytest
import torch

from apexgen.eval.toy_metrics import (
    ToyReference,
    mmd_squared,
    mode_statistics,
    random_directions,
    sliced_wasserstein2,
)


def gaussian(n: int, seed: int, mean=(0.0, 0.0)) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + torch.tensor(mean)


def test_sliced_w2_of_a_translation_is_the_rms_of_the_projected_offset():
    x, offset = gaussian(500, 0), torch.tensor([0.3, -0.4], dtype=torch.float64)
    directions = random_directions(2, torch.Generator().manual_seed(7))
    expected = (offset @ directions).pow(2).mean().sqrt().item()
    assert sliced_wasserstein2(x + offset, x, torch.Generator().manual_seed(7)) == pytest.approx(expected, rel=1e-12)
    assert sliced_wasserstein2(x, x, torch.Generator().manual_seed(7)) == 0.0


def test_mmd_is_near_zero_for_one_distribution_and_large_for_two():
    same = mmd_squared(gaussian(1000, 0), gaussian(1000, 1))
    apart = mmd_squared(gaussian(1000, 0), gaussian(1000, 1, mean=(3.0, 0.0)))
    assert abs(same) < 0.01
    assert apart > 0.5  # near its maximum, within_x + within_y, for disjoint samples


def test_mode_statistics_count_covered_modes_and_near_samples():
    modes = torch.tensor([[0.0, 0.0], [5.0, 0.0]])
    on_first = 0.01 * gaussian(100, 0)
    coverage, precision = mode_statistics(torch.cat([on_first, torch.full((100, 2), 20.0)]), modes, sigma=0.1)
    assert coverage == 0.5  # the second mode received nothing
    assert precision == 0.5  # half the samples are far from every mode


def test_prepared_reference_gives_the_direct_metrics():
    reference_samples, generated = gaussian(2000, 0), gaussian(2000, 1, mean=(0.2, 0.1))
    modes = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    reference = ToyReference.build(reference_samples, modes, 0.5, torch.Generator().manual_seed(3))
    metrics = reference.metrics(generated)
    assert metrics.sw2 == pytest.approx(
        sliced_wasserstein2(generated, reference_samples, torch.Generator().manual_seed(3)), rel=1e-12
    )
    assert metrics.mmd == pytest.approx(mmd_squared(generated, reference_samples), rel=1e-9)
    assert (metrics.coverage, metrics.precision) == mode_statistics(generated, modes, 0.5)


def test_reference_refuses_a_sample_of_another_size():
    reference = ToyReference.build(gaussian(100, 0), torch.zeros(1, 2), 0.1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="expected"):
        reference.metrics(gaussian(99, 1))
