"""Two APEX training steps on each tiny diffusers backbone, with LoRA (teacher: the same network with its
adapters off) and with full fine-tuning (teacher: a frozen copy)."""

import copy
import math

import pytest
import torch

from apexgen.backbones.lora import FrozenBase, LoRAConfig, add_lora
from apexgen.objectives import MethodsConfig, build_objective
from apexgen.objectives.apex import APEXConfig
from apexgen.train.loop import TrainConfig, Trainer
from tests.backbones.tiny import NAMES, RandomLatents, latents, text_condition, tiny_backbone
from tests.methods import default_methods

TRAIN = TrainConfig(steps=2, batch_size=4, log_every=1, progress=False)
METHODS = {
    "default": default_methods(),
    # the real branch and a CFG-enhanced anchor from the teacher, so the teacher is actually run
    "reference": MethodsConfig(apex=APEXConfig(real_velocity="reference", enhanced_ratio=0.5)),
}


def train(name: str, student, teacher, methods: str):
    objective = build_objective("apex", METHODS[methods], student, teacher)
    trainer = Trainer(objective, RandomLatents(name, TRAIN.batch_size, seed=1), TRAIN)
    result = trainer.run()
    assert result.steps == 2
    losses = [value for entry in result.history for key, value in entry.items() if key != "step"]
    assert losses and all(math.isfinite(value) for value in losses)
    return trainer


def probe(name: str):
    generator = torch.Generator().manual_seed(9)
    return latents(2, generator), torch.tensor([1.0, 0.3]), text_condition(name, 2, generator)


@pytest.mark.parametrize("methods", METHODS)
@pytest.mark.parametrize("name", NAMES)
def test_apex_with_lora_changes_only_the_adapter_and_the_teacher_stays_the_base(name, methods):
    student = tiny_backbone(name)
    add_lora(student, LoRAConfig(rank=4, alpha=4))
    teacher = FrozenBase(student)
    x, t, cond = probe(name)
    with torch.no_grad():
        teacher_before = teacher(x, t, cond)
    before = {n: p.detach().clone() for n, p in student.named_parameters()}

    trainer = train(name, student, teacher, methods)

    assert all("lora_" in n for n, p in student.named_parameters() if any(p is q for q in trainer.groups["student"]))
    changed = {n for n, p in student.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    with torch.no_grad():
        assert torch.equal(teacher(x, t, cond), teacher_before)
        assert (student(x, t, cond) - teacher_before).abs().max() > 0


@pytest.mark.parametrize("methods", METHODS)
@pytest.mark.parametrize("name", NAMES)
def test_apex_full_fine_tuning_changes_the_student_and_not_its_frozen_teacher(name, methods):
    student = tiny_backbone(name)
    teacher = copy.deepcopy(student).requires_grad_(False).eval()
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    teacher_before = {n: p.detach().clone() for n, p in teacher.named_parameters()}

    train(name, student, teacher, methods)

    changed = [n for n, p in student.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) > 0.5 * len(before)
    assert all(torch.equal(p, teacher_before[n]) for n, p in teacher.named_parameters())
