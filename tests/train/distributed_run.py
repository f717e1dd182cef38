"""Run by tests/train/test_distributed.py under torchrun (or directly for one process): a few APEX steps
on the toy ring; each rank writes its final parameters, the main rank the logged history."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from apexgen.backbones.mlp import MLPConfig, MLPVelocity
from apexgen.data.toy import Ring, ToyStream
from apexgen.objectives import MethodsConfig, build_objective
from apexgen.objectives.apex import APEXConfig, APEXSlices
from apexgen.train.distributed import Distributed
from apexgen.train.loop import Trainer
from apexgen.train.settings import OptimizerConfig, TrainConfig


def main(out: Path, global_batch: int, steps: int, stop_at: int) -> None:
    torch.set_num_threads(1)
    distributed = Distributed.from_environment(cpu=True)
    distribution = Ring()
    torch.manual_seed(distributed.rank)  # different initialisations: the trainer must broadcast rank 0's
    student = MLPVelocity(2, distribution.cond_dim, MLPConfig(hidden=32, layers=2))
    teacher = MLPVelocity(2, distribution.cond_dim, MLPConfig(hidden=32, layers=2)).requires_grad_(False)
    distributed.broadcast_parameters(teacher)
    # the paper's partition, with anchor rows, so every loss term crosses the gradient average
    apex = APEXConfig(slices=APEXSlices(generator=0.25, anchor=0.5, fake=0.25))
    objective = build_objective("apex", MethodsConfig(apex=apex), student, teacher)
    per_rank = global_batch // distributed.world_size
    stream = ToyStream(distribution, per_rank, seed=11 + distributed.rank)
    config = TrainConfig(
        steps=steps,
        batch_size=per_rank,
        log_every=1,
        checkpoint_every=stop_at,
        progress=False,
        tensorboard=False,
        optimizer=OptimizerConfig(lr=1e-3),
    )
    trainer = Trainer(objective, stream, config, out_dir=out, distributed=distributed)
    trainer.resume()
    if trainer.start_step < stop_at:
        trainer.config = TrainConfig(**{**config.__dict__, "steps": stop_at})
    trainer.run()
    save_file({k: v.contiguous() for k, v in student.state_dict().items()}, out / f"rank{distributed.rank}.safetensors")
    if distributed.is_main:
        (out / "history_final.json").write_text(json.dumps(trainer.history))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
