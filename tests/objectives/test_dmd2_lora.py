"""DMD2 in LoRA form: one frozen base, two adapters (the generator's and the fake score's). Each phase
trains only its own adapter, the teacher is the base with adapters off, and the base never changes."""

import pytest
import torch

from apexgen.backbones.lora import AdapterView, FrozenBase, LoRAConfig, add_lora
from apexgen.objectives import MethodsConfig, build_objective
from apexgen.objectives.dmd2 import DMD2Config
from apexgen.train.loop import TrainConfig, Trainer
from tests.backbones.tiny import RandomLatents, latents, text_condition, tiny_backbone

FAKE = "fake"


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_each_phase_trains_only_its_own_adapter(name):
    student = tiny_backbone(name)
    add_lora(student, LoRAConfig(rank=4, alpha=4))
    add_lora(student, LoRAConfig(rank=4, alpha=4), adapter_name=FAKE)
    assert list(student.transformer.active_adapters()) == ["default"]
    methods = MethodsConfig(dmd2=DMD2Config(critic_updates=2, weight_gan_generator=0.1))
    objective = build_objective("dmd2", methods, student, FrozenBase(student), AdapterView(student, FAKE))
    groups = objective.parameter_groups()
    names = {id(p): n for n, p in student.named_parameters()}
    assert groups["generator"] and all(".default." in names[id(p)] for p in groups["generator"])
    assert all(f".{FAKE}." in names[id(p)] for p in groups["critic"] if id(p) in names)

    generator = torch.Generator().manual_seed(0)
    x, cond = latents(2, generator), text_condition(name, 2, generator)
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    with torch.no_grad():
        base_before = FrozenBase(student)(x, torch.tensor([0.5, 1.0]), cond)
    Trainer(objective, RandomLatents(name, 4, seed=1), TrainConfig(steps=2, batch_size=4, progress=False)).run()

    changed = {n for n, p in student.named_parameters() if not torch.equal(p, before[n])}
    assert any(".default." in n for n in changed) and any(f".{FAKE}." in n for n in changed)
    assert all("lora_" in n for n in changed)
    with torch.no_grad():
        assert torch.equal(FrozenBase(student)(x, torch.tensor([0.5, 1.0]), cond), base_before)
    assert list(student.transformer.active_adapters()) == ["default"]
    assert all(p.requires_grad for p in groups["generator"] + groups["critic"])
    assert objective.held_parameters() == sum(p.numel() for p in student.parameters()) + sum(
        p.numel() for p in objective.head.parameters()
    )
