"""Run the toy benchmark: per dataset and seed, train a teacher by flow matching, evaluate it at several
NFE, distil every student from it with the same budget, evaluate them at NFE 1 and 2.

Each (dataset, seed) is an independent job; ``workers`` > 1 runs jobs in separate processes with one
thread each (small MLPs do not gain from several threads, but two processes use two cores).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from apexgen import seeding
from apexgen.backbones.mlp import MLPVelocity
from apexgen.condition import VectorCondition
from apexgen.config import to_dict
from apexgen.data.toy import ToyDistribution, ToyStream, toy_distribution
from apexgen.eval.toy_metrics import ToyMetrics, ToyReference, mean_metrics
from apexgen.jobs.toy.config import ToyConfig, ToyEvalConfig
from apexgen.objectives import MethodsConfig, build_objective
from apexgen.objectives.base import count_parameters, steps_for_budget
from apexgen.sampling import euler_sample, few_step_sample, one_step_sample
from apexgen.train.loop import Trainer, TrainResult

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    dataset: str
    seed: int
    rows: list[dict]
    samples: dict[str, list[torch.Tensor]]  # label → samples per evaluation condition (grid plots)
    metric_floor: float  # sliced W2 of an exact sample against the reference: the best reachable value


class ToyEvaluation:
    """The evaluation of one (dataset, seed) job: fixed noise per evaluation condition, and exact reference
    samples prepared once (``ToyReference``) for every sampler the job measures."""

    def __init__(self, distribution: ToyDistribution, seed: int, config: ToyEvalConfig):
        self.distribution, self.seed, self.config = distribution, seed, config
        n = config.samples_per_condition
        self.conditions = [c.values.expand(n, -1).contiguous() for c in distribution.eval_conditions()]
        self.references = [
            ToyReference.build(
                distribution.sample(cond, seeding.TOY_REFERENCE.generator(seed, index), True),
                distribution.modes(cond[:1])[0],
                distribution.sigma,
                seeding.TOY_METRIC.generator(seed, index),
            )
            for index, cond in enumerate(self.conditions)
        ]

    def __call__(self, sampler) -> tuple[ToyMetrics, list[torch.Tensor]]:
        """Metrics of ``sampler(noise, cond, null)`` averaged over the evaluation conditions, and its samples."""
        n, metrics, samples = self.config.samples_per_condition, [], []
        for index, (cond, reference) in enumerate(zip(self.conditions, self.references, strict=True)):
            noise = torch.randn(n, 2, generator=seeding.TOY_EVAL_NOISE.generator(self.seed, index))
            generated = sampler(noise, VectorCondition(cond), VectorCondition(self.distribution.null(n)))
            metrics.append(reference.metrics(generated))
            samples.append(generated)
        return mean_metrics(metrics), samples

    def metric_floor(self) -> float:
        """The sliced W2 that exact samples themselves score: finite samples never reach 0, and far-apart
        modes make SW2 sensitive to the random share of samples each mode receives."""
        exact = lambda noise, cond, null: self.distribution.sample(  # noqa: E731
            cond.values, torch.Generator().manual_seed(self.seed)
        )
        return self(exact)[0].sw2


def teacher_sampler(teacher, steps: int, guidance: float):
    return lambda noise, cond, null: euler_sample(teacher, noise, cond, steps, guidance, null)


def student_sampler(student, steps: int, seed: int):
    if steps == 1:
        return lambda noise, cond, null: one_step_sample(student, noise, cond)
    generator = seeding.TOY_STUDENT.generator(seed)
    return lambda noise, cond, null: few_step_sample(student, noise, cond, steps, generator)


def train_teacher(config: ToyConfig, distribution: ToyDistribution, seed: int) -> tuple[MLPVelocity, TrainResult]:
    with seeding.seeded_global_rng(seed):  # parameter initialisation; all training randomness flows from streams
        teacher = MLPVelocity(distribution.data_dim, distribution.cond_dim, config.model)
    objective = build_objective("flow_matching", config.methods, teacher, None)
    stream = ToyStream(distribution, config.teacher.batch_size, seed)
    train_config = dataclasses.replace(config.teacher, seed=seed)
    result = Trainer(objective, stream, train_config, description=f"teacher {distribution.name} s{seed}").run()
    return teacher.requires_grad_(False).eval(), result


def cached_teacher(config: ToyConfig, distribution: ToyDistribution, seed: int, cache: Path | None):
    """The teacher for (dataset, seed), from ``cache`` when a teacher of the same settings is there."""
    settings = {
        "model": to_dict(config.model),
        "teacher": to_dict(config.teacher),
        "flow_matching": to_dict(config.methods.flow_matching),
    }
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = None if cache is None else cache / f"teacher_{distribution.name}_seed{seed}_{digest}.safetensors"
    if path is not None and path.is_file():
        teacher = MLPVelocity(distribution.data_dim, distribution.cond_dim, config.model)
        teacher.load_state_dict(load_file(path))
        result = TrainResult(**json.loads(path.with_suffix(".json").read_text()))
        log.info("%s seed %d: teacher from %s", distribution.name, seed, path)
        return teacher.requires_grad_(False).eval(), result
    teacher, result = train_teacher(config, distribution, seed)
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        save_file(teacher.state_dict(), path)
        path.with_suffix(".json").write_text(json.dumps(dataclasses.asdict(result)))
    return teacher, result


@dataclass(frozen=True)
class Variant:
    """One student to train: a method and the settings it runs with, under a label for the tables."""

    label: str
    method: str
    methods: MethodsConfig


def default_variants(config: ToyConfig) -> list[Variant]:
    return [Variant(name, name, config.methods) for name in config.students]


def row(variant: str, method: str, nfe: int, dataset: str, seed: int, metrics, train, held: int) -> dict:
    return {
        "method": method,
        "variant": variant,
        "nfe": nfe,
        "dataset": dataset,
        "seed": seed,
        "sw2": metrics.sw2,
        "mmd": metrics.mmd,
        "coverage": metrics.coverage,
        "precision": metrics.precision,
        "train_seconds": train.seconds,
        "peak_memory_mb": train.peak_memory_mb,
        "trainable_parameters": train.trainable_parameters,
        "held_parameters": held,
        "steps": train.steps,
    }


def train_student(config: ToyConfig, variant: Variant, teacher, distribution, seed: int):
    student = copy.deepcopy(teacher).requires_grad_(True).train()
    objective = build_objective(variant.method, variant.methods, student, teacher)
    stream = ToyStream(distribution, config.student.batch_size, seeding.TOY_STUDENT.seed(seed))
    steps = steps_for_budget(objective.schedule, config.student.steps)
    trainer = Trainer(
        objective,
        stream,
        dataclasses.replace(config.student, seed=seed, steps=steps),
        description=f"{variant.label} {distribution.name} s{seed}",
    )
    result = trainer.run()
    log.info("%s seed %d: %s trained in %.0f s", distribution.name, seed, variant.label, result.seconds)
    return student.eval(), trainer, objective, result


def run_job(
    config: ToyConfig,
    dataset: str,
    seed: int,
    variants: list[Variant],
    cache: Path | None = None,
    threads: int | None = None,
) -> JobResult:
    if threads:
        torch.set_num_threads(threads)
    distribution = toy_distribution(dataset)
    teacher, teacher_train = cached_teacher(config, distribution, seed, cache)
    evaluate = ToyEvaluation(distribution, seed, config.eval)
    rows, samples = [], {}
    for nfe in config.eval.teacher_nfe:
        metrics, generated = evaluate(teacher_sampler(teacher, nfe, config.eval.guidance))
        rows.append(row("teacher", "teacher", nfe, dataset, seed, metrics, teacher_train, count_parameters(teacher)))
        samples[f"teacher NFE {nfe}"] = generated
    for variant in variants:
        student, trainer, objective, train = train_student(config, variant, teacher, distribution, seed)
        with trainer.ema.applied() if trainer.ema else contextlib.nullcontext():
            for nfe in config.eval.student_nfe:
                metrics, generated = evaluate(student_sampler(student, nfe, seed))
                held = objective.held_parameters()
                rows.append(row(variant.label, variant.method, nfe, dataset, seed, metrics, train, held))
                samples[f"{variant.label} NFE {nfe}"] = generated
    return JobResult(dataset, seed, rows, samples, evaluate.metric_floor())


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def worker_logging(level: int, format: str) -> None:
    """Worker processes start with no logging handlers; give them the parent's level."""
    logging.basicConfig(level=level, format=format, datefmt="%H:%M:%S")


def run_toy_benchmark(
    config: ToyConfig, variants: list[Variant] | None = None, teacher_cache: Path | None = None
) -> list[JobResult]:
    """Every (dataset, seed) job, in ``config.workers`` processes; teachers cached in ``teacher_cache``."""
    variants = default_variants(config) if variants is None else variants
    jobs = [(dataset, seed) for dataset in config.datasets for seed in config.seeds]
    started = time.perf_counter()
    if config.workers == 1 or len(jobs) == 1:
        results = [run_job(config, dataset, seed, variants, teacher_cache) for dataset, seed in jobs]
    else:
        workers = min(config.workers, len(jobs))
        logging_setup = (logging.getLogger().getEffectiveLevel(), LOG_FORMAT)
        with ProcessPoolExecutor(workers, get_context("spawn"), worker_logging, logging_setup) as pool:
            futures = [
                pool.submit(run_job, config, dataset, seed, variants, teacher_cache, 1) for dataset, seed in jobs
            ]
            results = [future.result() for future in futures]
    log.info("toy benchmark: %d jobs in %.0f s", len(jobs), time.perf_counter() - started)
    return results
