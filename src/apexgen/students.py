"""The networks a distillation method trains, assembled on a diffusers backbone: LoRA (peft) on the frozen
teacher, whose adapter-disabled view is the teacher, or full fine-tuning next to a frozen copy; DMD2's
fake score as a second adapter (LoRA) or a trainable copy of the teacher (full)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from apexgen.backbones.diffusers_backbone import DiffusersBackbone
from apexgen.backbones.lora import AdapterView, FrozenBase, LoRAConfig, add_lora
from apexgen.objectives import MethodsConfig, needs_teacher, uses_fake_network

FAKE_ADAPTER = "fake"


@dataclass
class Networks:
    student: DiffusersBackbone
    teacher: nn.Module | None  # None: a fully fine-tuned method that reads no teacher
    fake: nn.Module | None = None  # a method's own fake network; None: build_objective copies the teacher


def prepare_networks(
    model: DiffusersBackbone,
    method: str,
    full_finetune: bool,
    lora: LoRAConfig,
    methods: MethodsConfig | None = None,
) -> Networks:
    """``model`` (the loaded teacher) becomes the student: with a LoRA adapter (and, for a method with a fake
    network of its own, DMD2 or APEX with fake_network='private' in ``methods``, a second one), or fully
    trainable next to a frozen copy of itself when the method reads a teacher (``needs_teacher``)."""
    methods = methods or MethodsConfig()
    if full_finetune:
        keeps_teacher = needs_teacher(method, methods)
        teacher = copy.deepcopy(model).requires_grad_(False).eval() if keeps_teacher else None
        return Networks(model.requires_grad_(True).train(), teacher)
    add_lora(model, lora)
    fake = None
    if uses_fake_network(method, methods):
        add_lora(model, lora, adapter_name=FAKE_ADAPTER)
        fake = AdapterView(model, FAKE_ADAPTER)
    return Networks(model.train(), FrozenBase(model), fake)
