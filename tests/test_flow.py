import pytest
import torch

from apexgen import flow
from apexgen.flow import TimeSampler


def draws(n=64, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, 3, 4, generator=g, dtype=dtype)
    noise = torch.randn(n, 3, 4, generator=g, dtype=dtype)
    t = torch.rand(n, generator=g, dtype=dtype) * 0.98 + 0.01
    return x0, noise, t


def test_path_endpoints():
    x0, noise, _ = draws()
    ones, zeros = torch.ones(x0.shape[0], dtype=x0.dtype), torch.zeros(x0.shape[0], dtype=x0.dtype)
    assert torch.equal(flow.interpolate(x0, noise, ones), noise)
    assert torch.equal(flow.interpolate(x0, noise, zeros), x0)


def test_conversions_round_trip_with_the_true_velocity():
    x0, noise, t = draws()
    x_t = flow.interpolate(x0, noise, t)
    v = flow.velocity_target(x0, noise)
    torch.testing.assert_close(flow.x0_from_velocity(x_t, t, v), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(flow.noise_from_velocity(x_t, t, v), noise, rtol=0, atol=1e-12)
    torch.testing.assert_close(flow.velocity_from_x0(x_t, t, x0), v, rtol=0, atol=1e-10)


def test_score_difference_is_rescaled_velocity_difference():
    x0, noise, t = draws()
    x_t = flow.interpolate(x0, noise, t)
    v_a, v_b = torch.randn_like(x_t), torch.randn_like(x_t)
    difference = flow.score_from_velocity(x_t, t, v_a) - flow.score_from_velocity(x_t, t, v_b)
    torch.testing.assert_close(flow.score_difference_from_velocity_difference(v_a - v_b, t), difference)


def test_sample_path_is_reproducible_and_consistent():
    x0, _, t = draws()
    a = flow.sample_path(x0, t, torch.Generator().manual_seed(3))
    b = flow.sample_path(x0, t, torch.Generator().manual_seed(3))
    assert torch.equal(a.noise, b.noise)
    torch.testing.assert_close(a.x_t, flow.interpolate(x0, a.noise, t))
    torch.testing.assert_close(a.velocity, a.noise - x0)


@pytest.mark.parametrize(
    "sampler",
    [TimeSampler(), TimeSampler("logit_normal"), TimeSampler(shift=3.0), TimeSampler(t_min=0.2, t_max=0.5)],
)
def test_time_samplers_stay_in_range_and_use_the_given_generator(sampler):
    t = sampler(10_000, torch.Generator().manual_seed(0))
    assert t.min() >= sampler.t_min and t.max() <= sampler.t_max
    assert torch.equal(t, sampler(10_000, torch.Generator().manual_seed(0)))


def test_time_shift_moves_mass_toward_noise():
    uniform = TimeSampler()(20_000, torch.Generator().manual_seed(0))
    shifted = TimeSampler(shift=3.0)(20_000, torch.Generator().manual_seed(0))
    assert shifted.mean() > uniform.mean() + 0.1
    assert abs(TimeSampler("logit_normal")(20_000, torch.Generator().manual_seed(0)).mean() - 0.5) < 0.01


def test_euler_grid():
    grid = flow.euler_time_grid(4)
    assert grid.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    shifted = flow.euler_time_grid(4, shift=3.0)
    assert shifted[0] == 1 and shifted[-1] == 0 and (shifted[1:-1] > grid[1:-1]).all()


def test_invalid_time_sampler_is_rejected():
    with pytest.raises(ValueError, match="std"):
        TimeSampler(std=0)
