"""Readers of image–caption records: the :class:`Reader` every source shares, image folders in the Hugging
Face ``imagefolder`` convention and prompt files (no images, data-free training); parquet files are read by
``apexgen.data.parquet``, and ``apexgen.data.readers.open_reader`` picks the reader of ``data.kind``.

A reader checks its whole index (metadata lines, columns, captions, listed files) when it is opened, so
that bad input fails before any encoding or training with a :class:`DataError` naming the file, line
or row and the expected format. Image bytes are decoded only while iterating: an image Pillow cannot
decode is skipped and counted, and each pass logs how many were skipped (all skipped is an error).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from apexgen.config import not_utf8

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.jsonl"  # the Hugging Face imagefolder metadata file
FILE_NAME_KEY = "file_name"  # its key for the image path, relative to the folder
EXAMPLES_SHOWN = 3  # skipped images named in the log
TEXT_COLUMN_HINT = " (captions under another key: set data.text_column to it)"
COLUMN_SETTINGS = {"image": ("data.image_column", "images"), "text": ("data.text_column", "captions")}


class DataError(ValueError):
    """Input data that cannot be used; the message names the file (line or row) and the expected format."""


@dataclass(frozen=True)
class ImageText:
    index: int  # the record's position in its source, stable across runs (it seeds the record's VAE draw)
    text: str
    image: Tensor | None  # (3, resolution, resolution) in [-1, 1]; None for prompt-only records
    source: str  # where the record came from, for messages


@dataclass(frozen=True)
class Record:
    """A record before decoding: the image as a file path or encoded bytes (None: nothing stored)."""

    index: int
    text: str
    image: Path | bytes | None
    source: str


def read_text(path: Path) -> str:
    """The UTF-8 text of a caption or prompt file; a file in another encoding is named with where it breaks."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path} is not UTF-8 text ({not_utf8(path, error)}); "
            "convert it, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`, and point to the converted file"
        ) from None


def load_image(source: Path | bytes, resolution: int) -> Tensor:
    """Decode with Pillow, apply the EXIF orientation, resize the shorter side to ``resolution`` and crop
    the centre square: a (3, resolution, resolution) float tensor in [-1, 1]."""
    with Image.open(source if isinstance(source, Path) else io.BytesIO(source)) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        image = ImageOps.fit(image, (resolution, resolution), method=Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
    return pixels.float() / 127.5 - 1.0


class Reader(ABC):
    """Records of one source; iterating decodes the images and skips (and counts) unreadable ones."""

    has_images = True

    def __init__(self, path: Path, resolution: int):
        self.path, self.resolution = path, resolution
        self.skipped = 0  # unreadable images in the latest complete pass

    @abstractmethod
    def records(self) -> Iterator[Record]:
        """Every record of the source, in a fixed order."""

    @abstractmethod
    def __len__(self) -> int:
        """The number of records."""

    @abstractmethod
    def identity(self) -> dict:
        """What the records depend on (the cache key): file contents or sizes and modification times."""

    def __iter__(self) -> Iterator[ImageText]:
        skipped: list[str] = []
        for record in self.records():
            if not self.has_images:
                yield ImageText(record.index, record.text, None, record.source)
                continue
            try:
                if record.image is None:
                    raise DataError("no image stored")
                image = load_image(record.image, self.resolution)
            except Exception as error:  # Pillow raises many kinds of errors on corrupt or truncated input
                skipped.append(f"{record.source} ({type(error).__name__}: {error})")
                continue
            yield ImageText(record.index, record.text, image, record.source)
        self.report_skipped(skipped)

    def report_skipped(self, skipped: list[str]) -> None:
        self.skipped = len(skipped)
        if not skipped:
            return
        examples = "; ".join(skipped[:EXAMPLES_SHOWN])
        if len(skipped) == len(self):
            raise DataError(f"{self.path}: none of the {len(self)} images could be decoded, e.g. {examples}")
        log.warning(
            "%s: skipped %d of %d images that could not be decoded: %s", self.path, len(skipped), len(self), examples
        )


class ImageFolderReader(Reader):
    """A folder with ``metadata.jsonl``: one ``{"file_name": "a.png", "<text_column>": "a caption"}`` per line."""

    def __init__(self, path: Path, resolution: int, text_column: str = "text"):
        super().__init__(path, resolution)
        self.text_column = text_column
        self.entries = read_metadata(path, text_column)

    def __len__(self) -> int:
        return len(self.entries)

    def records(self) -> Iterator[Record]:
        for index, entry in enumerate(self.entries):
            yield Record(index, entry.text, self.path / entry.file_name, entry.source)

    def identity(self) -> dict:
        files = hashlib.sha256()
        for entry in self.entries:
            stat = (self.path / entry.file_name).stat()
            files.update(f"{entry.file_name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        metadata = hashlib.sha256((self.path / METADATA_FILE).read_bytes()).hexdigest()
        return {
            "kind": "imagefolder",
            "path": str(self.path.resolve()),
            "metadata": metadata,
            "files": files.hexdigest(),
        }


class MetadataEntry(NamedTuple):
    line: int  # in metadata.jsonl, from 1
    file_name: str
    text: str
    label: str | None  # the value under ``label_column`` (as text), None where the line has none

    @property
    def source(self) -> str:
        return f"{self.file_name} (line {self.line} of {METADATA_FILE})"


def read_metadata(folder: Path, text_column: str, label_column: str | None = None) -> list[MetadataEntry]:
    """Every line of ``folder/metadata.jsonl``, all checked; a class under ``label_column`` (a string or an
    integer) is read where a line has one."""
    expected = f'one JSON object per line like {{"{FILE_NAME_KEY}": "0001.png", "{text_column}": "a red bicycle"}}'
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    metadata = folder / METADATA_FILE
    if not metadata.is_file():
        raise DataError(f"{folder} has no {METADATA_FILE}; an image–text folder needs one with {expected}")
    entries, missing = [], []
    for number, line in enumerate(read_text(metadata).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{metadata}, line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where} is not valid JSON ({error}); expected {expected}") from None
        if not isinstance(entry, dict) or FILE_NAME_KEY not in entry or text_column not in entry:
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            hint = TEXT_COLUMN_HINT if isinstance(entry, dict) and FILE_NAME_KEY in entry else ""
            raise DataError(f"{where} has {keys}; expected {expected}{hint}")
        file_name, text = entry[FILE_NAME_KEY], entry[text_column]
        if not isinstance(file_name, str) or not isinstance(text, str):
            raise DataError(f"{where}: '{FILE_NAME_KEY}' and '{text_column}' must be strings; expected {expected}")
        if not (folder / file_name).is_file():
            missing.append(f"{file_name} (line {number})")
        entries.append(MetadataEntry(number, file_name, text, read_label(entry, label_column, where)))
    if missing:
        shown = ", ".join(missing[:EXAMPLES_SHOWN])
        raise DataError(f"{metadata} lists {len(missing)} files that do not exist in {folder}: {shown}")
    if not entries:
        raise DataError(f"{metadata} is empty; expected {expected}")
    return entries


def read_label(entry: dict, label_column: str | None, where: str) -> str | None:
    if label_column is None or label_column not in entry:
        return None
    label = entry[label_column]
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise DataError(f"{where}: the class '{label_column}' must be a string or an integer, got {label!r}")
    return str(label)


class PromptReader(Reader):
    """Prompts without images: a .txt file (one prompt per line) or a .jsonl file (``{"text": ...}`` lines)."""

    has_images = False

    def __init__(self, path: Path, text_column: str = "text"):
        super().__init__(path, resolution=0)
        self.prompts = read_prompts(path, text_column)

    def __len__(self) -> int:
        return len(self.prompts)

    def records(self) -> Iterator[Record]:
        for index, (line, text) in enumerate(self.prompts):
            yield Record(index, text, None, f"{self.path.name}, line {line}")

    def identity(self) -> dict:
        return {"kind": "prompts", "contents": hashlib.sha256(self.path.read_bytes()).hexdigest()}


def read_prompts(path: Path, text_column: str) -> list[tuple[int, str]]:
    if path.suffix not in (".txt", ".jsonl"):
        raise DataError(f"prompt file {path} must be .txt (one prompt per line) or .jsonl (one JSON object per line)")
    if not path.is_file():
        raise DataError(f"prompt file {path} does not exist")
    prompts = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix == ".txt":
            prompts.append((number, line.strip()))
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}, line {number} is not valid JSON ({error})") from None
        if not isinstance(entry, dict) or not isinstance(entry.get(text_column), str):
            raise DataError(
                f'{path}, line {number}: expected an object like {{"{text_column}": "a red bicycle"}}{TEXT_COLUMN_HINT}'
            )
        prompts.append((number, entry[text_column]))
    if not prompts:
        raise DataError(f"prompt file {path} holds no prompts")
    return prompts
