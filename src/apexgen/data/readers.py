"""The reader of each ``data.kind``: an image folder, parquet files or a prompt file."""

from __future__ import annotations

from pathlib import Path

from apexgen.data.config import DataConfig
from apexgen.data.image_text import ImageFolderReader, PromptReader, Reader
from apexgen.data.parquet import ParquetReader


def open_reader(config: DataConfig) -> Reader:
    """The reader of ``config.kind``, with its index checked."""
    path = Path(config.path).expanduser()
    if config.kind == "imagefolder":
        return ImageFolderReader(path, config.resolution, config.text_column)
    if config.kind == "parquet":
        return ParquetReader(path, config.resolution, config.image_column, config.text_column)
    return PromptReader(path, config.text_column)
