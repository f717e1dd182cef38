"""The training methods, one small module each, all driven by the same trainer and samplers."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from torch import nn

from apexgen.config import ConfigError
from apexgen.objectives.apex import APEX, APEXConfig
from apexgen.objectives.base import Objective, minimum_batch
from apexgen.objectives.consistency import ConsistencyConfig, ConsistencyDistillation
from apexgen.objectives.dmd2 import DMD2, DMD2Config
from apexgen.objectives.flow_matching import FlowMatching, FlowMatchingConfig
from apexgen.objectives.regression import Regression, RegressionConfig
from apexgen.objectives.twinflow import TwinFlow, TwinFlowConfig

STUDENT_METHODS = ("apex", "twinflow", "dmd2", "consistency", "regression")
METHODS = ("flow_matching", *STUDENT_METHODS)


@dataclass(frozen=True)
class MethodsConfig:
    """One typed section per method; only the section of the method being run is used."""

    flow_matching: FlowMatchingConfig = field(default_factory=FlowMatchingConfig)
    apex: APEXConfig = field(default_factory=APEXConfig)
    twinflow: TwinFlowConfig = field(default_factory=TwinFlowConfig)
    dmd2: DMD2Config = field(default_factory=DMD2Config)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    regression: RegressionConfig = field(default_factory=RegressionConfig)


def minimum_batch_size(name: str, methods: MethodsConfig) -> int:
    """The smallest batch the method can split into its slices (APEX and TwinFlow)."""
    if name in ("apex", "twinflow"):
        return minimum_batch(getattr(methods, name).slices.as_dict())
    return 1


def require_batch_fits(name: str, methods: MethodsConfig, batch_size: int, key: str) -> None:
    """A ConfigError at ``key`` when a batch of ``batch_size`` rows cannot be split into the method's slices."""
    smallest = minimum_batch_size(name, methods)
    if batch_size < smallest:
        slices = getattr(methods, name).slices.as_dict()
        raise ConfigError(
            key,
            f"{name} splits each batch into slices {slices} and needs at least {smallest} rows, "
            f"got {batch_size}; set {key}={smallest} or more",
        )


def check_method(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed methods: {', '.join(METHODS)}")
    return name


def build_objective(
    name: str, methods: MethodsConfig, student: nn.Module, teacher: nn.Module | None, fake: nn.Module | None = None
) -> Objective:
    """The objective ``name`` training ``student``; ``teacher`` is frozen and never updated.

    DMD2's fake-score network is ``fake`` (e.g. a second LoRA adapter on the student's base,
    ``backbones.lora.AdapterView``) or, by default, a trainable copy of the teacher.
    """
    check_method(name)
    config = getattr(methods, name)
    if name == "flow_matching":
        return FlowMatching(config, student)
    if name in ("apex", "twinflow"):
        return (APEX if name == "apex" else TwinFlow)(config, student, teacher)
    if teacher is None:
        raise ValueError(f"method {name!r} distils a teacher; none was given")
    if name == "dmd2":
        fake = fake if fake is not None else copy.deepcopy(teacher).requires_grad_(True).train()
        return DMD2(config, student, teacher, fake)
    if name == "consistency":
        return ConsistencyDistillation(config, student, teacher)
    return Regression(config, student, teacher)
