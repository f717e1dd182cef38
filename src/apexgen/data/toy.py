"""Conditional 2-D distributions with exact samplers and known modes (the toy benchmark's data).

* ``ring``: 4 classes; class k owns the two opposite modes k and k + 4 of 8 Gaussians on a circle.
  One-hot condition. A one-step map must split each class's noise between two far-apart modes.
* ``orbit``: a continuous condition (θ, r); three Gaussians at angles θ + 2πj/3 on a circle of radius
  r. The condition vector is (cos θ, sin θ, r).

Every condition vector ends with a 1 ("a condition is present"); the null condition of classifier-free
guidance is the zero vector.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from apexgen.batch import Batch, DataStream
from apexgen.condition import VectorCondition


@dataclass(frozen=True)
class EvalCondition:
    label: str
    values: Tensor  # (cond_dim,)


class ToyDistribution(ABC):
    name: str
    cond_dim: int
    data_dim = 2
    sigma = 0.08

    @abstractmethod
    def sample_conditions(self, n: int, rng: torch.Generator) -> Tensor:
        """n conditions drawn from the training distribution of c."""

    @abstractmethod
    def modes(self, cond: Tensor) -> Tensor:
        """Mode centres (n, M, 2) of each condition's mixture (equal weights, std ``sigma``)."""

    @abstractmethod
    def eval_conditions(self) -> list[EvalCondition]:
        """The fixed evaluation conditions (the columns of the sample grids)."""

    def sample(self, cond: Tensor, rng: torch.Generator, stratified: bool = False) -> Tensor:
        """Exact samples x ~ p(x | c), one per row of ``cond``. ``stratified``: the rows are spread over
        the modes in exactly equal proportions (a lower-variance reference for the metrics)."""
        centres = self.modes(cond)
        if stratified:
            choice = torch.arange(cond.shape[0]) % centres.shape[1]
        else:
            choice = torch.randint(0, centres.shape[1], (cond.shape[0],), generator=rng)
        noise = torch.randn(cond.shape[0], 2, generator=rng, dtype=centres.dtype)
        return centres[torch.arange(cond.shape[0]), choice] + self.sigma * noise

    def null(self, n: int) -> Tensor:
        return torch.zeros(n, self.cond_dim)


class Ring(ToyDistribution):
    name = "ring"
    classes = 4
    radius = 1.5
    cond_dim = classes + 1

    def sample_conditions(self, n: int, rng: torch.Generator) -> Tensor:
        return self.one_hot(torch.randint(0, self.classes, (n,), generator=rng))

    def one_hot(self, labels: Tensor) -> Tensor:
        cond = torch.zeros(labels.shape[0], self.cond_dim)
        cond[torch.arange(labels.shape[0]), labels] = 1.0
        cond[:, -1] = 1.0
        return cond

    def modes(self, cond: Tensor) -> Tensor:
        labels = cond[:, : self.classes].argmax(1)
        angles = (torch.stack([labels, labels + self.classes], dim=1).double()) * (2 * math.pi / (2 * self.classes))
        return self.radius * torch.stack([angles.cos(), angles.sin()], dim=-1).float()

    def eval_conditions(self) -> list[EvalCondition]:
        return [EvalCondition(f"class {k}", self.one_hot(torch.tensor([k]))[0]) for k in range(self.classes)]


class Orbit(ToyDistribution):
    name = "orbit"
    arms = 3
    radius_range = (0.75, 1.75)
    cond_dim = 4
    # Held-out evaluation conditions (θ, r): fixed values never drawn exactly in training.
    eval_points = ((0.3, 0.8), (1.9, 1.2), (3.5, 1.6), (5.0, 1.0))

    def encode(self, theta: Tensor, radius: Tensor) -> Tensor:
        return torch.stack([theta.cos(), theta.sin(), radius, torch.ones_like(theta)], dim=1)

    def sample_conditions(self, n: int, rng: torch.Generator) -> Tensor:
        theta = 2 * math.pi * torch.rand(n, generator=rng)
        low, high = self.radius_range
        return self.encode(theta, low + (high - low) * torch.rand(n, generator=rng))

    def modes(self, cond: Tensor) -> Tensor:
        theta = torch.atan2(cond[:, 1], cond[:, 0]).double()
        angles = theta[:, None] + (2 * math.pi / self.arms) * torch.arange(self.arms, dtype=torch.float64)
        positions = torch.stack([angles.cos(), angles.sin()], dim=-1) * cond[:, 2, None, None].double()
        return positions.float()

    def eval_conditions(self) -> list[EvalCondition]:
        return [
            EvalCondition(
                f"θ={theta:.1f}, r={radius:.1f}",
                self.encode(torch.tensor([theta]), torch.tensor([radius]))[0],
            )
            for theta, radius in self.eval_points
        ]


DISTRIBUTIONS: dict[str, type[ToyDistribution]] = {"ring": Ring, "orbit": Orbit}


def toy_distribution(name: str) -> ToyDistribution:
    if name not in DISTRIBUTIONS:
        raise ValueError(f"unknown toy dataset {name!r}; allowed: {', '.join(DISTRIBUTIONS)}")
    return DISTRIBUTIONS[name]()


class ToyStream(DataStream):
    """Endless batches of exact samples (x0, c) from a toy distribution, reproducible from ``seed``."""

    def __init__(self, distribution: ToyDistribution, batch_size: int, seed: int):
        self.distribution, self.batch_size = distribution, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __next__(self) -> Batch:
        cond = self.distribution.sample_conditions(self.batch_size, self.generator)
        x0 = self.distribution.sample(cond, self.generator)
        return Batch(x0, VectorCondition(cond), VectorCondition(self.distribution.null(self.batch_size)))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
