"""A small image–caption folder held in memory at its native size, split into train and held-out records,
for the pixel-space job.

The folder follows the Hugging Face ``imagefolder`` convention that ``apexgen train`` reads (``metadata.jsonl``
with ``file_name`` and ``text`` per line). Its held-out split is either the folder's own: ``train/`` and
``test/`` subfolders with a ``metadata.jsonl`` each (Hugging Face's split layout), or a seeded share of the
records of one folder. Images keep their channels (every image grey: one channel, else RGB) and their size
(all must share one square size, unless a resolution is given: then the shorter side is resized to it and
the centre square cropped). A class column (``label``), when every record has one, gives the records the
classes a classifier metric needs; the folder may also have none.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from apexgen.data.image_text import METADATA_FILE, DataError, MetadataEntry, read_metadata

SPLIT_FOLDERS = ("train", "test")  # Hugging Face's split subfolders: training and held-out records
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # Pillow modes of one colour channel (alpha dropped)


@dataclass(frozen=True)
class FolderLayout:
    """Where a folder's records are and how they split."""

    path: Path
    text_column: str = "text"
    label_column: str = "label"
    held_out: float = 0.1  # share of one folder's records held out (a folder with train/ and test/ has its own)
    resolution: int = 0  # 0: the images' native size
    seed: int = 0  # the permutation that chooses the held-out share
    limit: int = 0  # only the first ``limit`` training records; 0 = all


@dataclass(frozen=True)
class CaptionedImages:
    """Images (N, C, S, S) in [-1, 1], the caption of each, and its class (N,) when the folder has classes."""

    images: Tensor
    captions: tuple[str, ...]
    labels: Tensor | None
    class_names: tuple[str, ...]  # () without classes

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass(frozen=True)
class FolderSplits:
    train: CaptionedImages
    held_out: CaptionedImages
    identity: str  # a short hash of the records, images and settings (keys cached statistics and classifiers)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


@dataclass(frozen=True)
class Located:
    """A record's entry and the folder its file name is relative to."""

    folder: Path
    entry: MetadataEntry

    @property
    def file(self) -> Path:
        return self.folder / self.entry.file_name

    @property
    def source(self) -> str:
        return f"{self.folder}/{self.entry.source}"


def split_records(layout: FolderLayout) -> tuple[list[Located], list[Located]]:
    """(train, held-out) records: the folder's train/ and test/ subfolders, else a seeded share of its own."""
    folders = [layout.path / name for name in SPLIT_FOLDERS]
    if all((folder / METADATA_FILE).is_file() for folder in folders):
        train, held_out = ([Located(f, e) for e in read_metadata(f, *columns(layout))] for f in folders)
        return train, held_out
    if not (layout.path / METADATA_FILE).is_file():
        raise DataError(
            f"{layout.path} holds neither {METADATA_FILE} nor train/{METADATA_FILE} and test/{METADATA_FILE}; an "
            'image–text folder lists its images in one, a line per image like {"file_name": "0001.png", "text": '
            '"a red bicycle"}'
        )
    records = [Located(layout.path, e) for e in read_metadata(layout.path, *columns(layout))]
    count = round(layout.held_out * len(records))
    if not 1 <= count < len(records):
        raise DataError(
            f"data.held_out={layout.held_out} of the {len(records)} records of {layout.path} holds out {count}: "
            "at least one must be held out and one kept; set data.held_out between 0 and 1 to split it, or give "
            "the folder train/ and test/ subfolders"
        )
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(layout.seed)).tolist()
    return [records[i] for i in sorted(order[count:])], [records[i] for i in sorted(order[:count])]


def columns(layout: FolderLayout) -> tuple[str, str]:
    return layout.text_column, layout.label_column


def image_format(records: list[Located], resolution: int) -> tuple[int, int]:
    """(channels, side) of the images: one channel when every image is grey; the native side (square and the
    same for all) unless ``resolution`` is given. Only the files' headers are read."""
    grey, sizes = True, {}
    for record in records:
        try:
            with Image.open(record.file) as image:
                grey = grey and image.mode in GREY_MODES
                sizes.setdefault(image.size, record.entry.file_name)
        except Exception as error:  # Pillow raises many kinds of errors on corrupt input
            raise DataError(f"{record.source} cannot be read as an image ({type(error).__name__}: {error})") from None
    channels = 1 if grey else 3
    width, height = next(iter(sizes))
    if resolution or (len(sizes) == 1 and width == height):
        return channels, resolution or width
    found = " and ".join(f"{w}×{h} ({name})" for (w, h), name in list(sizes.items())[:2])
    raise DataError(
        f"the images of {records[0].folder} must share one square size to be used at their native size; found "
        f"{found}: set data.resolution=N to resize the shorter side to N and crop the centre square"
    )


def decode(record: Located, channels: int, resolution: int) -> Tensor:
    """(channels, S, S) in [-1, 1]: EXIF orientation applied, resized (shorter side) and centre-cropped to
    ``resolution`` when given."""
    try:
        with Image.open(record.file) as image:
            image = ImageOps.exif_transpose(image).convert("L" if channels == 1 else "RGB")
            if resolution:
                image = ImageOps.fit(image, (resolution, resolution), method=Image.Resampling.BICUBIC)
            pixels = np.asarray(image, dtype=np.uint8).copy()
    except Exception as error:
        raise DataError(
            f"{record.source} cannot be decoded ({type(error).__name__}: {error}); replace the file or remove its "
            f"line from {METADATA_FILE}"
        ) from None
    tensor = torch.from_numpy(pixels)
    tensor = tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)
    return tensor.float() / 127.5 - 1.0


def class_names(train: list[Located], held_out: list[Located]) -> tuple[str, ...]:
    """The classes of the training records, sorted; () when no record has one. A folder where some records
    have a class and others none, or a held-out class never trained on, is refused."""
    everyone = train + held_out
    labelled = [r for r in everyone if r.entry.label is not None]
    if not labelled:
        return ()
    if len(labelled) < len(everyone):
        missing = next(r for r in everyone if r.entry.label is None)
        raise DataError(
            f"{len(labelled)} of {len(everyone)} records have a class and {missing.source} has none: give every "
            "record one, or none (then no classifier metric is scored)"
        )
    names = tuple(sorted({r.entry.label for r in train}))
    unseen = next((r for r in held_out if r.entry.label not in names), None)
    if unseen is not None:
        raise DataError(f"{unseen.source} is of class {unseen.entry.label!r}, which no training record has")
    return names


def captioned_images(records: list[Located], channels: int, side: int, resolution: int, names: tuple[str, ...]):
    images = torch.stack([decode(r, channels, resolution) for r in records])
    if images.shape[-2:] != (side, side):
        raise DataError(f"{records[0].folder}: decoded images of {tuple(images.shape[-2:])}, expected {side}×{side}")
    labels = torch.tensor([names.index(r.entry.label) for r in records]) if names else None
    return CaptionedImages(images, tuple(r.entry.text for r in records), labels, names)


def identity(records: list[Located], layout: FolderLayout) -> str:
    digest = hashlib.sha256(repr((layout.resolution, layout.held_out, layout.seed, layout.limit)).encode())
    for record in records:
        stat = record.file.stat()
        digest.update(f"{record.file.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{record.entry}\n".encode())
    return digest.hexdigest()[:16]


def load_folder_splits(layout: FolderLayout) -> FolderSplits:
    """The folder's train and held-out records, decoded into memory and checked (every problem a DataError
    that names the file and the fix)."""
    train, held_out = split_records(layout)
    if layout.limit:
        train = train[: layout.limit]
    channels, side = image_format(train + held_out, layout.resolution)
    names = class_names(train, held_out)
    return FolderSplits(
        captioned_images(train, channels, side, layout.resolution, names),
        captioned_images(held_out, channels, side, layout.resolution, names),
        identity(train + held_out, layout),
    )
