"""LoRA on a diffusers backbone through peft (METHOD §5).

The adapter is added with diffusers' ``add_adapter`` (PeftAdapterMixin), which freezes every base weight,
so the student's trainable parameters are the LoRA matrices alone, and the same network with its adapters
switched off is the frozen base model: the teacher / reference for free (:class:`FrozenBase`).

Targets are regular expressions over the transformer's module names, joined into the one pattern peft
matches each name against in full; each backbone adapter carries its preset (``lora_targets``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from apexgen.backbones.diffusers_backbone import DiffusersBackbone
from apexgen.condition import Condition
from apexgen.config import require, require_positive
from apexgen.shift import ConditionShift

if TYPE_CHECKING:
    import peft

log = logging.getLogger(__name__)

# peft's and diffusers' default adapter name; ``load_lora_weights`` of a fresh pipeline expects nothing else.
ADAPTER_NAME = "default"


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 64  # the released recipe: rank 64, alpha 64
    alpha: float = 64.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ()  # regexes over module names; empty: the backbone's preset

    def check(self) -> None:
        require_positive(self, "rank", "alpha")
        require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")


class LoRARankError(ValueError):
    """The LoRA rank exceeds a target layer's smallest dimension."""


def target_pattern(targets: Sequence[str]) -> str:
    """One regular expression matching any of ``targets`` (each matched against a whole module name)."""
    return "|".join(f"(?:{target})" for target in targets)


def target_layers(model: nn.Module, pattern: str) -> dict[str, nn.Module]:
    """The modules whose full name matches ``pattern``, as peft will select them."""
    regex = re.compile(pattern)
    return {name: module for name, module in model.named_modules() if name and regex.fullmatch(name)}


def layer_shape(name: str, layer: nn.Module) -> tuple[int, int]:
    """(outputs, inputs) of the weight matrix a LoRA update of ``layer`` has the shape of."""
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() < 2:
        raise ValueError(f"LoRA target {name!r} ({type(layer).__name__}) has no weight matrix")
    return weight.shape[0], weight[0].numel()


def check_rank(model: nn.Module, pattern: str, rank: int) -> dict[str, nn.Module]:
    """The layers ``pattern`` selects, after checking that a rank-``rank`` update fits each of them."""
    layers = target_layers(model, pattern)
    if not layers:
        raise ValueError(f"no module of {type(model).__name__} matches the LoRA targets {pattern!r}")
    for name, layer in layers.items():
        outputs, inputs = layer_shape(name, layer)
        if rank > min(outputs, inputs):
            raise LoRARankError(
                f"LoRA rank {rank} is larger than layer {name!r} ({type(layer).__name__}, weight "
                f"{outputs}×{inputs}): its smallest dimension is {min(outputs, inputs)}; lower the rank to at "
                f"most {min(outputs, inputs)} or leave this layer out of the targets"
            )
    return layers


def add_lora(
    backbone: DiffusersBackbone, config: LoRAConfig = LoRAConfig(), adapter_name: str = ADAPTER_NAME
) -> peft.LoraConfig:
    """Add a LoRA adapter to ``backbone.transformer``; afterwards only the LoRA matrices are trainable.
    A second adapter (``adapter_name`` other than the default, e.g. DMD2's fake score) leaves the default
    adapter the active one."""
    import peft  # here, not at the top: the settings (LoRAConfig) load in a command's start-up without it

    config.check()
    pattern = target_pattern(config.targets or backbone.lora_targets)
    layers = check_rank(backbone.transformer, pattern, config.rank)
    lora = peft.LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=pattern,  # peft's default init: B = 0, so the student starts as the base model
    )
    transformer = backbone.transformer
    active = list(transformer.active_adapters()) if has_lora(backbone) else None
    flags = [(p, p.requires_grad) for p in transformer.parameters()]
    transformer.add_adapter(lora, adapter_name=adapter_name)  # diffusers makes the new adapter the active one
    if active:  # keep the existing adapter active and trainable; the new one is trainable too
        transformer.set_adapter(active)
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        for name, parameter in transformer.named_parameters():
            if f".{adapter_name}." in name:
                parameter.requires_grad_(True)
    trainable = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    log.info("LoRA rank %d on %d layers: %d trainable parameters", config.rank, len(layers), trainable)
    return lora


def has_lora(backbone: DiffusersBackbone) -> bool:
    return ADAPTER_NAME in (getattr(backbone.transformer, "peft_config", None) or {})


@contextmanager
def adapters_disabled(backbone: DiffusersBackbone) -> Iterator[None]:
    """Within the block the backbone runs as its base model (LoRA off).

    peft's enable/disable also switches ``requires_grad`` of the LoRA weights (enabling makes them all
    trainable again), so every parameter's flag is restored as it was.
    """
    transformer = backbone.transformer
    flags = [(p, p.requires_grad) for p in transformer.parameters()]
    transformer.disable_adapters()
    try:
        yield
    finally:
        transformer.enable_adapters()
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


class FrozenBase(nn.Module):
    """F_base(x_t, t, c): the LoRA student's backbone with its adapters off, the frozen teacher or reference.

    The backbone is held, not registered, so this view owns no parameters: moving, freezing or counting it
    never touches the student's.
    """

    def __init__(self, backbone: DiffusersBackbone):
        super().__init__()
        if not has_lora(backbone):
            raise ValueError(
                "FrozenBase needs a backbone with a LoRA adapter (add_lora); for full fine-tuning "
                "use a frozen copy of the model as the teacher"
            )
        self._backbone = [backbone]

    @property
    def backbone(self) -> DiffusersBackbone:
        return self._backbone[0]

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition, shift: ConditionShift | None = None) -> Tensor:
        with adapters_disabled(self.backbone):
            return self.backbone(x_t, t, cond, shift=shift)


@contextmanager
def active_adapter(backbone: DiffusersBackbone, name: str) -> Iterator[None]:
    """Within the block only adapter ``name`` computes. Which weights are trainable is left exactly as it
    was (peft's ``set_adapter`` would otherwise freeze the other adapters and unfreeze this one)."""
    transformer = backbone.transformer
    flags = [(p, p.requires_grad) for p in transformer.parameters()]
    previous = list(transformer.active_adapters())
    transformer.set_adapter(name)
    for parameter, flag in flags:
        parameter.requires_grad_(flag)
    try:
        yield
    finally:
        transformer.set_adapter(previous)
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


class AdapterView(nn.Module):
    """The backbone computing with only adapter ``name``: a second trainable network that shares the frozen
    base weights (DMD2's fake score in LoRA form: one base, two adapters). Holds the backbone unregistered;
    its trainable weights are that adapter's LoRA matrices (:meth:`trainable_parameters`)."""

    def __init__(self, backbone: DiffusersBackbone, name: str):
        super().__init__()
        if name not in (getattr(backbone.transformer, "peft_config", None) or {}):
            raise ValueError(f"the backbone has no adapter {name!r}; add it first with add_lora(..., adapter_name=)")
        self._backbone, self.name = [backbone], name

    @property
    def backbone(self) -> DiffusersBackbone:
        return self._backbone[0]

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    def trainable_parameters(self) -> list[nn.Parameter]:
        marker = f".{self.name}."
        return [p for n, p in self.backbone.named_parameters() if "lora_" in n and marker in n and p.requires_grad]

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition, shift: ConditionShift | None = None) -> Tensor:
        with active_adapter(self.backbone, self.name):
            return self.backbone(x_t, t, cond, shift=shift)

    def velocity_and_features(self, x_t: Tensor, t: Tensor, cond: Condition) -> tuple[Tensor, Tensor]:
        with active_adapter(self.backbone, self.name):
            return self.backbone.velocity_and_features(x_t, t, cond)
