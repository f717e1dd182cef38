"""Long steps show a progress bar (switched off by ``apexgen --no-progress``) and end with one closing line."""

import logging
import os

import torch

from apexgen.cli import main
from apexgen.condition import TextCondition
from apexgen.data.fashion_mnist import IMAGE_SHAPE
from apexgen.eval.fid import inception_features
from apexgen.jobs.pixel.config import TeacherModelConfig
from apexgen.jobs.pixel.generate import generate
from apexgen.jobs.pixel.models import new_teacher
from apexgen.progress import PROGRESS_VARIABLE

TINY_MODEL = TeacherModelConfig(num_layers=1, num_attention_heads=2, attention_head_dim=16)


def prompts(count: int) -> TextCondition:
    tokens = torch.randn(count, 4, 384, generator=torch.Generator().manual_seed(0))
    return TextCondition(tokens, tokens.mean(1), torch.ones(count, 4, dtype=torch.bool))


def test_generation_and_inception_features_show_bars_and_closing_lines(capsys, caplog, monkeypatch):
    monkeypatch.setenv(PROGRESS_VARIABLE, "1")
    model, embeddings = new_teacher(TINY_MODEL, IMAGE_SHAPE, seed=0).eval(), prompts(2)
    with caplog.at_level(logging.INFO):
        images = generate(model, "student", 1, embeddings, torch.tensor([0, 1, 0]), embeddings.rows([0]), 1.0, 0, 2)
        inception_features(images.images[:2], batch_size=1)
    shown = capsys.readouterr().err
    assert "generating (student, NFE 1)" in shown and "Inception features" in shown
    assert "generated 3 images (student, NFE 1) in" in caplog.text
    assert "Inception features of 2 images in" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):  # one batch (a preview grid): neither a bar nor a line
        generate(model, "student", 1, embeddings, torch.tensor([0, 1]), embeddings.rows([0]), 1.0, 0, 2)
    assert "generated" not in caplog.text and "generating" not in capsys.readouterr().err


def test_bars_can_be_switched_off_for_the_whole_command(monkeypatch, capsys):
    monkeypatch.setenv(PROGRESS_VARIABLE, "1")
    model, embeddings = new_teacher(TINY_MODEL, IMAGE_SHAPE, seed=0).eval(), prompts(2)
    generate(model, "student", 1, embeddings, torch.tensor([0, 1, 0]), embeddings.rows([0]), 1.0, 0, 2)
    assert "generating (student, NFE 1)" in capsys.readouterr().err
    assert main(["--no-progress", "toy", "--dry-run"]) == 0
    assert os.environ[PROGRESS_VARIABLE] == "0"
    generate(model, "student", 1, embeddings, torch.tensor([0, 1, 0]), embeddings.rows([0]), 1.0, 0, 2)
    assert "generating" not in capsys.readouterr().err
