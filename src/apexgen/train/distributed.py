"""Several processes (torchrun or ``accelerate launch``): who am I, gradients across ranks, and the state of
the networks as whole tensors for checkpoints and the export.

Launchers set RANK / WORLD_SIZE / LOCAL_RANK; accelerate's ``PartialState`` reads them and starts the
process group (gloo on CPU, NCCL on GPU). Every rank starts from rank 0's weights. Two layouts:

* data-parallel (default): every process holds whole networks; gradients are averaged with one all-reduce
  per flat bucket after each backward, so an objective may call its networks any number of times per step,
  with or without gradients, and freeze whole parameter groups (DMD2's critic/generator phases) without the
  restrictions of a DDP wrapper.
* sharded (``model.fsdp``, ``sharded=True``): the method's copies of the backbone are sharded with FSDP2
  (``apexgen.train.sharding``), which averages their gradients itself; the rest is data-parallel as above.
  State is gathered whole onto the main process for checkpoints and the export.

Pitfall: ``accelerate launch --cpu --num_processes 2`` silently runs one process; use
``torchrun --standalone --nproc_per_node 2`` or ``accelerate launch --multi_gpu --num_processes 2``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from apexgen.train import sharding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    sharded: bool = False  # FSDP2: the method's copies of the backbone are sharded over the processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls, cpu: bool = False, fsdp: bool = False) -> Distributed:
        """Single-process unless a launcher set WORLD_SIZE > 1; then join the process group. ``fsdp``: shard
        over the processes (with one process there is nothing to shard, and the run is unsharded)."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            if fsdp:
                log.info("model.fsdp: one process, nothing to shard; the model stays whole")
            device = torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
            return cls(device=device)
        from accelerate import PartialState

        state = PartialState(cpu=cpu)
        return cls(state.process_index, state.num_processes, state.device, fsdp)

    def prepare(self, objective: nn.Module) -> None:
        """Rank 0's weights on every rank (the student and the objective's own modules); then, when sharded,
        the backbone copies among ``objective.networks()`` sharded."""
        self.broadcast_parameters(objective.student)
        self.broadcast_parameters(objective)
        if self.sharded:
            blocks = sharding.shard_networks(objective.networks(), self.device)
            if self.is_main:
                sharded = ", ".join(f"{name} ({count} blocks)" for name, count in blocks.items())
                log.info("FSDP over %d processes: %s", self.world_size, sharded)

    def broadcast_parameters(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank (before any sharding)."""
        if not self.active:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Mean of each whole gradient over ranks, one all-reduce per (device, dtype) bucket. Sharded
        gradients are left alone: FSDP has reduce-scattered them to their mean already."""
        if not self.active:
            return
        buckets: dict[tuple, list[torch.Tensor]] = {}
        for p in parameters:
            if p.grad is not None and not sharding.is_sharded(p.grad):
                buckets.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
        for grads in buckets.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= self.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def model_state(self, module: nn.Module) -> dict[str, Any]:
        """``module.state_dict()`` with whole tensors (sharded: gathered on the main process, empty elsewhere;
        every process must call it)."""
        return sharding.gathered_model_state(module, self.is_main) if self.sharded else module.state_dict()

    def load_model_state(self, module: nn.Module, state: dict[str, Any], strict: bool = True) -> None:
        """Load a whole state dict, which every process passes."""
        if self.sharded:
            sharding.load_model_state(module, state, strict)
        else:
            module.load_state_dict(state, strict=strict)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``optimizer.state_dict()`` with whole tensors (as :meth:`model_state`)."""
        return sharding.gathered_optimizer_state(optimizer, self.is_main) if self.sharded else optimizer.state_dict()

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load a whole ``optimizer.state_dict()``, which every process passes."""
        if self.sharded:
            sharding.load_optimizer_state(optimizer, state)
        else:
            optimizer.load_state_dict(state)

    def whole_tensors(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Whole copies of tensors that may be sharded (e.g. an EMA of sharded weights), as :meth:`model_state`."""
        return sharding.gathered(tensors, self.is_main) if self.sharded else tensors

    def mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each logged value over ranks (the loss curve of the global batch)."""
        if not self.active or not values:
            return values
        names = sorted(values)
        tensor = torch.tensor([values[name] for name in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return dict(zip(names, (tensor / self.world_size).tolist(), strict=True))

    def largest_over_ranks(self, value: int) -> int:
        """The largest of every rank's ``value`` (e.g. a stop signal that reached only some of the ranks)."""
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def gather(self, value):
        """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
        if not self.active:
            return [value]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.active:
            dist.barrier()
