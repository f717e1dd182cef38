"""Run by tests/train/test_sharding.py under torchrun: each method on a tiny SD3 backbone, fully fine-tuned,
trained data-parallel and sharded (FSDP2) from the same weights on the same batches; the sharded run also
stopped and resumed; each run's checkpoint resumed in the other layout. The main rank writes the largest
differences of the gathered weights and logged values (JSON)."""

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import torch

from apexgen.backbones.lora import LoRAConfig
from apexgen.objectives import MethodsConfig, build_objective
from apexgen.objectives.apex import APEXConfig
from apexgen.objectives.dmd2 import DMD2Config
from apexgen.objectives.regression import RegressionConfig
from apexgen.students import prepare_networks
from apexgen.train.distributed import Distributed
from apexgen.train.loop import Trainer
from apexgen.train.settings import OptimizerConfig, TrainConfig
from tests.backbones.tiny import RandomLatents, tiny_backbone
from tests.methods import default_methods

STEPS, STOP = 4, 2
# Small enough that the norm clipping acts at every step, so that it is compared too.
GRAD_CLIP = 0.05
CASES = {
    # the default APEX (the teacher as reference; condition shift by a forward hook), an EMA of the student
    "apex": ("apex", default_methods(), {"ema_decay": 0.5}),
    # an EMA reference (a sharded copy of the student) and a second optimiser on the same weights
    "apex_ema_reference": ("apex", MethodsConfig(apex=APEXConfig(reference="ema", fake_updates=1)), {}),
    # a sharded trainable fake score; the student and the fake score frozen in turn
    "dmd2": ("dmd2", MethodsConfig(dmd2=DMD2Config(critic_updates=1)), {}),
    "consistency": ("consistency", MethodsConfig(), {}),
    "regression": ("regression", MethodsConfig(regression=RegressionConfig(pairs=8, teacher_steps=2)), {}),
    # blocks recomputed in backward (model.gradient_checkpointing)
    "apex_checkpointing": ("apex", default_methods(), {}),
}
CHECKPOINTING = ("apex_checkpointing",)


class SavedLatents(RandomLatents):
    """Random batches whose position is saved with checkpoints."""

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def trainer(case: str, distributed: Distributed, out: Path) -> Trainer:
    method, methods, train = CASES[case]
    backbone = tiny_backbone("sd3")
    if case in CHECKPOINTING:
        backbone.transformer.enable_gradient_checkpointing()
    networks = prepare_networks(backbone, method, full_finetune=True, lora=LoRAConfig())
    objective = build_objective(method, methods, networks.student, networks.teacher)
    config = TrainConfig(
        steps=STEPS,
        batch_size=4,
        log_every=1,
        checkpoint_every=STOP,
        progress=False,
        tensorboard=False,
        optimizer=OptimizerConfig(lr=1e-3, grad_clip=GRAD_CLIP),
        **train,
    )
    stream = SavedLatents("sd3", 4, seed=10 + distributed.rank)
    return Trainer(objective, stream, config, out_dir=out, distributed=distributed, description=case)


def trained(case: str, distributed: Distributed, out: Path, resume: bool = False) -> dict:
    """The run's gathered student and objective weights, the student's EMA and the history (main rank)."""
    run = trainer(case, distributed, out)
    if resume:
        assert run.resume(), out
    run.run()
    weights = {
        **{f"student.{k}": v for k, v in distributed.model_state(run.objective.student).items()},
        **{f"objective.{k}": v for k, v in distributed.model_state(run.objective).items()},
        **{f"ema.{k}": v for k, v in distributed.whole_tensors(run.ema.shadow if run.ema else {}).items()},
    }
    return {"weights": weights, "history": run.history}


def difference(a: dict, b: dict) -> dict:
    tensors = [k for k, v in a["weights"].items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    assert a["weights"].keys() == b["weights"].keys()
    logged = [(x[k], y[k]) for x, y in zip(a["history"], b["history"], strict=True) for k in x]
    return {
        "weights": max((a["weights"][k].float() - b["weights"][k].float()).abs().max().item() for k in tensors),
        "bitwise": all(torch.equal(a["weights"][k], b["weights"][k]) for k in tensors),
        "logged": max(abs(x - y) / max(abs(x), 1e-8) for x, y in logged),
        "entries": len(a["history"]),
    }


def resumed_from(run: Path, out: Path, case: str, distributed: Distributed) -> dict:
    """A new run in ``out`` resumed from ``run``'s checkpoint of step ``STOP`` (as if ``run`` had stopped there)."""
    if distributed.is_main:
        name = f"step_{STOP:07d}"
        shutil.copytree(run / "checkpoints" / name, out / "checkpoints" / name)
    distributed.barrier()
    return trained(case, distributed, out, resume=True)


def compare(case: str, root: Path, whole: Distributed, sharded: Distributed) -> dict | None:
    runs = {
        "whole": trained(case, whole, root / "whole"),
        "sharded": trained(case, sharded, root / "sharded"),
    }
    runs["sharded_resumed"] = resumed_from(root / "sharded", root / "parts", case, sharded)
    runs["whole_from_sharded"] = resumed_from(root / "sharded", root / "cross", case, whole)
    runs["sharded_from_whole"] = resumed_from(root / "whole", root / "back", case, sharded)
    if not whole.is_main:
        return None
    return {
        "sharded": difference(runs["sharded"], runs["whole"]),
        "resumed": difference(runs["sharded_resumed"], runs["sharded"]),
        "cross": difference(runs["whole_from_sharded"], runs["whole"]),
        "back": difference(runs["sharded_from_whole"], runs["sharded"]),
    }


def main(out: Path, cases: list[str]) -> None:
    torch.set_num_threads(1)
    whole = Distributed.from_environment(cpu=True)
    sharded = dataclasses.replace(whole, sharded=True)
    results = {case: compare(case, out / case, whole, sharded) for case in cases}
    if whole.is_main:
        (out / "differences.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
