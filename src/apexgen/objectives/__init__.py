"""The training methods, one small module each, all driven by the same trainer and samplers."""

from __future__ import annotations

import copy
from collections.abc import Callable
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
    apex: APEXConfig = field(default_factory=lambda: APEXConfig.from_preset("ours"))
    twinflow: TwinFlowConfig = field(default_factory=lambda: TwinFlowConfig.from_preset("released"))
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


def uses_fake_network(name: str, methods: MethodsConfig) -> bool:
    """Whether the method trains a fake network of its own (DMD2; APEX with fake_network='private'), which a
    LoRA student gets as a second adapter on its frozen base."""
    if name == "dmd2":
        return True
    return name in ("apex", "twinflow") and getattr(methods, name).fake_network == "private"


def needs_teacher(name: str, methods: MethodsConfig) -> bool:
    """Whether the method reads a frozen teacher: every distillation method but APEX without a reference
    (the ``paper`` preset) or with an EMA one; flow matching fine-tunes on data alone. A fake network of its
    own (``uses_fake_network``) starts as a copy of the teacher."""
    if name == "flow_matching":
        return False
    if name in ("apex", "twinflow"):
        config = getattr(methods, name)
        return uses_fake_network(name, methods) or (config.needs_reference() and config.reference == "teacher")
    return True


def schedule_of(name: str, methods: MethodsConfig) -> Callable[[int], list[str]]:
    """The method's schedule (the parameter groups it updates at each step) without building it, e.g. to
    give every method the same budget of optimiser updates (``objectives.base.steps_for_budget``)."""
    check_method(name)
    config = getattr(methods, name)
    return config.schedule if hasattr(config, "schedule") else lambda step: ["student"]


@dataclass(frozen=True)
class EndpointPoolSize:
    """The pool of teacher ODE endpoints a method draws before its first update (regression, APEX's anchor)."""

    pairs: int
    steps: int
    guidance: float
    keys: str  # the method's settings of the pool's size

    @property
    def teacher_forwards(self) -> int:
        return self.pairs * self.steps * (2 if self.guidance > 1 else 1)

    def describe(self) -> str:
        return (
            f"before the first update the teacher draws a pool of {self.pairs:,} endpoints ({self.steps} Euler "
            f"steps, CFG {self.guidance:g}): {self.teacher_forwards:,} per-sample teacher forwards; "
            f"its size: {self.keys}"
        )


def endpoint_pool_size(name: str, methods: MethodsConfig) -> EndpointPoolSize | None:
    """The method's pool of teacher endpoints, or None when it draws none."""
    check_method(name)
    if name == "regression":
        config = methods.regression
        return EndpointPoolSize(config.pairs, config.teacher_steps, config.guidance, "regression.pairs, .teacher_steps")
    if name == "apex" and methods.apex.weight_regression > 0:
        config = methods.apex
        keys = "apex.regression_pairs, .regression_steps (apex.weight_regression=0: no pool)"
        return EndpointPoolSize(config.regression_pairs, config.regression_steps, config.real_guidance, keys)
    return None


def check_method(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed methods: {', '.join(METHODS)}")
    return name


def build_objective(
    name: str, methods: MethodsConfig, student: nn.Module, teacher: nn.Module | None, fake: nn.Module | None = None
) -> Objective:
    """The objective ``name`` training ``student``; ``teacher`` is frozen and never updated.

    The fake network of DMD2 and of APEX with fake_network='private' is ``fake`` (e.g. a second LoRA adapter
    on the student's base, ``backbones.lora.AdapterView``) or, by default, a trainable copy of the teacher.
    """
    check_method(name)
    config = getattr(methods, name)
    if name == "flow_matching":
        return FlowMatching(config, student)
    if uses_fake_network(name, methods) and fake is None:
        if teacher is None:
            raise ValueError(f"method {name!r} initialises its fake network from the teacher; none was given")
        fake = copy.deepcopy(teacher).requires_grad_(True).train()
    if name in ("apex", "twinflow"):
        return (APEX if name == "apex" else TwinFlow)(config, student, teacher, fake)
    if teacher is None:
        raise ValueError(f"method {name!r} distils a teacher; none was given")
    if name == "dmd2":
        return DMD2(config, student, teacher, fake)
    if name == "consistency":
        return ConsistencyDistillation(config, student, teacher)
    return Regression(config, student, teacher)
