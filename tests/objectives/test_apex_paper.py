"""The paper's objective (METHOD §3, Eq. 11–25), in float64 where the answer is exact."""

import pytest
import torch
from torch import Tensor, nn

from apexgen import flow
from apexgen.backbones.base import FlowBackbone
from apexgen.batch import Batch
from apexgen.condition import VectorCondition
from apexgen.config import build
from apexgen.flow import TimeSampler
from apexgen.objectives.apex import APEX, APEXConfig
from apexgen.objectives.apex_paper import paper_terms
from apexgen.objectives.base import per_sample_error
from tests.conftest import tiny_mlp


class DisjointBranches(FlowBackbone):
    """The real branch (condition code +1) and the shifted branch (any other code) are two networks with
    disjoint parameters, so a test can see which branch a gradient reaches."""

    text_projection = "code"

    def __init__(self):
        super().__init__()
        self.code = nn.Identity()
        self.real, self.fake = (
            tiny_mlp(cond_dim=1, dtype=torch.float64),
            tiny_mlp(cond_dim=1, dtype=torch.float64, seed=1),
        )

    def velocity(self, x_t: Tensor, t: Tensor, cond: VectorCondition) -> Tensor:
        code = self.code(cond.values)
        real = self.real(x_t, t, VectorCondition(torch.ones_like(code)))
        fake = self.fake(x_t, t, VectorCondition(torch.ones_like(code)))
        return torch.where(code == 1, real, fake)


def real_batch(size: int = 24) -> Batch:
    x0 = torch.randn(size, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ones = torch.ones(size, 1, dtype=torch.float64)
    return Batch(x0, VectorCondition(ones), VectorCondition(0 * ones))


def paper(**changes) -> APEXConfig:
    return build(APEXConfig, {"preset": "paper", "condition_shift": {"a": -1.0, "b": 0.0}, **changes})


def gradients(module: nn.Module) -> list[Tensor | None]:
    return [None if p.grad is None else p.grad.clone() for p in module.parameters()]


def reaches(grads: list[Tensor | None]) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in grads)


def test_endpoint_and_velocity_errors_differ_by_t_squared():
    """Eq. 18–19: f^x(F) − f^x(V) = −t·(F − V), so ‖f^x(F) − f^x(V)‖² = t²·‖F − V‖²."""
    generator = torch.Generator().manual_seed(0)
    x_t, velocity, other = (torch.randn(16, 2, 3, generator=generator, dtype=torch.float64) for _ in range(3))
    t = torch.rand(16, generator=generator, dtype=torch.float64)
    endpoint = per_sample_error(flow.x0_from_velocity(x_t, t, velocity), flow.x0_from_velocity(x_t, t, other))
    torch.testing.assert_close(endpoint, t**2 * per_sample_error(velocity, other), rtol=1e-12, atol=0)


@pytest.mark.parametrize("mix_lambda", [0.0, 0.3, 1.0])
def test_theorem_1_with_the_paper_weighting(mix_lambda):
    """∇θ L_mix = ∇θ[(1 − λ)·L_sup + λ·L_cons], both weighted by 1/ω(t) = t/(1 − t) in endpoint space."""
    model = tiny_mlp(cond_dim=1, dtype=torch.float64)
    config = paper(mix_lambda=mix_lambda, anchor_time={"t_max": 0.9})  # weights ≤ 7.3: the cap of 10 is idle
    objective = APEX(config, model)
    batch = real_batch()
    paper_terms(objective, batch, torch.Generator().manual_seed(7)).mix.backward()
    mix_gradient = gradients(model)

    model.zero_grad()
    replay = torch.Generator().manual_seed(7)
    t = config.anchor_time(batch.size, replay, dtype=torch.float64)
    path = flow.sample_path(batch.x0, t, replay)
    prediction = model(path.x_t, t, batch.cond)
    with torch.no_grad():
        v_fake = model(path.x_t, t, batch.cond, shift=config.condition_shift)
    inverse_omega = t / (1 - t)
    endpoint = flow.x0_from_velocity(path.x_t, t, prediction)
    supervised = (inverse_omega * per_sample_error(endpoint, batch.x0)).mean()
    consistency = (inverse_omega * per_sample_error(endpoint, flow.x0_from_velocity(path.x_t, t, v_fake))).mean()
    ((1 - mix_lambda) * supervised + mix_lambda * consistency).backward()
    for a, p in zip(mix_gradient, model.parameters(), strict=True):
        assert (a - p.grad).norm() <= 1e-6 * p.grad.norm() + 1e-15


def test_the_weight_is_t_cubed_over_one_minus_t_with_a_cap():
    objective = APEX(paper(mix_weight_cap=10.0), tiny_mlp(cond_dim=1))
    t = torch.tensor([0.5, 0.9, 0.95, 0.999999], dtype=torch.float64)
    expected = torch.tensor([0.125 / 0.5, 0.729 / 0.1, 10.0, 10.0], dtype=torch.float64)
    torch.testing.assert_close(objective.mix_weight(t), expected)


@pytest.mark.parametrize("fake_gradient", [True, False])
def test_l_fake_reaches_the_real_branch_through_x_fake_only_when_asked(fake_gradient):
    """Eq. 11: ∂x_fake/∂θ = −t·∂F_θ(x_t, t, c)/∂θ; off, L_fake trains the shifted branch alone."""
    model = DisjointBranches()
    objective = APEX(paper(paper={"fake_gradient": fake_gradient}), model)
    paper_terms(objective, real_batch(), torch.Generator().manual_seed(0)).fake.backward()
    assert reaches(gradients(model.fake))
    assert reaches(gradients(model.real)) == fake_gradient


def test_v_fake_is_detached_in_l_mix():
    """Eq. 14, 17: the shifted branch is a stop-gradient reference in L_mix; only the real branch learns."""
    model = DisjointBranches()
    objective = APEX(paper(mix_lambda=1.0), model)
    paper_terms(objective, real_batch(), torch.Generator().manual_seed(0)).mix.backward()
    assert reaches(gradients(model.real)) and not reaches(gradients(model.fake))


def test_the_fake_trajectory_reuses_the_real_paths_noise_and_time_unless_fresh():
    model = tiny_mlp(cond_dim=1, dtype=torch.float64)
    batch = real_batch()
    path = flow.sample_path(batch.x0, torch.full((batch.size,), 0.3, dtype=torch.float64), None)
    x_fake = batch.x0 + 1
    from apexgen.objectives.apex_paper import fake_trajectory

    same = fake_trajectory(APEX(paper(), model), path, x_fake, torch.Generator().manual_seed(0))
    assert torch.equal(same.noise, path.noise) and torch.equal(same.t, path.t)
    torch.testing.assert_close(same.x_t, 0.3 * path.noise + 0.7 * x_fake)
    fresh_config = paper(paper={"fake_noise": "fresh", "fake_time": "fresh"}, fake_time=TimeSampler(t_min=0.5))
    fresh = fake_trajectory(APEX(fresh_config, model), path, x_fake, torch.Generator().manual_seed(0))
    assert not torch.equal(fresh.noise, path.noise) and (fresh.t >= 0.5).all()


def test_the_paper_form_needs_no_teacher_and_trains_both_terms_on_real_rows():
    config = paper()
    assert not config.needs_reference() and config.needs_images()
    objective = APEX(config, tiny_mlp(cond_dim=1, dtype=torch.float64))
    assert set(objective.networks()) == {"student"}
    output = objective.loss("student", real_batch(), torch.Generator().manual_seed(0))
    assert set(output.terms) == {"paper_fake", "mix"}
