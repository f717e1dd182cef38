"""The networks of a run on a loaded backbone: the LoRA rank checked against every target layer before
anything is trained, gradient checkpointing, the student / teacher / fake networks of the method, and
fp32 trainable weights next to frozen weights in the configured dtype."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn

from apexgen.backbones.diffusers_backbone import DiffusersBackbone
from apexgen.backbones.lora import LoRAConfig, LoRARankError, check_rank, target_pattern
from apexgen.config import ConfigError
from apexgen.jobs.real_backbones.config import RunConfig
from apexgen.seeding import seeded_global_rng
from apexgen.students import Networks, prepare_networks

log = logging.getLogger(__name__)


def check_lora_rank(adapter: DiffusersBackbone, lora: LoRAConfig) -> int:
    """The number of target layers, after checking that a rank-``lora.rank`` update fits each of them."""
    pattern = target_pattern(lora.targets or adapter.lora_targets)
    try:
        return len(check_rank(adapter.transformer, pattern, lora.rank))
    except LoRARankError as error:
        raise ConfigError("model.lora.rank", str(error)) from None
    except ValueError as error:  # no module matches the targets
        raise ConfigError("model.lora.targets", f"{error}; leave the list empty for the backbone's preset") from None


def upcast(parameters: Iterable[nn.Parameter]) -> None:
    """Trainable weights in fp32 (their optimiser states follow), whatever the frozen weights' dtype."""
    for parameter in parameters:
        if parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()


def prepare_student(config: RunConfig, adapter: DiffusersBackbone, device: torch.device | str = "cpu") -> Networks:
    """``adapter`` (the loaded model) on ``device`` turned into the method's networks, trainable weights fp32;
    new weights (the LoRA matrices) are initialised from ``train.seed``."""
    adapter.to(device)
    if config.model.gradient_checkpointing:
        adapter.transformer.enable_gradient_checkpointing()
    with seeded_global_rng(config.train.seed, device):
        networks = prepare_networks(
            adapter, config.method, config.model.full_finetune, config.model.lora, config.methods
        )
    upcast(p for p in networks.student.parameters() if p.requires_grad)
    return networks
