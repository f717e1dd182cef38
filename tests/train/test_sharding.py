"""FSDP2 in the trainer (two processes, torchrun, gloo on the CPU): every method, fully fine-tuned on a tiny
SD3 backbone, trains sharded to the weights and loss curve of the data-parallel run; a stopped sharded run
resumes exactly; checkpoints resume across the two layouts. And the blocks found in each backbone."""

import json
from pathlib import Path

import pytest

from apexgen.train.sharding import blocks
from tests.backbones.tiny import NAMES, tiny_backbone
from tests.launch import torchrun

SCRIPT = Path(__file__).with_name("sharded_run.py")

# Sharded and data-parallel runs add the same numbers in other orders (the reduce-scatter, the norm of the
# clipped gradients): float32 rounding, measured at most 1.1e-6 after 4 steps of lr 1e-3.
TOLERANCE = 1e-5
# The regression method keeps a pool of teacher endpoints per process, and a checkpoint holds the main
# process's alone (data-parallel runs too): after a resume the others train on its pool.
POOL_PER_PROCESS = ("regression",)


BLOCK_LISTS = {
    "sd3": ["transformer_blocks"],
    "flux": ["transformer_blocks", "single_transformer_blocks"],
    "qwen_image": ["transformer_blocks"],
    "sana": ["transformer_blocks"],
    "z_image": ["noise_refiner", "context_refiner", "layers"],
}


@pytest.mark.parametrize("name", NAMES)
def test_blocks_are_the_transformer_blocks_of_each_backbone(name):
    backbone = tiny_backbone(name)
    assert backbone.sharding_root() is backbone.transformer  # the module the stock pipeline calls
    expected = [block for attribute in BLOCK_LISTS[name] for block in getattr(backbone.transformer, attribute)]
    assert blocks(backbone.transformer) == expected


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(("apex", "dmd2"), id="apex-dmd2"),
        pytest.param(
            ("apex_ema_reference", "consistency", "regression", "apex_checkpointing"),
            id="others",
            marks=pytest.mark.slow,
        ),
    ],
)
def differences(request, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("sharded")
    torchrun([str(SCRIPT), str(out), *request.param])
    return json.loads((out / "differences.json").read_text())


def test_sharded_training_equals_data_parallel_training(differences):
    for case, found in differences.items():
        assert found["sharded"]["entries"] == 4, case
        assert found["sharded"]["weights"] < TOLERANCE and found["sharded"]["logged"] < TOLERANCE, (case, found)


def test_stopped_sharded_run_resumes_exactly(differences):
    for case, found in differences.items():
        if case not in POOL_PER_PROCESS:
            assert found["resumed"]["bitwise"] and found["resumed"]["logged"] == 0, (case, found)


def test_checkpoints_resume_across_layouts(differences):
    """A sharded run's checkpoint resumes data-parallel, and a data-parallel run's sharded."""
    for case, found in differences.items():
        for direction in ("cross", "back") if case not in POOL_PER_PROCESS else ():
            assert found[direction]["weights"] < TOLERANCE, (case, direction, found)
            assert found[direction]["logged"] < TOLERANCE, (case, direction, found)
