"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for full fine-tuning (``model.fsdp``).

What is sharded: every network of the method that is a copy of the backbone (a :class:`FlowBackbone`
among ``objective.networks()``: the student, the frozen teacher, DMD2's fake score, APEX's EMA reference,
the consistency target), each over all processes: first every block on its own, then the rest at the
network's root (``FlowBackbone.sharding_root``; for a diffusers adapter its transformer, which the stock
pipeline calls directly in previews). Blocks are found generically: the elements of every ``nn.ModuleList``
directly under the root (``transformer_blocks``; Flux's ``single_transformer_blocks``; Z-Image's ``layers``,
``noise_refiner``, ``context_refiner``). Any other module stays whole on every process, its gradients
all-reduced as in data-parallel runs. The diffusers models are wrapped from outside, never patched.

Weights and gradients are DTensors sharded along their first dimension; FSDP reduce-scatters the gradients
as the mean over processes (the mean of the data-parallel all-reduce), and ``clip_grad_norm_`` takes the
global norm of sharded gradients (a group must not mix them with whole ones; none of the methods' groups
does). A sharded forward is collective: every process must call a sharded network equally often, which the
objectives do (their calls depend on the settings, never on the data).

Checkpoints and the export see whole tensors: sharded ones are gathered one at a time onto the main
process's CPU (``DTensor.full_tensor``) and loaded back whole, each process keeping its shard
(``distribute_tensor``), so a checkpoint has the layout of an unsharded run (``Module.state_dict``,
``Optimizer.state_dict``). The helpers of ``torch.distributed.checkpoint.state_dict`` are not used: they
refuse state that is neither a tensor nor a plain value (the regression method's pool of endpoints) and
key optimiser states by parameter name.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from apexgen.backbones.base import FlowBackbone

# Every sharded module frees its gathered weights after each forward, the root too. (FSDP2 keeps the root's
# until backward; a network run only without gradients, such as the teacher, an EMA copy or DMD2's student in
# the critic update, then keeps them, and its next forward reuses weights gathered before the last optimiser
# or EMA step, with their old ``requires_grad``, which the trainer switches per parameter group. Measured with
# that default: the root weights of DMD2's generator got no gradient.) The price: backward gathers a root's
# weights again only when gradients reach the network's output, so they must start there (DMD2's GAN head,
# which reads block features, is refused with FSDP).
RESHARD_AFTER_FORWARD = True


def blocks(root: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a network: the elements of the ``nn.ModuleList`` children of its root."""
    return [block for child in root.children() if isinstance(child, nn.ModuleList) for block in child]


def shard_network(network: FlowBackbone, mesh) -> int:
    """Shard each block of ``network``, then its root; returns the number of blocks."""
    root = network.sharding_root()
    found = blocks(root)
    for block in found:
        fully_shard(block, mesh=mesh, reshard_after_forward=RESHARD_AFTER_FORWARD)
    fully_shard(root, mesh=mesh, reshard_after_forward=RESHARD_AFTER_FORWARD)
    outside = [name for name, p in network.named_parameters() if not isinstance(p, DTensor)]
    if outside:
        raise ValueError(f"{type(network).__name__} has parameters outside its sharding root: {outside[:3]}")
    return len(found)


def backbone_networks(networks: dict[str, nn.Module]) -> dict[str, FlowBackbone]:
    """The networks that are copies of the backbone, each once (APEX's reference may be the teacher)."""
    unique: dict[int, tuple[str, FlowBackbone]] = {}
    for name, network in networks.items():
        if isinstance(network, FlowBackbone):
            unique.setdefault(id(network), (name, network))
    return dict(unique.values())


def shard_networks(networks: dict[str, nn.Module], device: torch.device) -> dict[str, int]:
    """Shard every backbone copy among ``networks`` over all processes; returns the blocks of each."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    return {name: shard_network(network, mesh) for name, network in backbone_networks(networks).items()}


def is_sharded(tensor: Tensor) -> bool:
    return isinstance(tensor, DTensor)


def local(tensor: Tensor) -> Tensor:
    """This process's shard of a sharded tensor (a view: writing to it writes the shard); else the tensor."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def gathered(state: dict[str, Any], main: bool) -> dict[str, Any]:
    """``state`` with whole tensors, on the main process's CPU (empty elsewhere): sharded tensors are gathered
    one at a time, in ``state``'s order, which every process must share. Collective."""
    whole = {}
    for name, value in state.items():
        value = value.full_tensor() if is_sharded(value) else value
        if main:
            whole[name] = value.detach().cpu() if isinstance(value, Tensor) else value
    return whole


def shard_like(value: Tensor, like: Tensor) -> Tensor:
    """This process's shard of the whole tensor ``value``, laid out as the sharded tensor ``like``."""
    return distribute_tensor(value.to(like.device), like.device_mesh, like.placements, src_data_rank=None)


def copy_whole(target: Tensor, value: Tensor) -> None:
    """Copy a whole tensor into ``target``; a sharded target takes its own shard of it."""
    local(target).copy_(local(shard_like(value, target)) if is_sharded(target) else value)


def gathered_model_state(module: nn.Module, main: bool) -> dict[str, Any]:
    """``module.state_dict()`` with whole tensors on the main process. Collective."""
    return gathered(module.state_dict(), main)


def load_model_state(module: nn.Module, state: dict[str, Any], strict: bool = True) -> None:
    """Load a whole state dict (every process passes it) into ``module``; each keeps its own shards."""
    current = module.state_dict()
    own = {
        name: shard_like(value, current[name]) if name in current and is_sharded(current[name]) else value
        for name, value in state.items()
    }
    module.load_state_dict(own, strict=strict)


def gathered_optimizer_state(optimizer: torch.optim.Optimizer, main: bool) -> dict[str, Any]:
    """``optimizer.state_dict()`` with whole tensors on the main process. Collective."""
    state = optimizer.state_dict()
    per_parameter = {index: gathered(values, main) for index, values in state["state"].items()}
    return {"state": per_parameter, "param_groups": state["param_groups"]} if main else {}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a whole ``optimizer.state_dict()`` (every process passes it); each keeps its own shards of the
    states shaped like their parameter (AdamW's moments; its step count stays whole)."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    own = {}
    for index, values in state["state"].items():
        parameter = parameters[index]
        sharded = is_sharded(parameter)
        own[index] = {
            key: shard_like(v, parameter) if sharded and isinstance(v, Tensor) and v.shape == parameter.shape else v
            for key, v in values.items()
        }
    optimizer.load_state_dict({"state": own, "param_groups": state["param_groups"]})
