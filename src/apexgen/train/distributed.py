"""Several processes (torchrun or ``accelerate launch``): who am I, and averaging gradients across ranks.

Launchers set RANK / WORLD_SIZE / LOCAL_RANK; accelerate's ``PartialState`` reads them and starts the
process group (gloo on CPU, NCCL on GPU). Gradients are averaged with one all-reduce per flat bucket
after each backward, so an objective may call its networks any number of times per step, with or
without gradients, and freeze whole parameter groups (DMD2's critic/generator phases) without the
restrictions of a DDP wrapper. Every rank starts from rank 0's weights.

Pitfall: ``accelerate launch --cpu --num_processes 2`` silently runs one process; use
``torchrun --standalone --nproc_per_node 2`` or ``accelerate launch --multi_gpu --num_processes 2``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls, cpu: bool = False) -> Distributed:
        """Single-process unless a launcher set WORLD_SIZE > 1; then join the process group."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            device = torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
            return cls(device=device)
        from accelerate import PartialState

        state = PartialState(cpu=cpu)
        return cls(state.process_index, state.num_processes, state.device)

    def broadcast_parameters(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        if not self.active:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Mean of each gradient over ranks, one all-reduce per (device, dtype) bucket."""
        if not self.active:
            return
        buckets: dict[tuple, list[torch.Tensor]] = {}
        for p in parameters:
            if p.grad is not None:
                buckets.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
        for grads in buckets.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= self.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each logged value over ranks (the loss curve of the global batch)."""
        if not self.active or not values:
            return values
        names = sorted(values)
        tensor = torch.tensor([values[name] for name in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return dict(zip(names, (tensor / self.world_size).tolist(), strict=True))

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
