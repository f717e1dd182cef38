"""Prompt adherence without CLIP: a small CNN trained in-project on a labelled training split (the
Fashion-MNIST job's: its train split), scoring whether a generated image shows the class its prompt named.

Trained once (seeded, a few CPU minutes) and cached as ``classifier.safetensors`` plus
``classifier.json`` (its configuration and measured test accuracy); a cache written with another
configuration, or unreadable, is retrained.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from apexgen.config import require, require_non_negative, require_positive

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = "runs/cache/classifier"
WEIGHTS_FILE, REPORT_FILE = "classifier.safetensors", "classifier.json"


@dataclass(frozen=True)
class ClassifierConfig:
    channels: tuple[int, ...] = (16, 32, 64)  # one conv + 2× max-pool stage each
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    train_limit: int = 0  # use only the first `train_limit` training images; 0 = all 60,000
    cache_dir: str = DEFAULT_CACHE_DIR

    def check(self) -> None:
        require(len(self.channels) > 0 and all(c > 0 for c in self.channels), "channels", "positive widths")
        require_positive(self, "epochs", "batch_size", "lr")
        require_non_negative(self, "weight_decay", "train_limit")


class LabelledImages(Protocol):
    """What the classifier trains and is tested on: images (N, C, H, W) in [-1, 1], their class labels (N,)
    and the names of the classes (e.g. ``apexgen.data.fashion_mnist.LabelledImages``)."""

    images: Tensor
    labels: Tensor
    class_names: tuple[str, ...]

    def __len__(self) -> int: ...


class SmallCNN(nn.Module):
    """conv 3×3 → batch norm → ReLU → 2× max-pool per stage, then a linear map of the flattened features
    (keeping where things are: a global average pool loses ~9 points of accuracy here)."""

    def __init__(self, channels: tuple[int, ...], classes: int, in_channels: int, image_size: int):
        super().__init__()
        self.in_channels, self.image_size, self.classes = in_channels, image_size, classes
        stages, width = [], in_channels
        for out in channels:
            stages += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.features = nn.Sequential(*stages)
        side = image_size // 2 ** len(channels)
        if side < 1:
            raise ValueError(f"{len(channels)} pooling stages leave nothing of a {image_size}-pixel image")
        self.head = nn.Linear(width * side * side, classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images).flatten(1))


@dataclass(frozen=True)
class ClassifierReport:
    test_accuracy: float
    train_seconds: float
    train_images: int


class PromptClassifier:
    """A trained classifier of images (N, 1, H, W) in [-1, 1]."""

    def __init__(self, network: SmallCNN, report: ClassifierReport):
        self.network, self.report = network.eval(), report

    @torch.no_grad()
    def predict(self, images: Tensor, batch_size: int = 512) -> Tensor:
        """Predicted class (N,) per image."""
        parts = [
            self.network(images[i : i + batch_size].float()).argmax(1) for i in range(0, images.shape[0], batch_size)
        ]
        return torch.cat(parts)

    def accuracy(self, images: Tensor, labels: Tensor) -> float:
        """Fraction of ``images`` classified as their prompt's class ``labels`` (N,)."""
        return (self.predict(images) == labels.to(torch.int64)).double().mean().item()


def seeded_network(
    channels: tuple[int, ...], classes: int, in_channels: int, image_size: int, rng: torch.Generator | None
) -> SmallCNN:
    """A network built without touching the global random stream: allocated empty, then He-normal
    weights and zero biases drawn from ``rng`` (None: left for ``load_state_dict`` to fill)."""
    with torch.device("meta"):
        network = SmallCNN(channels, classes, in_channels, image_size)
    network.to_empty(device="cpu")
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and rng is not None:
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=rng)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
    return network


def train_network(config: ClassifierConfig, data: LabelledImages, classes: int) -> SmallCNN:
    """AdamW with a one-cycle learning rate (warm-up, then cosine decay) over ``config.epochs`` shuffled
    epochs; all randomness comes from ``config.seed``."""
    rng = torch.Generator().manual_seed(config.seed)
    network = seeded_network(config.channels, classes, data.images.shape[1], data.images.shape[-1], rng)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch_size = min(config.batch_size, len(data))  # a small training split still gets a step per epoch
    steps = config.epochs * (len(data) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=max(steps, 1), pct_start=0.15)
    network.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(data), generator=rng)
        for start in range(0, len(data) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(network(data.images[index]), data.labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        log.info("classifier epoch %d/%d: last batch loss %.3f", epoch + 1, config.epochs, loss.item())
    return network.eval()


def train_classifier(config: ClassifierConfig, train: LabelledImages, test: LabelledImages) -> PromptClassifier:
    start = time.perf_counter()
    network = train_network(config, train, len(train.class_names))
    seconds = time.perf_counter() - start
    classifier = PromptClassifier(network, ClassifierReport(0.0, seconds, len(train)))
    accuracy = classifier.accuracy(test.images, test.labels)
    log.info("classifier: test accuracy %.4f after %.0f s of training on %d images", accuracy, seconds, len(train))
    classifier.report = ClassifierReport(accuracy, seconds, len(train))
    return classifier


def save_classifier(classifier: PromptClassifier, config: ClassifierConfig, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in classifier.network.state_dict().items()}, directory / WEIGHTS_FILE)
    network = classifier.network
    shape = {"in_channels": network.in_channels, "image_size": network.image_size, "classes": network.classes}
    report = {"training": training_settings(config), "network": shape, **asdict(classifier.report)}
    (directory / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")


def load_classifier(config: ClassifierConfig, directory: Path) -> PromptClassifier:
    """The cached classifier; ValueError if missing, unreadable or trained with another configuration."""
    try:
        report = json.loads((directory / REPORT_FILE).read_text())
        weights = load_file(directory / WEIGHTS_FILE)
    except (OSError, json.JSONDecodeError, SafetensorError) as error:
        raise ValueError(f"no usable classifier in {directory} ({type(error).__name__}: {error})") from None
    if report.get("training") != training_settings(config):
        raise ValueError(f"{directory / REPORT_FILE} was trained with other settings: {report.get('training')}")
    try:
        shape = report["network"]
        network = seeded_network(config.channels, shape["classes"], shape["in_channels"], shape["image_size"], None)
        network.load_state_dict(weights)
        summary = ClassifierReport(*(report[name] for name in ("test_accuracy", "train_seconds", "train_images")))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{directory} does not hold a classifier of this shape ({error})") from None
    return PromptClassifier(network, summary)


def training_settings(config: ClassifierConfig) -> dict:
    """The settings that determine the weights (JSON-normalised; the cache folder is not one)."""
    settings = json.loads(json.dumps(asdict(config)))
    del settings["cache_dir"]
    return settings


def load_or_train_classifier(
    config: ClassifierConfig, splits: Callable[[int], tuple[LabelledImages, LabelledImages]]
) -> PromptClassifier:
    """The classifier cached in ``config.cache_dir``, trained (and cached) first if there is none, on the
    (train, test) pair ``splits(config.train_limit)`` returns (called only then)."""
    directory = Path(config.cache_dir)
    if (directory / REPORT_FILE).is_file() or (directory / WEIGHTS_FILE).is_file():
        try:
            return load_classifier(config, directory)
        except ValueError as error:
            log.warning("retraining the classifier: %s", error)
    classifier = train_classifier(config, *splits(config.train_limit))
    save_classifier(classifier, config, directory)
    return classifier
