import dataclasses
import json
import logging
import mmap
import time

import pytest
import torch

from apexgen.config import ConfigError
from apexgen.data.toy import Ring, ToyStream
from apexgen.objectives import MethodsConfig, build_objective
from apexgen.objectives.apex import APEXConfig, APEXSlices
from apexgen.objectives.regression import RegressionConfig
from apexgen.train import checkpoint
from apexgen.train.checkpoint import CheckpointError
from apexgen.train.finite import NonFiniteLoss, check_finite
from apexgen.train.loop import Trainer
from apexgen.train.settings import OptimizerConfig, TrainConfig, learning_rate
from tests.conftest import tiny_mlp

CONFIG = TrainConfig(steps=6, batch_size=16, log_every=1, checkpoint_every=3, keep_checkpoints=5, progress=False)
METHODS = MethodsConfig(apex=APEXConfig(), regression=RegressionConfig(pairs=32, teacher_steps=3))
PRIVATE = APEXConfig(fake_network="private", fake_updates=1, slices=APEXSlices(generator=1.0, fake=0.0))
VARIANTS = {"apex_private": PRIVATE, "apex_warmup": APEXConfig(fake_warmup=2)}


def make_trainer(method: str, out_dir, config=CONFIG):
    distribution = Ring()
    teacher = tiny_mlp(cond_dim=distribution.cond_dim, seed=7).requires_grad_(False)
    student = tiny_mlp(cond_dim=distribution.cond_dim, seed=7)
    methods = dataclasses.replace(METHODS, apex=VARIANTS[method]) if method in VARIANTS else METHODS
    objective = build_objective(method.split("_")[0], methods, student, teacher)
    return Trainer(objective, ToyStream(distribution, 16, seed=3), config, out_dir=out_dir), student


@pytest.mark.parametrize("method", ["apex", "apex_private", "apex_warmup", "dmd2", "consistency", "regression"])
def test_resumed_run_reaches_the_same_parameters_as_an_uninterrupted_run(tmp_path, method):
    full, full_student = make_trainer(method, tmp_path / "full")
    full.run()

    stopped, _ = make_trainer(method, tmp_path / "resumed", dataclasses.replace(CONFIG, steps=3))
    stopped.run()
    resumed, resumed_student = make_trainer(method, tmp_path / "resumed")
    assert resumed.resume()
    assert resumed.start_step == 3
    result = resumed.run()
    assert (result.steps, result.segment_steps) == (6, 3)
    for a, b in zip(full_student.parameters(), resumed_student.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(full.objective.state_dict().values(), resumed.objective.state_dict().values(), strict=True):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
    assert [h["step"] for h in resumed.history] == list(range(1, 7))


def test_the_fake_warm_up_state_is_freed_when_the_warm_up_ends(tmp_path, caplog):
    warming, _ = make_trainer("apex_warmup", None, dataclasses.replace(CONFIG, steps=2))
    warming.run()
    assert warming.optimizers["fake"].state  # held through the warm-up
    caplog.set_level(logging.INFO)
    done, _ = make_trainer("apex_warmup", None, dataclasses.replace(CONFIG, steps=3))
    done.run()
    assert not done.optimizers["fake"].state and done.optimizers["student"].state
    assert "the 'fake' group is done at step 2; its optimiser state is freed" in caplog.text


def slow_previews(trainer: Trainer, seconds: float) -> None:
    """Make every step of ``trainer`` last at least ``seconds`` (a preview each step that waits)."""
    trainer.preview = lambda done: time.sleep(seconds)
    trainer.config = dataclasses.replace(trainer.config, preview_every=1)


def test_totals_of_a_resumed_run_add_up_its_segments(tmp_path):
    first, _ = make_trainer("apex", tmp_path, dataclasses.replace(CONFIG, steps=3))
    slow_previews(first, 0.2)
    first_result = first.run()
    assert first_result.seconds >= 0.6 and first_result.steps == first_result.segment_steps == 3
    saved = json.loads((checkpoint.latest(tmp_path / "checkpoints") / "trainer.json").read_text())
    assert saved["train_seconds"] == pytest.approx(first_result.seconds, abs=0.05)
    assert saved["total_steps"] == 3

    second, _ = make_trainer("apex", tmp_path)
    assert second.resume()
    result = second.run()
    assert (result.steps, result.segment_steps) == (6, 3)
    assert result.segment_seconds < 0.6  # the second segment has no slow previews
    assert result.seconds == pytest.approx(saved["train_seconds"] + result.segment_seconds)
    newest = json.loads((checkpoint.latest(tmp_path / "checkpoints") / "trainer.json").read_text())
    assert newest["train_seconds"] == pytest.approx(result.seconds, abs=0.05)


def test_checkpoint_without_totals_resumes_with_none_before_it(tmp_path):
    """A checkpoint written before the totals were kept: its seconds count as 0, its step as the start."""
    trainer, _ = make_trainer("apex", tmp_path, dataclasses.replace(CONFIG, steps=3))
    trainer.run()
    path = checkpoint.latest(tmp_path / "checkpoints") / "trainer.json"
    saved = json.loads(path.read_text())
    del saved["train_seconds"], saved["total_steps"]
    path.write_text(json.dumps(saved))
    resumed, _ = make_trainer("apex", tmp_path)
    assert resumed.resume()
    assert (resumed.start_step, resumed.seconds_before) == (3, 0.0)
    result = resumed.run()
    assert result.steps == 6 and result.seconds == pytest.approx(result.segment_seconds)


def test_resume_past_the_runs_steps_is_refused_with_both_numbers(tmp_path):
    trainer, _ = make_trainer("apex", tmp_path)
    trainer.run()
    shorter, _ = make_trainer("apex", tmp_path, dataclasses.replace(CONFIG, steps=4))
    shorter.steps_key = "distill.train.steps"
    with pytest.raises(ConfigError, match=r"at step 6, past this run's 4 steps; set distill.train.steps=6 or more"):
        shorter.resume()


def test_resume_says_when_there_is_no_checkpoint_and_when_the_schedule_changes(tmp_path, caplog):
    cosine = dataclasses.replace(CONFIG, steps=3, optimizer=OptimizerConfig(decay="cosine"))
    trainer, _ = make_trainer("apex", tmp_path, cosine)
    with caplog.at_level(logging.INFO):
        assert not trainer.resume()
    assert f"no checkpoint in {tmp_path / 'checkpoints'}: starting from step 0" in caplog.text
    trainer.run()
    caplog.clear()
    extended, _ = make_trainer("apex", tmp_path, dataclasses.replace(cosine, steps=6))
    with caplog.at_level(logging.INFO):
        assert extended.resume()
    assert "saved by a run of 3 steps; continuing it to 6 steps" in caplog.text
    assert "the cosine learning-rate decay is recomputed over 6 steps" in caplog.text
    caplog.clear()
    again, _ = make_trainer("apex", tmp_path, dataclasses.replace(cosine, steps=3))
    with caplog.at_level(logging.INFO):
        assert again.resume()
    assert "continuing it" not in caplog.text  # the same total: nothing changes


def test_checkpoints_rotate_and_resume_picks_the_newest(tmp_path):
    trainer, _ = make_trainer("apex", tmp_path, dataclasses.replace(CONFIG, checkpoint_every=1, keep_checkpoints=2))
    trainer.run()
    assert [p.name for p in checkpoint.step_dirs(tmp_path / "checkpoints")] == ["step_0000005", "step_0000006"]
    assert not list((tmp_path / "checkpoints").glob(".*partial"))


def test_truncated_checkpoint_fails_with_a_clear_message_and_is_left_in_place(tmp_path):
    trainer, _ = make_trainer("apex", tmp_path)
    trainer.run()
    newest = checkpoint.latest(tmp_path / "checkpoints")
    weights = newest / "student.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    resumed, _ = make_trainer("apex", tmp_path)
    with pytest.raises(CheckpointError, match="corrupt or truncated.*previous checkpoint"):
        resumed.resume()
    assert weights.exists()


def test_checkpoint_of_another_model_is_rejected(tmp_path):
    trainer, _ = make_trainer("apex", tmp_path)
    trainer.run()
    saved = checkpoint.latest(tmp_path / "checkpoints") / "student.safetensors"
    with pytest.raises(CheckpointError, match="does not match this model"):
        checkpoint.load_student(saved, torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match=r"cond_proj.weight has shape \(16, 5\), the model expects \(16, 3\)"):
        checkpoint.load_student(saved, tiny_mlp(cond_dim=3))


def test_non_finite_loss_at_the_first_step_blames_the_inputs_later_the_learning_rate(tmp_path):
    trainer, student = make_trainer("apex", None)
    with torch.no_grad():
        next(student.parameters()).fill_(float("nan"))  # as corrupt weights would hold
    with pytest.raises(NonFiniteLoss, match="first step of this run, so not a learning-rate problem") as stopped:
        trainer.run()
    assert stopped.value.at_first_step and "optimizer.lr" not in str(stopped.value)
    assert "weights (the teacher, base model or checkpoint) or the data may be corrupt" in str(stopped.value)
    with pytest.raises(NonFiniteLoss, match="at step 5; lower optimizer.lr") as diverged:
        check_finite(torch.tensor(float("inf")), "student", 4, "apex", first=False)
    assert not diverged.value.at_first_step and isinstance(diverged.value, FloatingPointError)


@pytest.mark.parametrize("damage", ["truncated", "not_a_state"])
def test_a_corrupt_trainer_json_is_named_with_the_fix(tmp_path, damage):
    trainer, _ = make_trainer("apex", tmp_path)
    trainer.run()
    state = checkpoint.latest(tmp_path / "checkpoints") / "trainer.json"
    state.write_text(state.read_text()[:20] if damage == "truncated" else "[1, 2]")
    resumed, _ = make_trainer("apex", tmp_path)
    expected = "is corrupt or truncated" if damage == "truncated" else "is not a checkpoint's trainer state"
    with pytest.raises(CheckpointError, match=f"trainer.json {expected}.*delete its folder to resume"):
        resumed.resume()


def test_the_regression_pool_before_training_shows_progress_and_a_closing_line(capsys, caplog):
    trainer, _ = make_trainer("regression", None, dataclasses.replace(CONFIG, steps=1, progress=True))
    with caplog.at_level(logging.INFO, logger="apexgen.train.loop"):
        trainer.run()
    bars = capsys.readouterr().err
    assert "train: preparing:" in bars and " 0/32 [" in bars  # the bar's total: the pool's size
    assert "train: prepared in" in caplog.text and "from 32 rows of data" in caplog.text
    quiet, _ = make_trainer("regression", None, dataclasses.replace(CONFIG, steps=1))  # train.progress=false
    quiet.run()
    assert "preparing" not in capsys.readouterr().err


def test_learning_rate_schedule():
    config = OptimizerConfig(lr=1.0, warmup_steps=10, decay="cosine")
    assert learning_rate(config, 0, 110) == pytest.approx(0.1)
    assert learning_rate(config, 9, 110) == pytest.approx(1.0)
    assert learning_rate(config, 60, 110) == pytest.approx(0.5)
    assert learning_rate(OptimizerConfig(lr=2.0), 5, 10) == 2.0


def test_student_ema_is_resumed_and_swapped_in_only_inside_the_block(tmp_path):
    config = dataclasses.replace(CONFIG, ema_decay=0.99)
    full, full_student = make_trainer("apex", tmp_path / "full", config)
    full.run()
    stopped, _ = make_trainer("apex", tmp_path / "resumed", dataclasses.replace(config, steps=3))
    stopped.run()
    resumed, resumed_student = make_trainer("apex", tmp_path / "resumed", config)
    resumed.resume()
    resumed.run()
    for name, average in full.ema.shadow.items():
        assert torch.equal(average, resumed.ema.shadow[name])
    live = [p.clone() for p in full_student.parameters()]
    with full.ema.applied():
        for p, name in zip(full_student.parameters(), dict(full_student.named_parameters()), strict=True):
            assert torch.equal(p, full.ema.shadow[name])
    for p, before in zip(full_student.parameters(), live, strict=True):
        assert torch.equal(p, before)


def touch_fresh_pages(size: int) -> None:
    """Raise the resident set by ``size`` bytes: an anonymous mapping of new pages, each written once. (A tensor
    of that size may be served from memory the allocator already holds after earlier tests, and then the
    resident set does not grow.)"""
    page = mmap.PAGESIZE
    with mmap.mmap(-1, size) as memory:
        for offset in range(0, size, page):
            memory[offset] = 1


def test_peak_memory_covers_every_step_not_only_the_last(tmp_path):
    trainer, _ = make_trainer("apex", None, dataclasses.replace(CONFIG, steps=3))
    original = trainer.step

    def step_with_a_spike(step):
        values = original(step)
        if step == 0:
            with trainer.ledger.step(step + 1):
                touch_fresh_pages(64 * 2**20)  # 64 MiB inside the first step
        return values

    trainer.step = step_with_a_spike
    result = trainer.run()
    assert result.peak_memory_mb >= 60
