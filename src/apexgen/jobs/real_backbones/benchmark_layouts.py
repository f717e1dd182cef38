"""Where ``apexgen generate`` writes a benchmark's images, in the layout its scorer reads:

* GenEval (``evaluation/evaluate_images.py`` reads every all-digit subfolder)::

      <out>/00000/metadata.jsonl      the prompt's line of evaluation_metadata.jsonl, as one JSON object
      <out>/00000/samples/0000.png    one image per seed, in the order of the seeds
* DPG-Bench (``dpg_bench/compute_dpg_bench.py`` reads every file of the folder, finds the prompt by the name
  and crops tiles of ``--resolution`` pixels, row by row, from a 2×2 grid; ``--pic-num`` of them)::

      <out>/<item_id>.png             the images of the seeds tiled 2 per row (one seed: the image itself)

Every image carries, in a PNG text field, the settings it was generated with, so that a resumed run can
tell whether the images it keeps are the ones it would write. Files are written under a temporary name and
renamed, and a GenEval prompt's metadata.jsonl last: an interrupted run leaves no image that looks whole."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from apexgen.jobs.real_backbones.benchmark_prompts import DPG, GENEVAL, BenchmarkPrompt
from apexgen.jobs.real_backbones.preview import image_grid

SETTINGS_KEY = "apexgen"  # the PNG text field holding an image's generation settings
GENEVAL_METADATA, GENEVAL_SAMPLES = "metadata.jsonl", "samples"
SAMPLE_DIGITS = 4  # GenEval's README names the samples 0000.png, 0001.png, ...
DPG_TILES_PER_ROW = 2
DPG_MAX_IMAGES = 4  # the scorer's crops cover one 2×2 grid
PARTIAL_PREFIX = "."  # a file being written is ".<name>.partial" until it is whole


def save_png(image: Image.Image, path: Path, record: dict[str, Any]) -> None:
    """Write ``image`` with ``record`` in its text field, atomically (a temporary file, then a rename)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(SETTINGS_KEY, json.dumps(record, sort_keys=True))
    partial = path.with_name(f"{PARTIAL_PREFIX}{path.name}.partial")
    image.save(partial, format="PNG", pnginfo=info)
    os.replace(partial, path)


def recorded_settings(path: Path) -> dict[str, Any] | None:
    """The settings saved in an image's text field (None for an image written by something else)."""
    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}).get(SETTINGS_KEY)
        return json.loads(text) if text else None
    except (OSError, ValueError):  # not an image, or a text field that is not ours
        return None


class GenevalLayout:
    """One folder per prompt: ``metadata.jsonl`` and ``samples/<k>.png``."""

    format = GENEVAL

    def __init__(self, out: Path):
        self.out = out

    def images(self, prompt: BenchmarkPrompt, count: int) -> list[Path]:
        return [self.out / prompt.id / GENEVAL_SAMPLES / f"{k:0{SAMPLE_DIGITS}d}.png" for k in range(count)]

    def complete(self, prompt: BenchmarkPrompt, count: int) -> bool:
        metadata = self.out / prompt.id / GENEVAL_METADATA
        if not metadata.is_file() or not all(path.is_file() for path in self.images(prompt, count)):
            return False
        try:
            return json.loads(metadata.read_text()) == prompt.metadata
        except json.JSONDecodeError:
            return False

    def write(self, prompt: BenchmarkPrompt, pictures: list[Image.Image], record: dict[str, Any]) -> None:
        paths = self.images(prompt, len(pictures))
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        for picture, path in zip(pictures, paths, strict=True):
            save_png(picture, path, record)
        metadata = self.out / prompt.id / GENEVAL_METADATA
        partial = metadata.with_name(f"{PARTIAL_PREFIX}{metadata.name}.partial")
        partial.write_text(json.dumps(prompt.metadata) + "\n")
        os.replace(partial, metadata)

    def existing(self) -> dict[str, Path]:
        """The prompt folders already in ``out`` (what the scorer would read), by prompt id."""
        if not self.out.is_dir():
            return {}
        return {path.name: path for path in sorted(self.out.iterdir()) if path.is_dir() and path.name.isdigit()}

    def remove(self, found: Path) -> None:
        shutil.rmtree(found)


class DpgLayout:
    """One image per prompt, ``<item_id>.png``: the seeds' images tiled 2 per row."""

    format = DPG

    def __init__(self, out: Path):
        self.out = out

    def images(self, prompt: BenchmarkPrompt, count: int) -> list[Path]:
        return [self.out / f"{prompt.id}.png"]

    def complete(self, prompt: BenchmarkPrompt, count: int) -> bool:
        return self.images(prompt, count)[0].is_file()

    def write(self, prompt: BenchmarkPrompt, pictures: list[Image.Image], record: dict[str, Any]) -> None:
        rows = [pictures[k : k + DPG_TILES_PER_ROW] for k in range(0, len(pictures), DPG_TILES_PER_ROW)]
        self.out.mkdir(parents=True, exist_ok=True)
        save_png(image_grid(rows), self.images(prompt, len(pictures))[0], record)

    def existing(self) -> dict[str, Path]:
        """The images already in ``out`` (the scorer reads every file there), by prompt id."""
        if not self.out.is_dir():
            return {}
        return {path.stem: path for path in sorted(self.out.glob("*.png"))}

    def remove(self, found: Path) -> None:
        found.unlink()


Layout = GenevalLayout | DpgLayout


def layout(format: str, out: Path) -> Layout:
    return GenevalLayout(out) if format == GENEVAL else DpgLayout(out)
