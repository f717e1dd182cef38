"""``apexgen train`` with ``model.fsdp`` (two processes, torchrun, gloo on the CPU): 4 APEX steps of full
fine-tuning on the tiny SD3 pipeline end with the weights, loss curve and checkpoint layout of the
data-parallel run with the same seed and global batch; its export (EMA weights) samples in the stock pipeline, and
``apexgen export`` rebuilds it from the last checkpoint; a run stopped at step 2 resumes to the same weights;
one process trains unsharded."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from apexgen.cli import main
from apexgen.export import TRANSFORMER_FOLDER
from tests.data.tiny_pipelines import SIDE
from tests.jobs.real_backbones.helpers import images, sample, train_arguments
from tests.launch import torchrun

STEPS, STOP = 4, 2
# Sharded and data-parallel runs add the same numbers in other orders (the reduce-scatter, the gradient
# norm): float32 rounding only.
TOLERANCE = 1e-5
FILES = ("student.safetensors", "objective.pt", "optimizers.pt", "random_and_ema.pt", "trainer.json")


def train(root: Path, models, out: Path, *overrides: str):
    arguments = train_arguments(
        "sd3",
        models("sd3"),
        images(root / "data"),
        out,
        "model.full_finetune=true",
        f"train.steps={STEPS}",
        f"train.keep_checkpoints={STEPS}",
        f"data.cache_dir={root / 'cache'}",
        "train.ema_decay=0.5",  # the export holds the EMA weights
        *overrides,
    )
    return torchrun(["-m", "apexgen.cli", *arguments], cwd=root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, models) -> Path:
    root = tmp_path_factory.mktemp("fsdp")
    result = train(root, models, root / "sharded", "model.fsdp=true")
    (root / "sharded.log").write_text(result.stderr)
    train(root, models, root / "whole", "model.fsdp=false")
    return root


def checkpoint(run: Path, step: int = STEPS) -> Path:
    return run / "checkpoints" / f"step_{step:07d}"


def largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_sharded_run_ends_with_the_weights_and_losses_of_the_data_parallel_run(runs):
    sharded, whole = (load_file(checkpoint(runs / run) / "student.safetensors") for run in ("sharded", "whole"))
    assert largest_difference(sharded, whole) < TOLERANCE
    assert any(not torch.equal(sharded[k], whole[k]) for k in sharded)  # two computations, not one copied
    histories = [json.loads((runs / run / "history.json").read_text()) for run in ("sharded", "whole")]
    assert [entry["step"] for entry in histories[0]] == list(range(1, STEPS + 1))
    for a, b in zip(*histories, strict=True):
        assert a.keys() == b.keys() and all(abs(a[k] - b[k]) <= TOLERANCE * max(abs(b[k]), 1) for k in a)
    log = (runs / "sharded.log").read_text()
    assert log.count("FSDP over 2 processes: student (2 blocks), reference (2 blocks)") == 1
    assert log.count("preview (1 steps)") == STEPS + 1 and log.count("exported the transformer") == 1


def test_checkpoints_of_a_sharded_run_have_the_data_parallel_layout(runs):
    sharded, whole = checkpoint(runs / "sharded"), checkpoint(runs / "whole")
    assert sorted(p.name for p in sharded.iterdir()) == sorted(FILES)
    optimizers = [torch.load(folder / "optimizers.pt", weights_only=False) for folder in (sharded, whole)]
    assert optimizers[0].keys() == optimizers[1].keys() and "student" in optimizers[0]
    for group in optimizers[0]:
        a, b = optimizers[0][group], optimizers[1][group]
        assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
        for index, state in a["state"].items():
            assert state.keys() == b["state"][index].keys()
            assert largest_difference(state, b["state"][index]) < TOLERANCE
    assert json.loads((sharded / "trainer.json").read_text())["world_size"] == 2


def exported(run: Path) -> dict:
    return load_file(next((run / "export" / TRANSFORMER_FOLDER).glob("*.safetensors")))


def test_export_of_a_sharded_run_holds_its_ema_weights_and_samples_in_the_stock_pipeline(runs, models, tmp_path):
    export = exported(runs / "sharded")
    ema = torch.load(checkpoint(runs / "sharded") / "random_and_ema.pt", weights_only=False)["ema"]["shadow"]
    assert export.keys() >= {k.removeprefix("transformer.") for k in ema}
    assert all(torch.equal(export[k.removeprefix("transformer.")], v) for k, v in ema.items())
    assert largest_difference(export, exported(runs / "whole")) < TOLERANCE
    assert sample(models("sd3"), runs / "sharded" / "export", tmp_path / "image.png", steps=2).size == (SIDE, SIDE)


def test_export_command_exports_the_checkpoint_of_a_sharded_run_in_one_process(runs, tmp_path):
    assert main(["export", "--run", str(runs / "sharded"), "--out", str(tmp_path / "again" / "export")]) == 0
    first, again = exported(runs / "sharded"), exported(tmp_path / "again")
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)


@pytest.mark.slow
def test_stopped_sharded_run_resumes_to_the_weights_of_the_uninterrupted_one(runs, models, tmp_path):
    parts = tmp_path / "parts"
    (parts / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint(runs / "sharded", STOP), checkpoint(parts, STOP))  # as if stopped at step 2
    result = train(runs, models, parts, "model.fsdp=true", "--resume")
    assert f"resumed from {checkpoint(parts, STOP)}" in result.stderr
    whole, resumed = (load_file(checkpoint(run) / "student.safetensors") for run in (runs / "sharded", parts))
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    history = json.loads((parts / "history.json").read_text())
    assert history == json.loads((runs / "sharded" / "history.json").read_text())


def test_one_process_trains_unsharded(tmp_path, models, caplog):
    overrides = ("model.full_finetune=true", "model.fsdp=true", "train.steps=1", "samples.prompts=[]")
    with caplog.at_level(logging.INFO):
        assert main(train_arguments("sd3", models("sd3"), images(tmp_path / "data"), tmp_path / "run", *overrides)) == 0
    assert "model.fsdp: one process, nothing to shard; the model stays whole" in caplog.text
    assert (tmp_path / "run" / "export" / TRANSFORMER_FOLDER).is_dir()
