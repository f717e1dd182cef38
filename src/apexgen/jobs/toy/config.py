"""The toy benchmark's settings (``apexgen toy --config``/``KEY=VALUE``): datasets, seeds, the students, the
teacher's and students' training, every method's settings and the evaluation; ``QUICK`` is ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from apexgen.backbones.mlp import MLPConfig
from apexgen.config import require, require_positive
from apexgen.data.toy import DISTRIBUTIONS
from apexgen.objectives import STUDENT_METHODS, MethodsConfig, require_batch_fits
from apexgen.objectives.apex_config import APEXConfig
from apexgen.objectives.regression import RegressionConfig
from apexgen.train.settings import OptimizerConfig, TrainConfig


@dataclass(frozen=True)
class ToyEvalConfig:
    samples_per_condition: int = 20000
    teacher_nfe: tuple[int, ...] = (1, 2, 4, 8, 50)
    student_nfe: tuple[int, ...] = (1, 2)
    guidance: float = 1.0  # CFG of the teacher sampler; 1 samples p(x | c) itself

    def check(self) -> None:
        require(self.samples_per_condition >= 16, "samples_per_condition", "must be ≥ 16")
        require(all(n > 0 for n in self.teacher_nfe + self.student_nfe), "teacher_nfe", "NFE values must be > 0")


# The toy regression row's pool of teacher endpoints, which APEX's anchor draws too: 65,536 pairs, where
# 4,096 (each pair seen 375 times in 6,000 updates of batch 256) left orbit's continuous condition sparse:
# sliced W2 at NFE 1, regression 0.086 / 0.090 → 0.079 / 0.074 (ring / orbit), APEX 0.085 / 0.090 →
# 0.080 / 0.084, 3 seeds (benchmarks/toy.md, "The pool's size"). It costs 65,536 × 50 teacher forwards of
# the MLP before training, about 10 s on one core.
TOY_POOL_PAIRS = 65536


def default_methods() -> MethodsConfig:
    """Every method's defaults, APEX's being the ``ours`` preset with the regression row's pool of teacher
    endpoints for its anchor (``TOY_POOL_PAIRS`` × 50 Euler steps, against the preset's 2,048 × 25)."""
    regression = RegressionConfig(pairs=TOY_POOL_PAIRS)
    apex = APEXConfig.from_preset("ours", regression_pairs=regression.pairs, regression_steps=regression.teacher_steps)
    return MethodsConfig(apex=apex, regression=regression)


@dataclass(frozen=True)
class ToyConfig:
    datasets: tuple[str, ...] = ("ring", "orbit")
    seeds: tuple[int, ...] = (0, 1, 2)
    students: tuple[str, ...] = STUDENT_METHODS  # the methods to train and compare
    model: MLPConfig = field(default_factory=MLPConfig)
    # 16,000 steps: at 8,000 the orbit teacher of seed 1 had not converged (NFE-50 sliced W2 0.29 against
    # 0.064 at 16,000; benchmarks/toy.md), and every student inherits its teacher's error.
    teacher: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            steps=16000, batch_size=512, optimizer=OptimizerConfig(lr=3e-3, decay="cosine"), progress=False
        )
    )
    # student.steps is the budget in optimiser updates, the same for every method: a method that makes k
    # updates per step (DMD2: critic_updates + 1) trains for student.steps / k steps.
    student: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            steps=6000, batch_size=256, optimizer=OptimizerConfig(lr=1e-3, decay="cosine"), progress=False
        )
    )
    # Every method's defaults; APEX's is the ``ours`` preset (sliced W2 0.096 on both datasets against 0.133 for
    # the former toy default, fake warm-up 250 and no regression anchor; 3 seeds, benchmarks/toy.md, issue 11
    # rows) with the regression row's pool for its anchor (``default_methods``).
    methods: MethodsConfig = field(default_factory=default_methods)
    eval: ToyEvalConfig = field(default_factory=ToyEvalConfig)
    workers: int = 2
    # keys of earlier releases that a YAML file may still hold, and their names now
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"method": "methods", "methods": "students"}

    def check(self) -> None:
        for index, name in enumerate(self.datasets):
            require(
                name in DISTRIBUTIONS,
                f"datasets[{index}]",
                f"got {name!r}; allowed: {', '.join(DISTRIBUTIONS)}",
            )
        for index, name in enumerate(self.students):
            require(
                name in STUDENT_METHODS,
                f"students[{index}]",
                f"got {name!r}; allowed: {', '.join(STUDENT_METHODS)}",
            )
        require(len(self.seeds) > 0, "seeds", "at least one seed")
        for name in self.students:
            require_batch_fits(name, self.methods, self.student.batch_size, "student.batch_size")
        require_positive(self, "workers")


# ``apexgen toy --quick``: one seed, short training, smaller evaluation (about a minute on 2 cores).
QUICK = {
    "seeds": [0],
    "teacher": {"steps": 1000},
    "student": {"steps": 400},
    # no warm-up in 400 updates from a 1,000-step teacher: measured on orbit, 0, 8 and 32 warm-up updates give
    # sliced W2 0.31–0.32 and 16 gives 0.53 (short runs are that erratic; benchmarks/toy.md)
    # and the pools of 4,096 endpoints (the default until 2026-12-07): 65,536 would add about 20 s
    "methods": {"apex": {"fake_warmup": 0, "regression_pairs": 4096}, "regression": {"pairs": 4096}},
    "eval": {"samples_per_condition": 2000},
}
