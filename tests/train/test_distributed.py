"""Two processes (torchrun, gloo on CPU): identical parameters on both ranks, the loss curve of a
one-process run with the same global batch, and resume after a stop."""

import json
import statistics
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.launch import torchrun

SCRIPT = Path(__file__).with_name("distributed_run.py")


def launch(out: Path, processes: int, steps: int, stop_at: int, global_batch: int = 64) -> None:
    torchrun([str(SCRIPT), str(out), str(global_batch), str(steps), str(stop_at)], processes)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    launch(root / "two", 2, steps=40, stop_at=40)
    launch(root / "one", 1, steps=40, stop_at=40)
    launch(root / "resumed", 2, steps=40, stop_at=20)
    launch(root / "resumed", 2, steps=40, stop_at=40)
    return root


def test_both_ranks_end_with_identical_parameters(runs):
    rank0, rank1 = load_file(runs / "two" / "rank0.safetensors"), load_file(runs / "two" / "rank1.safetensors")
    assert rank0.keys() == rank1.keys()
    assert all((rank0[k] == rank1[k]).all() for k in rank0)


def test_loss_curve_matches_one_process_with_the_same_global_batch(runs):
    def mean_loss(run: str, first: int, last: int) -> float:
        history = json.loads((runs / run / "history_final.json").read_text())
        return statistics.fmean(h["student/fake"] + h["student/anchor"] for h in history[first:last])

    for first, last in ((0, 10), (30, 40)):
        two, one = mean_loss("two", first, last), mean_loss("one", first, last)
        assert abs(two - one) < 0.15 * one, (first, two, one)
    assert mean_loss("two", 30, 40) < mean_loss("two", 0, 10)


def test_two_process_resume_equals_the_uninterrupted_run(runs):
    for rank in (0, 1):
        full = load_file(runs / "two" / f"rank{rank}.safetensors")
        resumed = load_file(runs / "resumed" / f"rank{rank}.safetensors")
        assert all((full[k] == resumed[k]).all() for k in full)
