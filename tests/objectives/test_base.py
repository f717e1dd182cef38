import pytest
import torch

from apexgen.objectives.base import minimum_batch, partition, per_sample_error, slice_sizes
from tests.conftest import toy_batch


def test_slices_cover_the_batch_disjointly_in_order():
    batch = toy_batch(10)
    slices = partition(batch, {"generator": 0.5, "anchor": 0.25, "fake": 0.25})
    assert [s.size for s in slices.values()] == [5, 3, 2] or sum(s.size for s in slices.values()) == 10
    joined = torch.cat([s.x0 for s in slices.values()])
    assert torch.equal(joined, batch.x0)


def test_slice_sizes_follow_fractions_and_sum_to_the_batch():
    for size in range(3, 40):
        sizes = slice_sizes({"a": 0.5, "b": 0.25, "c": 0.25}, size)
        assert sum(sizes.values()) == size
        assert all(abs(sizes[k] - f * size) < 1 for k, f in {"a": 0.5, "b": 0.25, "c": 0.25}.items())


def test_zero_fraction_slices_are_omitted():
    slices = partition(toy_batch(8), {"generator": 0.0, "anchor": 0.5, "fake": 0.5})
    assert list(slices) == ["anchor", "fake"]


def test_batch_too_small_for_the_slices_names_the_minimum():
    fractions = {"generator": 0.8, "anchor": 0.1, "fake": 0.1}
    assert minimum_batch(fractions) == 7
    with pytest.raises(ValueError, match="at least 7"):
        slice_sizes(fractions, 6)


def test_targets_never_carry_gradient():
    prediction = torch.randn(4, 3, requires_grad=True)
    target = torch.randn(4, 3, requires_grad=True)
    for kind in ("mse", "barron"):
        per_sample_error(prediction, target, kind).sum().backward()
        assert target.grad is None and prediction.grad is not None


def test_barron_loss_behaves_like_per_sample_rms():
    prediction, target = torch.randn(8, 5, dtype=torch.float64), torch.zeros(8, 5, dtype=torch.float64)
    rms = prediction.pow(2).mean(1).sqrt()
    torch.testing.assert_close(per_sample_error(prediction, target, "barron"), rms, rtol=1e-4, atol=1e-6)
