"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist``: gzip idx files read and validated,
images padded from 28×28 to 32×32 with the background value and scaled to [-1, 1].

idx format (big-endian): a 4-byte magic number (2051 for images, 2049 for labels), the item count,
then for images the row and column counts; the payload is one unsigned byte per pixel or label.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = "install it with `sudo apt-get install dataset-fashion-mnist` (or `make data`)"
REINSTALL_HINT = "reinstall it with `sudo apt-get install --reinstall dataset-fashion-mnist`"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
IMAGE_HEADER_BYTES, LABEL_HEADER_BYTES = 16, 8
NATIVE_SIZE = 28
IMAGE_SIZE = 32  # padded so that patch sizes 2, 4 and 8 and two 2× downsamplings divide it
IMAGE_SHAPE = (1, IMAGE_SIZE, IMAGE_SIZE)  # (channels, height, width) of the images as loaded
BACKGROUND = 0  # the uint8 value of Fashion-MNIST's black background
SPLIT_FILES = {"train": "train", "test": "t10k"}

Split = Literal["train", "test"]


class DatasetMissingError(FileNotFoundError):
    """A dataset file is not where it should be."""


class DatasetCorruptError(ValueError):
    """A dataset file exists but cannot be read or does not hold what its format promises."""


@dataclass(frozen=True)
class LabelledImages:
    """Images (N, 1, 32, 32) in [-1, 1] with their class labels (N,) (int64) and the class names."""

    images: Tensor
    labels: Tensor
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return self.images.shape[0]


def split_paths(split: Split, data_dir: str | Path = DEFAULT_DATA_DIR) -> tuple[Path, Path]:
    """The (images, labels) files of ``split``."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; allowed: {', '.join(SPLIT_FILES)}")
    stem = Path(data_dir) / SPLIT_FILES[split]
    return Path(f"{stem}-images-idx3-ubyte.gz"), Path(f"{stem}-labels-idx1-ubyte.gz")


def read_gzip(path: Path) -> bytes:
    if not path.is_file():
        raise DatasetMissingError(f"Fashion-MNIST file {path} is missing; {INSTALL_HINT}")
    try:
        with gzip.open(path, "rb") as file:
            return file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetCorruptError(
            f"Fashion-MNIST file {path} is not a readable gzip file ({error}); {REINSTALL_HINT}"
        ) from None


def parse_idx(path: Path, data: bytes, magic: int, header_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(header integers, payload bytes) of an idx file, checking its magic number and payload size."""

    def corrupt(problem: str) -> DatasetCorruptError:
        return DatasetCorruptError(f"Fashion-MNIST file {path} is corrupt: {problem}; {REINSTALL_HINT}")

    if len(data) < header_bytes:
        raise corrupt(f"{len(data)} bytes is shorter than the {header_bytes}-byte idx header")
    header = np.frombuffer(data, dtype=">u4", count=header_bytes // 4)
    if header[0] != magic:
        raise corrupt(f"magic number {int(header[0])}, expected {magic}")
    payload = np.frombuffer(data, dtype=np.uint8, offset=header_bytes)
    expected = int(np.prod(header[1:], dtype=np.int64))
    if payload.size != expected:
        raise corrupt(f"the header promises {expected} bytes of data, the file holds {payload.size}")
    return header, payload


def read_images(path: Path) -> np.ndarray:
    """uint8 images (N, 28, 28) from a gzip idx3 file."""
    header, payload = parse_idx(path, read_gzip(path), IMAGE_MAGIC, IMAGE_HEADER_BYTES)
    count, rows, columns = (int(v) for v in header[1:])
    if (rows, columns) != (NATIVE_SIZE, NATIVE_SIZE):
        raise DatasetCorruptError(
            f"Fashion-MNIST file {path} holds {rows}×{columns} images, expected {NATIVE_SIZE}×{NATIVE_SIZE}; "
            f"is it another dataset? {REINSTALL_HINT}"
        )
    return payload.reshape(count, rows, columns)


def read_labels(path: Path) -> np.ndarray:
    """uint8 labels (N,) from a gzip idx1 file, each a class index below 10."""
    _, labels = parse_idx(path, read_gzip(path), LABEL_MAGIC, LABEL_HEADER_BYTES)
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise DatasetCorruptError(
            f"Fashion-MNIST file {path} holds label {int(labels.max())}, expected 0..{len(CLASS_NAMES) - 1}; "
            f"{REINSTALL_HINT}"
        )
    return labels


def to_model_range(images: np.ndarray) -> Tensor:
    """uint8 (N, 28, 28) → float (N, 1, 32, 32) in [-1, 1], padded with the background value."""
    pad = (IMAGE_SIZE - NATIVE_SIZE) // 2
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)), constant_values=BACKGROUND)
    return torch.from_numpy(padded.astype(np.float32)).unsqueeze(1) / 127.5 - 1.0


def load_split(split: Split, data_dir: str | Path = DEFAULT_DATA_DIR, limit: int = 0) -> LabelledImages:
    """A split of Fashion-MNIST (``limit`` > 0: only its first ``limit`` images)."""
    images_path, labels_path = split_paths(split, data_dir)
    images, labels = read_images(images_path), read_labels(labels_path)
    if images.shape[0] != labels.shape[0]:
        raise DatasetCorruptError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels; "
            f"{REINSTALL_HINT}"
        )
    if limit > 0:
        images, labels = images[:limit], labels[:limit]
    return LabelledImages(to_model_range(images), torch.from_numpy(labels.astype(np.int64)))
