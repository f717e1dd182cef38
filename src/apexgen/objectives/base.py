"""What every objective shares: the batch it reads, the named result it returns, the protocol the
trainer drives, the per-sample losses (METHOD §4) and the partition of a batch into slices (METHOD §3).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from apexgen.batch import Batch
from apexgen.ledger import NullLedger, TimeLedger

LossKind = Literal["mse", "barron"]

# Barron's c in the released code; with c this small the loss behaves like a per-sample RMS.
BARRON_C = 1e-3


@dataclass
class LossOutput:
    """The scalar to minimise, its named terms (detached, for logs) and diagnostics."""

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    diagnostics: dict[str, float] = field(default_factory=dict)


def combine(weighted_terms: dict[str, tuple[float, Tensor]], diagnostics: dict[str, float]) -> LossOutput:
    """Σ weight·term over the enabled terms; each term is logged unweighted."""
    enabled = {name: (w, term) for name, (w, term) in weighted_terms.items() if w != 0}
    if not enabled:
        raise ValueError("every loss term has weight 0: nothing to train")
    loss = sum(w * term for w, term in enabled.values())
    return LossOutput(loss, {name: term.detach() for name, (_, term) in enabled.items()}, diagnostics)


def per_sample_error(prediction: Tensor, target: Tensor, kind: LossKind = "mse") -> Tensor:
    """Per-sample loss (B,) against a stop-gradient target (``per_sample_loss`` of prediction − sg(target))."""
    return per_sample_loss(prediction - target.detach(), kind)


def per_sample_loss(residual: Tensor, kind: LossKind = "mse") -> Tensor:
    """Per-sample loss (B,) of a residual; gradients flow through every part of it.

    ``mse``: mean squared error over the non-batch dimensions. ``barron``: the released code's
    mse·sg((mse/c² + 1)^(−1/2))/c, which normalises each sample's gradient like a per-sample RMS.
    """
    mse = residual.pow(2).flatten(1).mean(1)
    if kind == "mse":
        return mse
    scale = (mse.detach() / BARRON_C**2 + 1).rsqrt() / BARRON_C
    return mse * scale


def weighted_mean(per_sample: Tensor, weight: Tensor | None = None) -> Tensor:
    return per_sample.mean() if weight is None else (weight.detach() * per_sample).mean()


def largest_remainder_sizes(fractions: dict[str, float], batch_size: int) -> dict[str, int]:
    """Row counts proportional to ``fractions`` that sum to ``batch_size`` (largest remainders)."""
    exact = {name: f * batch_size for name, f in fractions.items()}
    sizes = {name: math.floor(x) for name, x in exact.items()}
    by_remainder = sorted(exact, key=lambda name: exact[name] - sizes[name], reverse=True)
    for name in by_remainder[: batch_size - sum(sizes.values())]:
        sizes[name] += 1
    return sizes


def minimum_batch(fractions: dict[str, float]) -> int:
    """The smallest batch in which every positive slice gets at least one row."""
    batch = sum(1 for f in fractions.values() if f > 0)
    while not all(largest_remainder_sizes(fractions, batch)[k] > 0 for k, f in fractions.items() if f > 0):
        batch += 1
    return batch


def slice_sizes(fractions: dict[str, float], batch_size: int) -> dict[str, int]:
    """Split ``batch_size`` rows by ``fractions``; every positive slice must get at least one row."""
    sizes = largest_remainder_sizes(fractions, batch_size)
    too_small = [name for name, f in fractions.items() if f > 0 and sizes[name] == 0]
    if too_small:
        raise ValueError(
            f"batch of {batch_size} rows is too small for slices {fractions}: {too_small} would get no rows; "
            f"use a batch of at least {minimum_batch(fractions)}"
        )
    return sizes


def partition(batch: Batch, fractions: dict[str, float]) -> dict[str, Batch]:
    """Consecutive, disjoint slices of ``batch`` named as in ``fractions`` (zero-row slices omitted)."""
    sizes = slice_sizes(fractions, batch.size)
    slices, start = {}, 0
    for name, size in sizes.items():
        if size > 0:
            slices[name] = batch.rows(slice(start, start + size))
        start += size
    return slices


# The parameter groups whose update moves the generator (the rest train a fake branch or a critic).
GENERATOR_GROUPS = frozenset({"student", "generator"})
BudgetCount = Literal["total", "generator"]


def steps_for_budget(schedule: Callable[[int], list[str]], updates: int, count: BudgetCount = "total") -> int:
    """The number of steps of ``schedule`` whose optimiser updates add up to at most ``updates``: every update
    (``total``: a DMD2 step makes critic_updates + 1 of them, an APEX fake warm-up step one) or only those
    that move the generator (``generator``)."""
    steps = done = 0
    while True:
        groups = schedule(steps)
        added = len(groups) if count == "total" else sum(group in GENERATOR_GROUPS for group in groups)
        if done + added > updates or (added == 0 and done == updates):
            return steps
        done += added
        steps += 1


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Objective(nn.Module, ABC):
    """A training method. The trainer asks which parameter groups to update at a step, in order, and
    for each one calls :meth:`loss`, steps that group's optimiser, then :meth:`after_update`.

    Modules registered on the objective (a fake-score network, a discriminator head, an EMA target, a
    frozen teacher) are saved with checkpoints; the student is passed in and saved by the trainer.
    """

    def __init__(self, student: nn.Module):
        super().__init__()
        self._student = [student]  # a list keeps the student out of this module's own state_dict
        self.ledger: TimeLedger = NullLedger()  # the trainer attaches its own to time each loss term

    @property
    def student(self) -> nn.Module:
        return self._student[0]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"student": [p for p in self.student.parameters() if p.requires_grad]}

    def networks(self) -> dict[str, nn.Module]:
        """Every network this method holds while training (for the parameter and memory ledger)."""
        return {"student": self.student}

    def held_parameters(self) -> int:
        """Parameters held in memory by the method's networks, each shared tensor counted once."""
        unique = {id(p): p for module in self.networks().values() for p in module.parameters()}
        return sum(p.numel() for p in unique.values())

    def schedule(self, step: int) -> list[str]:
        return ["student"]

    def finished_groups(self, step: int) -> list[str]:
        """Parameter groups that no step from ``step`` on updates (the trainer frees their optimiser state)."""
        return []

    @abstractmethod
    def loss(self, group: str, batch: Batch, rng: torch.Generator) -> LossOutput:
        """The loss of parameter group ``group`` on ``batch``, with all randomness from ``generator``."""

    def after_update(self, group: str) -> None:
        """Called after each optimiser step of ``group`` (EMA targets update here)."""

    def diagnostics(self, batch: Batch, step: int, rng: torch.Generator) -> dict[str, float]:
        """Measurements after step ``step`` (1-based) on its last batch, logged with the history; they must not
        change training (``rng`` is their own generator). None by default."""
        return {}

    def preparation_rows(self) -> int:
        """How many data rows ``prepare`` will draw (0: none, or not known): the total of its progress bar."""
        return 0

    def prepare(self, batches, rng: torch.Generator) -> None:
        """Called once before training (e.g. to precompute teacher endpoints)."""
