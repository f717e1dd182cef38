import pytest
import torch

from apexgen import flow
from apexgen.batch import Batch
from apexgen.condition import VectorCondition
from apexgen.eval.toy_metrics import sliced_wasserstein2
from apexgen.flow import TimeSampler
from apexgen.objectives.apex import APEX, APEXConfig, APEXSlices
from apexgen.objectives.base import per_sample_error
from apexgen.sampling import euler_sample
from apexgen.shift import ConditionShift
from tests.conftest import tiny_mlp, toy_batch
from tests.objectives.oracles import (
    FixedGeneratorWithLearnedFakeBranch,
    TwoGaussians,
    gaussian_moments,
    gaussian_score,
)

DATA, GENERATED = (0.7, 0.5), (-0.3, 1.3)


def code_batch(size: int, dtype=torch.float64, seed=0) -> Batch:
    """A batch whose condition is the code 1 (the real branch before any shift)."""
    x0 = torch.randn(size, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return Batch(
        x0,
        VectorCondition(torch.ones(size, 1, dtype=dtype)),
        VectorCondition(torch.zeros(size, 1, dtype=dtype)),
    )


def fixed_time(s: float) -> TimeSampler:
    return TimeSampler(t_min=s, t_max=s + 1e-12)


def test_generator_direction_is_the_rescaled_exact_score_difference():
    oracle = TwoGaussians(DATA, GENERATED)
    objective = APEX(APEXConfig(clamp=0), oracle, oracle)
    batch = code_batch(256)
    x_generated = GENERATED[0] + GENERATED[1] * torch.randn(
        256, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    direction = objective.branch_difference(x_generated, batch, torch.Generator().manual_seed(2))
    replay = torch.Generator().manual_seed(2)
    s = TimeSampler()(256, replay, dtype=torch.float64)
    path = flow.sample_path(x_generated, s, replay)
    score_gap = gaussian_score(path.x_t, s, *DATA) - gaussian_score(path.x_t, s, *GENERATED)
    # s_real − s_fake = ((1 − s)/s)·(v_fake − v_real): g moves samples up the real density, down the fake.
    expected = score_gap * (s / (1 - s))[:, None]
    torch.testing.assert_close(direction, expected, rtol=1e-9, atol=1e-9)


def test_generator_update_descends_the_exact_reverse_kl_of_the_noised_distributions():
    s = 0.4
    oracle = TwoGaussians(DATA, GENERATED)
    objective = APEX(APEXConfig(clamp=0, generator_time=fixed_time(s)), oracle, oracle)
    n = 200_000
    mean = torch.tensor(GENERATED[0], dtype=torch.float64, requires_grad=True)
    std = torch.tensor(GENERATED[1], dtype=torch.float64, requires_grad=True)
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x_generated = mean + std * noise
    direction = objective.branch_difference(x_generated, code_batch(n), torch.Generator().manual_seed(4))
    # Moving x_g by +g is gradient descent on the surrogate −⟨sg(g), x_g⟩.
    (-(direction * x_generated).sum(1).mean()).backward()
    update = torch.stack([mean.grad, std.grad])

    mean_exact = torch.tensor(GENERATED[0], dtype=torch.float64, requires_grad=True)
    std_exact = torch.tensor(GENERATED[1], dtype=torch.float64, requires_grad=True)
    kl_at_s(mean_exact, std_exact, s).backward()
    kl_gradient = torch.stack([mean_exact.grad, std_exact.grad])
    # E[g·∂x_g/∂θ] = −(s/(1 − s)²)·∇θ KL(p_g,s ‖ p_data,s) for the DMD direction at a fixed time s.
    torch.testing.assert_close(update, kl_gradient * s / (1 - s) ** 2, rtol=0.03, atol=1e-3)


def kl_at_s(mean: torch.Tensor, std: torch.Tensor, s: float, dims: int = 2) -> torch.Tensor:
    """KL(N(m_g, V_g I) ‖ N(m_d, V_d I)) between the generator's and the data's laws at noise level s."""
    m_g, v_g = gaussian_moments(torch.tensor(s, dtype=torch.float64), mean, std)
    m_d, v_d = gaussian_moments(torch.tensor(s, dtype=torch.float64), *DATA)
    return 0.5 * (dims * v_g / v_d + dims * (m_g - m_d) ** 2 / v_d - dims + dims * torch.log(v_d / v_g))


def test_generator_direction_vanishes_when_the_generator_equals_the_data():
    objective = APEX(APEXConfig(real_velocity="live"), TwoGaussians(DATA, DATA))
    x_generated = torch.randn(64, 2, dtype=torch.float64)
    direction = objective.branch_difference(x_generated, code_batch(64), torch.Generator().manual_seed(0))
    assert torch.equal(direction, torch.zeros_like(direction))


@pytest.mark.parametrize("times", [(1.0,), (1.0, 0.6)])
def test_generator_loss_gradient_moves_samples_by_the_clamped_direction(times):
    model = tiny_mlp(dtype=torch.float64)
    batch = toy_batch(12, dtype=torch.float64)
    objective = APEX(APEXConfig(clamp=0.05, generator_times=times), model, model)
    loss, _ = objective.generator_loss(batch, torch.Generator().manual_seed(5))
    loss.backward()
    actual = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    replay = torch.Generator().manual_seed(5)
    x_in, tau = objective.generator_inputs(batch, replay)
    assert (tau == 1).all() if times == (1.0,) else ((tau == 1).any() and (tau == 0.6).any())
    velocity = model(x_in, tau, batch.cond)
    x_generated = flow.x0_from_velocity(x_in, tau, velocity)
    direction = objective.branch_difference(x_generated, batch, replay).clamp(-0.05, 0.05)
    # ∇θ mean‖v − sg(v − g/τ)‖² = (2/numel)·∇θ⟨sg(g/τ), v⟩; x_g = x_τ − τ·v then moves by +g.
    ((2 / direction.numel()) * (direction / tau[:, None] * velocity).sum()).backward()
    for a, b in zip(actual, model.parameters(), strict=True):
        torch.testing.assert_close(a, b.grad, rtol=1e-10, atol=1e-12)


def test_theorem_1_mix_gradient_is_the_weighted_sum_of_supervised_and_consistency_gradients():
    model = tiny_mlp(dtype=torch.float64)
    batch = toy_batch(32, dtype=torch.float64)
    for weighting in ("uniform", "endpoint"):
        config = APEXConfig(
            generator_form="mix",
            mix_lambda=0.3,
            mix_weighting=weighting,
            slices=APEXSlices(generator=0, anchor=0.5, fake=0.5),
        )
        objective = APEX(config, model, model)
        model.zero_grad()
        objective.mix_loss(batch, torch.Generator().manual_seed(7)).backward()
        mix_gradient = [p.grad.clone() for p in model.parameters()]

        replay = torch.Generator().manual_seed(7)
        t = config.anchor_time(batch.size, replay, dtype=torch.float64)
        path = flow.sample_path(batch.x0, t, replay)
        weight = t * (1 - t) if weighting == "endpoint" else torch.ones_like(t)
        prediction = model(path.x_t, t, batch.cond)
        with torch.no_grad():
            shifted = model(path.x_t, t, batch.cond, shift=config.condition_shift)
        supervised = (weight * per_sample_error(prediction, path.velocity)).mean()
        consistency = (weight * per_sample_error(prediction, shifted)).mean()
        model.zero_grad()
        ((1 - 0.3) * supervised + 0.3 * consistency).backward()
        for a, p in zip(mix_gradient, model.parameters(), strict=True):
            assert (a - p.grad).norm() <= 1e-6 * p.grad.norm() + 1e-15


def test_fake_branch_trained_on_a_fixed_generator_recovers_its_distribution():
    torch.manual_seed(0)
    matrix, bias = torch.tensor([[0.5, 0.2], [0.0, 0.3]]), torch.tensor([1.0, -0.5])
    learned = tiny_mlp(cond_dim=1)
    model = FixedGeneratorWithLearnedFakeBranch(matrix, bias, learned)
    shift = ConditionShift(a=-1.0, b=0.0)
    objective = APEX(APEXConfig(condition_shift=shift), model, model)
    optimizer = torch.optim.Adam(learned.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    evaluation = code_batch(4000, dtype=torch.float32, seed=9)
    noise = torch.randn(4000, 2, generator=torch.Generator().manual_seed(10))
    generated = noise @ matrix.T + bias

    def fake_branch_samples():
        fake = lambda x, t, cond: model(x, t, cond, shift=shift)  # noqa: E731
        return euler_sample(
            fake, torch.randn(4000, 2, generator=torch.Generator().manual_seed(11)), evaluation.cond, 30
        )

    before = sliced_wasserstein2(fake_branch_samples(), generated, torch.Generator().manual_seed(0))
    for _ in range(800):
        optimizer.zero_grad()
        objective.fake_loss(code_batch(256, dtype=torch.float32, seed=None or 0), generator).backward()
        optimizer.step()
    after = sliced_wasserstein2(fake_branch_samples(), generated, torch.Generator().manual_seed(0))
    assert after < 0.1 < before


def test_apex_rows_split_as_configured_and_report_the_branch_gap():
    model = tiny_mlp()
    objective = APEX(APEXConfig(slices=APEXSlices(0.5, 0.25, 0.25)), model, model)
    output = objective.loss("student", toy_batch(16), torch.Generator().manual_seed(0))
    assert set(output.terms) == {"anchor", "fake", "generator"}
    assert output.diagnostics["branch_gap"] > 0
    mix = APEX(APEXConfig(generator_form="both", slices=APEXSlices(0.5, 0.25, 0.25)), model, model)
    assert set(mix.loss("student", toy_batch(16), torch.Generator().manual_seed(0)).terms) == {
        "mix",
        "fake",
        "generator",
    }


def test_reference_options():
    model, teacher = tiny_mlp(), tiny_mlp(seed=3)
    assert APEX(APEXConfig(real_velocity="reference"), model, teacher).reference is teacher
    assert APEX(APEXConfig(real_velocity="reference", reference="live"), model).reference is model
    ema = APEX(APEXConfig(real_velocity="reference", reference="ema", reference_ema_decay=0.5), model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before = [p.clone() for p in ema.reference.parameters()]
    ema.after_update("student")
    for b, e, p in zip(before, ema.reference.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(e, 0.5 * b + 0.5 * p)
    with pytest.raises(ValueError, match="teacher"):
        APEX(APEXConfig(enhanced_ratio=1.0), model)


def test_fake_warmup_trains_only_the_fake_branch_first():
    model = tiny_mlp()
    objective = APEX(APEXConfig(fake_warmup=3, fake_updates=1), model, model)
    assert [objective.schedule(step) for step in (0, 2, 3)] == [["fake"], ["fake"], ["fake", "student"]]
    assert set(objective.parameter_groups()) == {"student", "fake"}
    output = objective.loss("fake", toy_batch(16), torch.Generator().manual_seed(0))
    assert set(output.terms) == {"fake"}
    assert [objective.finished_groups(step) for step in (0, 3)] == [[], []]  # fake updates go on after it


def test_the_fake_group_is_finished_after_a_warm_up_without_fake_updates():
    config = APEXConfig(fake_warmup=3)
    assert [config.finished_groups(step) for step in (0, 2, 3, 9)] == [[], [], ["fake"], ["fake"]]
    assert APEXConfig().finished_groups(5) == []
