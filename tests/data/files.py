"""Tiny image–text sources on disk: image folders, parquet files and prompt files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

CAPTIONS = ["a red cat", "a blue dog", "green grass", "a white cloud", "a black bird", "an orange fish"]


def image_bytes(seed: int, size: tuple[int, int] = (40, 48), fmt: str = "PNG") -> bytes:
    """A random RGB image of ``size`` (width, height), encoded."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def image_folder(folder: Path, captions: list[str] = CAPTIONS, corrupt: tuple[int, ...] = ()) -> Path:
    """``folder`` with one PNG per caption (the ``corrupt`` ones truncated) and its metadata.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, caption in enumerate(captions):
        data = image_bytes(index)
        (folder / f"{index:04d}.png").write_bytes(data[: len(data) // 3] if index in corrupt else data)
        lines.append(json.dumps({"file_name": f"{index:04d}.png", "text": caption}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def parquet_file(path: Path, captions: list[str] = CAPTIONS, struct: bool = True, columns=("image", "text")) -> Path:
    """A parquet file as Hugging Face datasets writes images ({"bytes", "path"} structs) or raw bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [image_bytes(index) for index in range(len(captions))]
    if struct:
        images = [{"bytes": data, "path": f"{index}.png"} for index, data in enumerate(images)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({columns[0]: images, columns[1]: captions}), path)
    return path
