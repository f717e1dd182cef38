"""No gradient reaches θ through a sample (x_f, x_g inside x_s, x_t), a target (T, g, v*) or a frozen
network: every forward call sees inputs that do not require grad, and only the networks a group
updates receive gradients."""

import copy

import pytest
import torch
from torch import nn

from apexgen.config import build
from apexgen.objectives import MethodsConfig, build_objective
from apexgen.objectives.apex import APEXConfig, APEXSlices
from apexgen.objectives.dmd2 import DMD2Config
from apexgen.objectives.regression import RegressionConfig
from apexgen.train.optimizers import only_group_trainable
from tests.conftest import tiny_mlp, toy_batch
from tests.methods import default_methods


class Spy(nn.Module):
    """Wraps a backbone and records, per call, whether any input requires grad."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls: list[bool] = []

    def forward(self, x_t, t, cond, shift=None):
        tensors = [x_t, t, cond.values]
        self.calls.append(any(x.requires_grad for x in tensors))
        return self.model(x_t, t, cond, shift=shift)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)


METHOD_VARIANTS = {
    "apex dmd": ("apex", default_methods()),
    "apex mix+dmd, reference with CFG": (
        "apex",
        MethodsConfig(
            apex=APEXConfig(generator_form="both", real_velocity="reference", real_guidance=2.0, enhanced_ratio=1.0)
        ),
    ),
    "apex paper form, no gradient through x_fake": (
        "apex",
        MethodsConfig(apex=build(APEXConfig, {"preset": "paper", "paper": {"fake_gradient": False}})),
    ),
    "apex private fake network": (
        "apex",
        MethodsConfig(apex=APEXConfig(fake_network="private", fake_updates=2, slices=APEXSlices(generator=1, fake=0))),
    ),
    "twinflow": ("twinflow", MethodsConfig()),
    "dmd2": ("dmd2", MethodsConfig()),
    "consistency": ("consistency", MethodsConfig()),
    "regression": ("regression", MethodsConfig(regression=RegressionConfig(pairs=64, teacher_steps=4))),
}


@pytest.mark.parametrize("variant", list(METHOD_VARIANTS))
def test_no_forward_call_sees_an_input_that_requires_grad(variant):
    name, methods = METHOD_VARIANTS[variant]
    student, teacher = Spy(tiny_mlp()), Spy(tiny_mlp(seed=1).requires_grad_(False))
    objective = build_objective(name, methods, student, teacher)
    if getattr(objective, "fake", None) is not None:
        objective.fake = Spy(objective.fake)
    batch = toy_batch(16)
    objective.prepare(iter([batch] * 300), torch.Generator().manual_seed(0))
    groups = objective.parameter_groups()
    for group in groups:
        with only_group_trainable(groups, group):
            objective.loss(group, batch, torch.Generator().manual_seed(1)).loss.backward()
    fake_calls = objective.fake.calls if getattr(objective, "fake", None) is not None else []
    calls = student.calls + teacher.calls + fake_calls
    assert calls and not any(calls)
    assert all(p.grad is None for p in teacher.parameters())


def test_dmd2_groups_update_only_their_own_networks():
    student, teacher = tiny_mlp(), tiny_mlp(seed=1).requires_grad_(False)
    methods = MethodsConfig(dmd2=DMD2Config(weight_gan_generator=0.1))
    objective = build_objective("dmd2", methods, student, teacher)
    groups = objective.parameter_groups()
    batch = toy_batch(16)
    for group, other in (("critic", "generator"), ("generator", "critic")):
        with only_group_trainable(groups, group):
            objective.loss(group, batch, torch.Generator().manual_seed(0)).loss.backward()
        assert all(p.grad is not None for p in groups[group])
        assert all(p.grad is None for p in groups[other])
        assert all(p.requires_grad for p in groups[other])  # restored afterwards
        for p in groups[group]:
            p.grad = None


def test_dmd2_generator_gan_term_flows_through_the_fake_network_without_updating_it():
    student, teacher = tiny_mlp(), tiny_mlp(seed=1).requires_grad_(False)
    objective = build_objective(
        "dmd2",
        MethodsConfig(dmd2=DMD2Config(weight_gan_generator=1.0, weight_distribution_matching=0.0)),
        student,
        teacher,
    )
    groups = objective.parameter_groups()
    with only_group_trainable(groups, "generator"):
        output = objective.loss("generator", toy_batch(16), torch.Generator().manual_seed(0))
        output.loss.backward()
    assert set(output.terms) == {"gan_generator"}
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_consistency_target_is_an_ema_of_the_student():
    student, teacher = tiny_mlp(), tiny_mlp(seed=1).requires_grad_(False)
    objective = build_objective("consistency", MethodsConfig(), student, teacher)
    target_before = copy.deepcopy(objective.target)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    objective.after_update("student")
    mu = objective.config.ema_decay
    for old, new, p in zip(
        target_before.parameters(), objective.target.parameters(), student.parameters(), strict=True
    ):
        torch.testing.assert_close(new, mu * old + (1 - mu) * p)
    assert not any(p.requires_grad for p in objective.target.parameters())
