"""The teacher and classifier that ship in the package: present, the default architecture, and trained
(the teacher's images of held-out prompts are recognised as their class by the shipped classifier)."""

import pytest
import torch

from apexgen.backbones.lora import LoRAConfig, add_lora
from apexgen.cli import main
from apexgen.eval.classifier import ClassifierConfig, load_classifier
from apexgen.export import export_lora
from apexgen.jobs.pixel.config import GUIDANCE, TeacherModelConfig
from apexgen.jobs.pixel.generate import generate, noise_for
from apexgen.jobs.pixel.models import SHIPPED_CLASSIFIER, load_student, load_teacher, shipped_asset, shipped_teacher
from apexgen.jobs.pixel.prompts import evaluation_prompts
from apexgen.jobs.pixel.sample import sample_grid
from apexgen.jobs.sample_request import SampleRequest
from apexgen.sampling import one_step_sample
from apexgen.text import MiniLMEncoder

TEACHER_STEPS = 8  # a short Euler path is enough to tell the classes apart
CHANCE = 0.1  # ten classes


@pytest.fixture(scope="module")
def teacher():
    folder = shipped_teacher()
    assert folder is not None, "the package should ship src/apexgen/assets/fashion_mnist_teacher"
    return load_teacher(folder)


def test_shipped_teacher_has_the_default_architecture(teacher):
    config = teacher.transformer.config
    for key, value in TeacherModelConfig().diffusers_config((1, 32, 32)).items():
        assert config[key] == value, key


def test_shipped_teacher_draws_the_class_of_held_out_prompts(teacher):
    prompts = evaluation_prompts(MiniLMEncoder())
    classifier = load_classifier(ClassifierConfig(), shipped_asset(SHIPPED_CLASSIFIER))
    index = torch.arange(len(prompts.texts))
    images = generate(
        teacher, "teacher", TEACHER_STEPS, prompts.embeddings, index, prompts.null, GUIDANCE, seed=0, batch_size=60
    ).images
    accuracy = classifier.accuracy(images, prompts.labels)
    assert accuracy > 6 * CHANCE, accuracy


def test_a_lora_on_the_shipped_teacher_samples_from_the_command_line_as_our_sampler_draws(tmp_path):
    """``apexgen sample --teacher --lora EXPORT --prompt ...``: the stock pipeline's images are our one-step
    sampler's (the grid's pixels are those images)."""
    student = load_teacher(shipped_teacher())
    add_lora(student, LoRAConfig(rank=4, alpha=4))
    with torch.no_grad():
        for name, parameter in student.named_parameters():
            if "lora_" in name:
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    export_lora(student, tmp_path / "export")
    command = ["sample", "--teacher", "--lora", str(tmp_path / "export"), "--prompt", "a red dress"]
    assert main([*command, "--images", "3", "--out", str(tmp_path / "grid.png")]) == 0
    drawn = sample_grid(
        shipped_teacher(), tmp_path / "export", SampleRequest("a red dress", tmp_path / "again.png", images=3)
    )
    assert (tmp_path / "grid.png").read_bytes() == (tmp_path / "again.png").read_bytes()
    student = load_student(shipped_teacher(), tmp_path / "export")
    cond = MiniLMEncoder().encode(["a red dress"] * 3)
    ours = one_step_sample(student, noise_for(torch.arange(3), 0, (1, 32, 32)), cond).clamp(-1, 1)
    assert (drawn.images - ours).abs().max() <= 1e-4
    assert (
        drawn.images
        - one_step_sample(load_teacher(shipped_teacher()), noise_for(torch.arange(3), 0, (1, 32, 32)), cond)
    ).abs().max() > 1e-3
