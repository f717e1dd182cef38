"""APEX with a fake network of its own (``fake_network="private"``): each group updates only its own
weights, the LoRA form is a second adapter on the student's frozen base, and the lag diagnostic measures
without changing training."""

import dataclasses

import torch

from apexgen.backbones.lora import AdapterView
from apexgen.data.toy import Ring, ToyStream
from apexgen.jobs.pixel.config import DistillConfig
from apexgen.jobs.pixel.models import make_student, shipped_teacher
from apexgen.objectives import MethodsConfig, build_objective
from apexgen.objectives.apex import APEXConfig, APEXSlices
from apexgen.objectives.base import partition
from apexgen.train.loop import TrainConfig, Trainer
from apexgen.train.optimizers import only_group_trainable
from tests.conftest import tiny_mlp, toy_batch

PRIVATE = APEXConfig(fake_network="private", fake_updates=2, slices=APEXSlices(generator=1.0, fake=0.0))


def test_each_group_updates_only_its_own_network():
    student, teacher = tiny_mlp(), tiny_mlp(seed=1).requires_grad_(False)
    objective = build_objective("apex", MethodsConfig(apex=PRIVATE), student, teacher)
    assert objective.schedule(0) == ["fake", "fake", "student"]
    assert set(objective.networks()) == {"student", "reference", "fake"}
    groups = objective.parameter_groups()
    assert not {id(p) for p in groups["student"]} & {id(p) for p in groups["fake"]}
    for group, other in (("fake", "student"), ("student", "fake")):
        with only_group_trainable(groups, group):
            objective.loss(group, toy_batch(16), torch.Generator().manual_seed(0)).loss.backward()
        assert all(p.grad is not None for p in groups[group])
        assert all(p.grad is None for p in groups[other])
        for p in groups[group]:
            p.grad = None


def test_the_lora_form_is_a_second_adapter_on_the_frozen_base():
    methods = MethodsConfig(apex=PRIVATE)
    networks = make_student(shipped_teacher(), DistillConfig(method="apex"), methods)
    assert isinstance(networks.fake, AdapterView) and networks.fake.name == "fake"
    objective = build_objective("apex", methods, networks.student, networks.teacher, networks.fake)
    names = {id(p): n for n, p in networks.student.named_parameters()}
    groups = objective.parameter_groups()
    assert groups["fake"] and all(".fake." in names[id(p)] for p in groups["fake"])
    assert groups["student"] and all(".default." in names[id(p)] for p in groups["student"])


def trained(lag_every: int) -> tuple[list[torch.Tensor], list[dict]]:
    distribution = Ring()
    teacher = tiny_mlp(cond_dim=distribution.cond_dim, seed=7).requires_grad_(False)
    student = tiny_mlp(cond_dim=distribution.cond_dim, seed=7)
    config = dataclasses.replace(PRIVATE, lag_every=lag_every, lag_refit_steps=40, lag_refit_lr=1e-2)
    objective = build_objective("apex", MethodsConfig(apex=config), student, teacher)
    train = TrainConfig(steps=4, batch_size=16, log_every=4, progress=False)
    trainer = Trainer(objective, ToyStream(distribution, 16, seed=3), train)
    trainer.run()
    return [p.detach().clone() for p in [*student.parameters(), *objective.fake.parameters()]], trainer.history


def test_the_lag_diagnostic_is_logged_and_leaves_training_unchanged():
    plain, plain_history = trained(lag_every=0)
    measured, history = trained(lag_every=2)
    assert all(torch.equal(a, b) for a, b in zip(plain, measured, strict=True))
    lag = [h for h in history if "diagnostics/lag_ratio" in h]
    assert [h["step"] for h in lag] == [2, 4] and not any("diagnostics/lag_ratio" in h for h in plain_history)
    # a re-fit copy of the fake branch fits the generator's current samples at least as well as the branch
    assert all(h["diagnostics/lag_refit_loss"] < h["diagnostics/lag_fake_loss"] for h in lag)


def test_the_regression_anchor_pulls_one_step_samples_to_the_teachers_endpoints():
    student, teacher = tiny_mlp(), tiny_mlp(seed=1).requires_grad_(False)
    config = APEXConfig(weight_regression=0.5, regression_pairs=8, regression_steps=3)
    objective = build_objective("apex", MethodsConfig(apex=config), student, teacher)
    batch = toy_batch(16)
    objective.prepare(iter([batch] * 2), torch.Generator().manual_seed(0))
    pool = objective.endpoints.pool
    assert pool.noise.shape == (8, 2) and "endpoints._extra_state" in objective.state_dict()
    output = objective.loss("student", batch, torch.Generator().manual_seed(1))
    assert {"generator", "fake", "regression"} <= set(output.terms)
    replay = torch.Generator().manual_seed(1)
    # the regression term is the mean squared error of the one-step samples on the drawn pool pairs
    rows = partition(batch, config.slices.as_dict())
    objective.fake_loss(rows["fake"], replay), objective.generator_loss(rows["generator"], replay)
    index = torch.randint(0, 8, (rows["generator"].size,), generator=replay)
    with torch.no_grad():
        x = pool.noise[index] - student(pool.noise[index], torch.ones(len(index)), pool.cond.rows(index))
    torch.testing.assert_close(output.terms["regression"], (x - pool.endpoints[index]).pow(2).mean())
