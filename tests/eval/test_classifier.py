import json
import logging

import pytest
import torch
from sklearn.datasets import load_digits

from apexgen.config import ConfigError, build
from apexgen.data.fashion_mnist import LabelledImages, load_split, split_paths
from apexgen.eval import classifier as classifier_module
from apexgen.eval.classifier import (
    REPORT_FILE,
    WEIGHTS_FILE,
    ClassifierConfig,
    PromptClassifier,
    load_classifier,
    load_or_train_classifier,
    save_classifier,
    train_classifier,
)

HAVE_DATA = split_paths("train")[0].is_file()
TINY = ClassifierConfig(channels=(8, 16), epochs=1, batch_size=32, lr=3e-3)


def digits() -> tuple[LabelledImages, LabelledImages]:
    """sklearn's 8×8 digits in [-1, 1]: 1,437 training and 360 test images."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8 - 1
    labels = torch.tensor(data.target, dtype=torch.int64)
    names = tuple(str(k) for k in range(10))
    return LabelledImages(images[:1437], labels[:1437], names), LabelledImages(images[1437:], labels[1437:], names)


def small_digits(count: int = 256) -> tuple[LabelledImages, LabelledImages]:
    train, test = digits()
    return LabelledImages(train.images[:count], train.labels[:count]), test


def test_learns_digits_in_seconds():
    train, test = digits()
    config = ClassifierConfig(channels=(16, 32), epochs=5, batch_size=64, lr=4e-3)
    classifier = train_classifier(config, train, test)
    assert classifier.report.test_accuracy > 0.85 and classifier.report.train_images == 1437
    assert classifier.accuracy(test.images, test.labels) == classifier.report.test_accuracy


def test_training_is_seeded():
    train, test = small_digits()
    first, second = (train_classifier(TINY, train, test).network.state_dict() for _ in range(2))
    assert all(torch.equal(first[name], second[name]) for name in first)
    other = train_classifier(ClassifierConfig(channels=(8, 16), epochs=1, batch_size=32, seed=1), train, test)
    assert not torch.equal(first["head.weight"], other.network.state_dict()["head.weight"])


def test_training_leaves_the_global_random_stream_alone():
    train, test = digits()
    state = torch.random.get_rng_state()
    train_classifier(TINY, LabelledImages(train.images[:64], train.labels[:64]), test)
    assert torch.equal(state, torch.random.get_rng_state())


def test_accuracy_counts_matches():
    classifier = PromptClassifier.__new__(PromptClassifier)
    classifier.predict = lambda images: torch.tensor([0, 1, 2, 3])
    assert classifier.accuracy(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 0])) == 0.5


@pytest.mark.skipif(not HAVE_DATA, reason="Fashion-MNIST is not installed")
def test_fashion_mnist_subset():
    config = ClassifierConfig(channels=(8, 16, 32), epochs=1, batch_size=64, train_limit=2000)
    classifier = train_classifier(config, load_split("train", limit=2000), load_split("test", limit=1000))
    assert classifier.report.test_accuracy > 0.6  # ~0.75 after one epoch on 2,000 images
    assert classifier.predict(load_split("test", limit=256).images).shape == (256,)


def test_cache_is_used_and_checked(tmp_path, monkeypatch, caplog):
    train, test = small_digits()
    trained = train_classifier(TINY, train, test)
    config = TINY.__class__(**{**TINY.__dict__, "cache_dir": str(tmp_path)})
    save_classifier(trained, config, tmp_path)
    report = json.loads((tmp_path / REPORT_FILE).read_text())
    assert report["test_accuracy"] == trained.report.test_accuracy and report["training"]["epochs"] == 1
    monkeypatch.setattr(classifier_module, "train_classifier", lambda *args: pytest.fail("retrained"))
    loaded = load_or_train_classifier(config, lambda limit: pytest.fail("loaded the training data"))
    assert torch.equal(loaded.predict(test.images), trained.predict(test.images))
    assert loaded.report == trained.report
    with pytest.raises(ValueError, match="other settings"):
        load_classifier(ClassifierConfig(channels=(8, 16), epochs=2, cache_dir=str(tmp_path)), tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="no usable classifier"):
        load_classifier(config, tmp_path)
    retrained = []
    monkeypatch.setattr(classifier_module, "train_classifier", lambda *args: retrained.append(1) or trained)
    with caplog.at_level(logging.WARNING, logger="apexgen.eval.classifier"):
        load_or_train_classifier(config, lambda limit: (train, test))
    assert retrained == [1] and "retraining" in caplog.text
    assert load_classifier(config, tmp_path).report == trained.report  # the rebuilt cache is usable


def test_config_check():
    with pytest.raises(ConfigError, match="channels"):
        build(ClassifierConfig, {"channels": []})
    with pytest.raises(ConfigError, match="epochs"):
        build(ClassifierConfig, {"epochs": 0})


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DATA, reason="Fashion-MNIST is not installed")
def test_full_training_reaches_ninety_percent(tmp_path):
    config = ClassifierConfig(cache_dir=str(tmp_path))
    classifier = load_or_train_classifier(config, lambda limit: (load_split("train", limit=limit), load_split("test")))
    assert classifier.report.test_accuracy >= 0.89
