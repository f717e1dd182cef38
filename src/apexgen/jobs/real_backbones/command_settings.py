"""The settings of the commands that use an export or a run folder: ``export``, ``sample`` and ``generate``.
Each field is the command's flag of the same name (``--lora DIR`` = ``lora=DIR``), so a command can be given
its settings by flags, by a ``--config`` YAML file or by ``KEY=VALUE`` overrides
(``apexgen.settings_layers``). Only dataclasses here: a wrong setting is told before torch loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from apexgen.config import ConfigError, require

Dtype = Literal["fp32", "bf16", "fp16"]
Format = Literal["geneval", "dpg"]
SAMPLE_GRID_IMAGES = 8  # apexgen sample --teacher: images in the grid without --images
GENERATE_IMAGES = 4  # images per prompt without --images/--seeds: what GenEval's and DPG-Bench's scripts make


def require_given(settings: Any, **flags: str) -> None:
    """Each field named in ``flags`` (field → what to give) set: a flag, a key of the file or an override."""
    for name, what in flags.items():
        if getattr(settings, name) in ("", None):
            raise ConfigError(name, f"required: {what}; give --{name.replace('_', '-')} or {name}=...")


def require_at_least_one(settings: Any, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        require(value is None or value >= 1, name, f"must be ≥ 1, got {value}")


@dataclass(frozen=True)
class ExportCommandSettings:
    run: str = ""  # the out folder of apexgen train
    out: str | None = None  # the export folder; None: <run>/export

    def check(self) -> None:
        require_given(self, run="the out folder of apexgen train")


@dataclass(frozen=True)
class StudentSettings:
    """The export and how the stock pipeline samples it (shared by ``sample`` and ``generate``)."""

    lora: str = ""  # an apexgen export folder
    steps: int = 1  # NFE: one the export has settings for (1, 2 or 4)
    resolution: int | None = None  # image side in pixels; None: the pipeline's
    dtype: Dtype | None = None  # None: bf16 on a GPU, else fp32
    device: str | None = None  # None: cuda when available

    def check(self) -> None:
        require_given(self, lora="an apexgen export folder")
        require_at_least_one(self, "steps", "resolution")


@dataclass(frozen=True)
class SampleCommandSettings(StudentSettings):
    model: str | None = None  # the base model of an apexgen train export: pipeline folder or hub id
    teacher: str | None = None  # the teacher of an apexgen distill export; "": the shipped one
    prompt: str = ""
    out: str = "sample.png"  # image file (--model with several images: <stem>_<i>.png; --teacher: one grid)
    images: int | None = None  # None: 1 (with --teacher: SAMPLE_GRID_IMAGES)
    seed: int = 0

    def check(self) -> None:
        if (self.model is None) == (self.teacher is None):
            raise ConfigError(
                "model",
                "give exactly one of --model (the base model of an apexgen train export) and --teacher (the "
                "teacher of an apexgen distill export)",
            )
        super().check()
        require_given(self, prompt="the text to sample")
        require_at_least_one(self, "images")
        if self.teacher is not None and (self.resolution is not None or self.dtype is not None):
            raise ConfigError(
                "",
                "--resolution and --dtype apply to --model pipelines; a pixel-space teacher samples at its own size "
                "in fp32",
            )


@dataclass(frozen=True)
class GenerateCommandSettings(StudentSettings):
    model: str = ""  # the base model of the export: pipeline folder or hub id
    prompts: str = ""  # GenEval evaluation_metadata.jsonl, or DPG-Bench prompts: a folder of <id>.txt or a .csv
    format: Format | None = None  # None: .jsonl → geneval, folder/.csv → dpg
    out: str = ""  # the images folder the scorer is given
    seeds: list[int] | None = None  # one image per seed, the same seeds for every prompt
    images: int | None = None  # images per prompt, seeds seed, seed + 1, ...; None: GENERATE_IMAGES
    seed: int | None = None  # the first seed with images; None: 0
    batch: int = GENERATE_IMAGES  # images per pipeline call (1: as apexgen sample)

    def check(self) -> None:
        require_given(
            self,
            model="the base model of the export",
            prompts="a GenEval or DPG-Bench prompt file or folder",
            out="the images folder",
        )
        super().check()
        require_at_least_one(self, "images", "batch")
        if self.seeds is not None and self.seed is not None:
            raise ConfigError(
                "", "--seed is the first seed of --images; with --seeds, list every seed and leave out --seed"
            )
        if self.seeds is not None and self.images is not None:
            raise ConfigError("", "--seeds lists every seed and --images counts them from --seed: give one of the two")

    def seed_list(self) -> list[int]:
        first = self.seed or 0
        return self.seeds or list(range(first, first + (self.images or GENERATE_IMAGES)))
