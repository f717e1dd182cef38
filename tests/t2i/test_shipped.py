"""The teacher and classifier that ship in the package: present, the default architecture, and trained
(the teacher's images of held-out prompts are recognised as their class by the shipped classifier)."""

import pytest
import torch

from apexgen.eval.classifier import ClassifierConfig, load_classifier
from apexgen.t2i.config import GUIDANCE, TeacherModelConfig
from apexgen.t2i.generate import generate
from apexgen.t2i.models import SHIPPED_CLASSIFIER, load_teacher, shipped_asset, shipped_teacher
from apexgen.t2i.prompts import evaluation_prompts
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
    for key, value in TeacherModelConfig().diffusers_config().items():
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
