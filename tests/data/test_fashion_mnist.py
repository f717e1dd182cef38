import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from apexgen.data.fashion_mnist import (
    CLASS_NAMES,
    DEFAULT_DATA_DIR,
    DatasetCorruptError,
    DatasetMissingError,
    load_split,
    split_paths,
)

INSTALL_COMMAND = "sudo apt-get install dataset-fashion-mnist"
HAVE_DATA = split_paths("test")[0].is_file()


def idx_bytes(magic: int, dims: tuple[int, ...], payload: np.ndarray) -> bytes:
    header = np.array([magic, *dims], dtype=">u4").tobytes()
    return header + payload.astype(np.uint8).tobytes()


def write_split(directory: Path, images: np.ndarray, labels: np.ndarray, split: str = "train") -> None:
    images_path, labels_path = split_paths(split, directory)
    images_path.write_bytes(gzip.compress(idx_bytes(2051, images.shape, images)))
    labels_path.write_bytes(gzip.compress(idx_bytes(2049, labels.shape, labels)))


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 3, 9, 7, 3], dtype=np.uint8)
    write_split(tmp_path, images, labels)
    return tmp_path, images, labels


def test_loads_pads_and_scales(tiny):
    directory, images, labels = tiny
    data = load_split("train", directory)
    assert data.images.shape == (5, 1, 32, 32) and data.images.dtype == torch.float32
    assert data.labels.tolist() == labels.tolist() and data.labels.dtype == torch.int64
    expected = torch.from_numpy(images.astype(np.float32)) / 127.5 - 1
    torch.testing.assert_close(data.images[:, 0, 2:30, 2:30], expected, rtol=0, atol=1e-6)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (data.images[:, 0][:, border] == -1.0).all()  # background 0 → -1
    assert data.class_names == CLASS_NAMES and len(CLASS_NAMES) == 10


def test_limit(tiny):
    directory, _, labels = tiny
    data = load_split("train", directory, limit=2)
    assert len(data) == 2 and data.labels.tolist() == labels[:2].tolist()


def test_missing_file_names_it_and_the_install_command(tmp_path):
    with pytest.raises(DatasetMissingError) as info:
        load_split("test", tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value) and INSTALL_COMMAND in str(info.value)


@pytest.mark.parametrize(
    "problem",
    ["not_gzip", "truncated_gzip", "wrong_magic", "short_payload", "wrong_size", "bad_label", "count_mismatch"],
)
def test_corrupt_files_are_reported(tiny, problem):
    directory, images, labels = tiny
    images_path, labels_path = split_paths("train", directory)
    if problem == "not_gzip":
        images_path.write_bytes(b"this is not gzip")
    elif problem == "truncated_gzip":
        images_path.write_bytes(images_path.read_bytes()[:-40])
    elif problem == "wrong_magic":
        images_path.write_bytes(gzip.compress(idx_bytes(2049, images.shape, images)))
    elif problem == "short_payload":
        images_path.write_bytes(gzip.compress(idx_bytes(2051, images.shape, images)[:-10]))
    elif problem == "wrong_size":
        write_split(directory, np.zeros((5, 32, 32), np.uint8), labels)
    elif problem == "bad_label":
        write_split(directory, images, np.array([0, 1, 2, 3, 10], np.uint8))
    elif problem == "count_mismatch":
        write_split(directory, images, labels[:4])
    with pytest.raises(DatasetCorruptError) as info:
        load_split("train", directory)
    assert isinstance(info.value, ValueError)
    assert str(directory) in str(info.value) and "dataset-fashion-mnist" in str(info.value)


def test_unknown_split():
    with pytest.raises(ValueError, match="unknown Fashion-MNIST split"):
        split_paths("validation")


@pytest.mark.skipif(not HAVE_DATA, reason=f"Fashion-MNIST is not installed ({INSTALL_COMMAND})")
def test_real_test_split():
    data = load_split("test", DEFAULT_DATA_DIR)
    assert data.images.shape == (10000, 1, 32, 32)
    assert data.labels.bincount().tolist() == [1000] * 10
    assert data.images.min() == -1 and data.images.max() == 1
    assert (data.images[:, :, :2] == -1).all() and (data.images[:, :, :, -2:] == -1).all()
