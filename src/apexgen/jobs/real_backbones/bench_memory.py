"""Where a training step's bytes go, computed from the method's networks and one probe of each loss it
trains, to set beside the peak ``apexgen bench`` measures (all figures above the loaded model):

* **weights held**: every parameter and buffer the method's networks hold, less the loaded model (a frozen
  teacher copy, a fake network, LoRA adapters, trainable weights upcast to fp32);
* **optimiser states**: AdamW's two fp32 moments per trainable parameter, for every parameter group still in
  use (APEX's shared fake updates keep a second state on the same weights; after a warm-up with no fake
  updates it is freed);
* **gradients**: fp32, of the largest group (each update frees its gradients before the next);
* **activations of the gradient pass**: the tensors autograd saves while the loss is built, counted with
  ``torch.autograd.graph.saved_tensors_hooks`` (parameters excluded), of the largest group;
* **no-grad forwards and backward working set**: what lives beside them while a block is computed, taken as
  one block's share of the saved activations.

The prediction of the peak (the gradient pass of the largest group) is weights + optimiser states + the
larger of gradients and activations + the working set: the backward pass frees each block's saved
activations as it writes that block's gradients, so the two are never whole at once. (Their plain sum
over-predicted the measured peaks by up to 1.25× at 576 image tokens; benchmarks/memory.md.)"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from apexgen.batch import Batch
from apexgen.objectives.base import Objective
from apexgen.train.optimizers import only_group_trainable
from apexgen.train.sharding import blocks

MIB = 2**20
ADAMW_BYTES = 8  # two fp32 moments per trainable parameter
GRADIENT_BYTES = 4  # fp32 gradients of the fp32 trainable weights


@dataclass(frozen=True)
class MemoryBreakdown:
    """MiB above the loaded model; ``predicted_mib`` is the predicted training peak."""

    weights_mib: float
    optimizer_mib: float
    gradients_mib: float
    activations_mib: float
    transient_mib: float
    largest_group: str

    @property
    def predicted_mib(self) -> float:
        gradient_pass = max(self.gradients_mib, self.activations_mib)  # backward trades one for the other
        return self.weights_mib + self.optimizer_mib + gradient_pass + self.transient_mib


def tensor_bytes(modules: list[nn.Module]) -> int:
    """Bytes of every parameter and buffer of ``modules``, shared tensors once."""
    tensors = {id(t): t for module in modules for t in [*module.parameters(), *module.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def held_modules(objective: Objective) -> list[nn.Module]:
    return [*objective.networks().values(), objective]


@contextlib.contextmanager
def saved_activations(excluded: set[int]) -> Iterator[dict[int, int]]:
    """Bytes of each storage autograd saves for backward inside the block, keyed by its address; storages in
    ``excluded`` (the parameters') are not activations."""
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield saved


def activation_bytes(objective: Objective, group: str, batch: Batch, rng: torch.Generator, autocast) -> int:
    """The activations the loss of ``group`` keeps for its backward pass (the graph is dropped unused)."""
    excluded = {t.untyped_storage().data_ptr() for m in held_modules(objective) for t in m.parameters()}
    groups = objective.parameter_groups()
    with only_group_trainable(groups, group), saved_activations(excluded) as saved, autocast():
        output = objective.loss(group, batch, rng)
    del output
    return sum(saved.values())


def block_count(objective: Objective) -> int:
    return max(len(blocks(objective.student.sharding_root())), 1)


def breakdown(
    objective: Objective, loaded_bytes: int, step: int, batch: Batch, rng: torch.Generator, autocast
) -> MemoryBreakdown:
    """The breakdown of training step ``step`` (0-based), on ``batch``; ``loaded_bytes``: the weights of the
    model as loaded, before the method built its networks. Optimiser states: of every group not finished."""
    groups = objective.schedule(step)
    parameters = objective.parameter_groups()
    weights = tensor_bytes(held_modules(objective)) - loaded_bytes
    finished = objective.finished_groups(step)
    live = [params for group, params in parameters.items() if group not in finished]
    optimizer = sum(p.numel() * ADAMW_BYTES for params in live for p in params)
    passes = {
        g: (
            sum(p.numel() for p in parameters[g]) * GRADIENT_BYTES,
            activation_bytes(objective, g, batch, rng, autocast),
        )
        for g in dict.fromkeys(groups)
    }
    largest = max(passes, key=lambda g: max(passes[g]))
    gradients, activations = passes[largest]
    return MemoryBreakdown(
        weights / MIB,
        optimizer / MIB,
        gradients / MIB,
        activations / MIB,
        activations / block_count(objective) / MIB,
        largest,
    )
