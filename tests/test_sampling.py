import torch
from torch import nn

from apexgen.condition import VectorCondition
from apexgen.sampling import euler_sample, few_step_sample, few_step_times, one_step_sample


class ConstantVelocity(nn.Module):
    """F(x, t, c) = c: every trajectory is a straight line with constant velocity."""

    def forward(self, x_t, t, cond, shift=None):
        return cond.values.expand_as(x_t)


class LinearInCondition(nn.Module):
    """F(x, t, c) = x·0 + 2·c, to check guidance arithmetic: v(∅) = 0 for the zero condition."""

    def forward(self, x_t, t, cond, shift=None):
        return 2 * cond.values + 0 * x_t


def test_one_step_sampling_is_exact_on_a_constant_velocity_field():
    noise = torch.randn(8, 2, dtype=torch.float64)
    velocity = VectorCondition(torch.randn(8, 2, dtype=torch.float64))
    exact = noise - velocity.values
    torch.testing.assert_close(one_step_sample(ConstantVelocity(), noise, velocity), exact, rtol=0, atol=0)
    for steps in (1, 2, 7, 50):
        torch.testing.assert_close(euler_sample(ConstantVelocity(), noise, velocity, steps), exact, rtol=0, atol=1e-12)


def test_classifier_free_guidance_scales_the_conditional_difference():
    noise = torch.zeros(4, 2, dtype=torch.float64)
    cond = VectorCondition(torch.ones(4, 2, dtype=torch.float64))
    null = VectorCondition(torch.zeros(4, 2, dtype=torch.float64))
    # v = v(∅) + w·(v(c) − v(∅)) = 0 + 3·2 = 6 per unit time, integrated from t = 1 to 0.
    sample = euler_sample(LinearInCondition(), noise, cond, steps=5, guidance=3.0, null_cond=null)
    torch.testing.assert_close(sample, torch.full_like(noise, -6.0))


def test_few_step_grid_starts_at_the_one_step_generator():
    assert few_step_times(1) == [1.0]
    assert few_step_times(2) == [1.0, 0.6]
    times = few_step_times(4)
    assert times[0] == 1.0 and times == sorted(times, reverse=True) and len(times) == 4


def test_few_step_with_one_step_equals_one_step_and_is_reproducible():
    noise = torch.randn(8, 2, dtype=torch.float64)
    velocity = VectorCondition(torch.randn(8, 2, dtype=torch.float64))
    one = few_step_sample(ConstantVelocity(), noise, velocity, 1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(one, one_step_sample(ConstantVelocity(), noise, velocity))
    a = few_step_sample(ConstantVelocity(), noise, velocity, 3, torch.Generator().manual_seed(1))
    b = few_step_sample(ConstantVelocity(), noise, velocity, 3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
