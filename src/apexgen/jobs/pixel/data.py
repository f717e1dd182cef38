"""What the pixel-space job trains on and is evaluated against: Fashion-MNIST (the default, and the demo's),
or any small image–text folder (``data.kind=imagefolder data.path=DIR``, ``apexgen.data.folder_splits``):
the training stream, the evaluation prompts, the FID reference (the held-out split) and, where the data has
classes, the classifier's training and test splits."""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from apexgen.batch import DataStream
from apexgen.config import require, require_non_negative
from apexgen.data.fashion_mnist import DEFAULT_DATA_DIR, IMAGE_SHAPE, LabelledImages, load_split
from apexgen.data.folder_splits import CaptionedImages, FolderLayout, FolderSplits, load_folder_splits
from apexgen.data.text_images import caption_stream, class_prompt_stream
from apexgen.eval.fid import ReferenceImages
from apexgen.jobs.pixel.prompts import EvaluationPrompts, caption_prompts, evaluation_prompts
from apexgen.text import TextEncoder

log = logging.getLogger(__name__)

DataKind = Literal["fashion_mnist", "imagefolder"]


@dataclass(frozen=True)
class PixelDataConfig:
    kind: DataKind = "fashion_mnist"
    data_dir: str = DEFAULT_DATA_DIR  # fashion_mnist: the folder of the idx .gz files
    # imagefolder: a folder with metadata.jsonl ({"file_name": ..., "text": ...} per line; the convention of
    # `apexgen train`), or with train/ and test/ subfolders that have one each (its own held-out split)
    path: str = ""
    text_column: str = "text"  # imagefolder: the caption key of metadata.jsonl
    label_column: str = "label"  # imagefolder: the class key; a folder whose records have none has no classes
    held_out: float = 0.1  # imagefolder without train/ and test/: the share of records held out (seeded)
    resolution: int = 0  # imagefolder: 0 = the images' native size; N = shorter side resized to N, centre crop
    seed: int = 0  # imagefolder: the permutation that picks the held-out share
    limit: int = 0  # use only the first `limit` training images (quick runs); 0 = all

    def check(self) -> None:
        require_non_negative(self, "limit", "resolution")
        if self.kind == "fashion_mnist":
            require(not self.path, "path", "is the folder of data.kind=imagefolder; add data.kind=imagefolder")
            require(bool(self.data_dir), "data_dir", "must name the folder with the idx .gz files")
            return
        require(bool(self.path), "path", "required: the image–text folder, e.g. data.path=/data/captioned")
        require(0 < self.held_out < 1, "held_out", f"must be between 0 and 1, got {self.held_out}")
        require(bool(self.text_column), "text_column", "must name the caption key of metadata.jsonl")


class PixelData(ABC):
    """One data source of the job."""

    name: str  # keys the cached FID statistics and classifier
    title: str  # what reports call it
    reference_title: str  # what reports call its FID reference
    shipped_classifier: bool = False  # the classifier in the package's assets was trained on it

    @property
    @abstractmethod
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, side, side) of the images."""

    @abstractmethod
    def stream(self, encoder: TextEncoder, batch_size: int, seed: int) -> DataStream:
        """The training batches."""

    @abstractmethod
    def prompts(self, encoder: TextEncoder) -> EvaluationPrompts:
        """The held-out prompts every model is evaluated on."""

    @abstractmethod
    def reference(self, count: int) -> tuple[ReferenceImages, int]:
        """The FID reference for ``count`` generated images, and how many reference images it holds."""

    @property
    @abstractmethod
    def has_classes(self) -> bool:
        """Whether every image has a class (the classifier metric needs them)."""

    @abstractmethod
    def classifier_splits(self, limit: int) -> tuple[LabelledImages, LabelledImages]:
        """(train, test) to train the prompt classifier on (the first ``limit`` training images; 0 = all)."""


class FashionMNISTData(PixelData):
    name, shipped_classifier = "fashion_mnist", True
    title, reference_title = "Fashion-MNIST", "the Fashion-MNIST test split"

    def __init__(self, config: PixelDataConfig):
        self.config = config

    image_shape = IMAGE_SHAPE

    def stream(self, encoder: TextEncoder, batch_size: int, seed: int) -> DataStream:
        train = load_split("train", self.config.data_dir, self.config.limit)
        return class_prompt_stream(train, encoder, batch_size, seed)

    def prompts(self, encoder: TextEncoder) -> EvaluationPrompts:
        return evaluation_prompts(encoder)

    def reference(self, count: int) -> tuple[ReferenceImages, int]:
        data_dir = self.config.data_dir
        return ReferenceImages("fashion_mnist_test", lambda n: load_split("test", data_dir, limit=n).images), count

    has_classes = True

    def classifier_splits(self, limit: int) -> tuple[LabelledImages, LabelledImages]:
        data_dir = self.config.data_dir
        return load_split("train", data_dir, limit), load_split("test", data_dir)


class FolderData(PixelData):
    def __init__(self, config: PixelDataConfig):
        self.layout = FolderLayout(
            Path(config.path).expanduser(),
            config.text_column,
            config.label_column,
            config.held_out,
            config.resolution,
            config.seed,
            config.limit,
        )
        self.title = f"the image–text folder {self.layout.path}"
        self.reference_title = f"the held-out split of {self.layout.path}"

    @functools.cached_property
    def splits(self) -> FolderSplits:
        splits = load_folder_splits(self.layout)
        classes = f"{len(splits.train.class_names)} classes" if splits.train.class_names else "no classes"
        log.info(
            "image–text folder %s: %d train and %d held-out images of %s, %s",
            self.layout.path,
            len(splits.train),
            len(splits.held_out),
            "×".join(map(str, splits.image_shape)),
            classes,
        )
        return splits

    @property
    def name(self) -> str:
        return f"imagefolder_{self.splits.identity}"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.splits.image_shape

    def stream(self, encoder: TextEncoder, batch_size: int, seed: int) -> DataStream:
        return caption_stream(self.splits.train, encoder, batch_size, seed)

    def prompts(self, encoder: TextEncoder) -> EvaluationPrompts:
        return caption_prompts(encoder, self.splits.held_out)

    def reference(self, count: int) -> tuple[ReferenceImages, int]:
        """The held-out images; all of them when there are fewer than ``count``."""
        held_out = self.splits.held_out.images
        return ReferenceImages(f"{self.name}_held_out", lambda n: held_out[:n]), min(count, len(held_out))

    @property
    def has_classes(self) -> bool:
        return bool(self.splits.train.class_names)

    def classifier_splits(self, limit: int) -> tuple[CaptionedImages, CaptionedImages]:
        train = self.splits.train
        if limit:
            labels = train.labels[:limit] if train.labels is not None else None
            train = CaptionedImages(train.images[:limit], train.captions[:limit], labels, train.class_names)
        return train, self.splits.held_out


def open_data(config: PixelDataConfig) -> PixelData:
    """The data source of ``config.kind`` (a folder is read on first use)."""
    return FashionMNISTData(config) if config.kind == "fashion_mnist" else FolderData(config)
