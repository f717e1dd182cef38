"""The ``bench`` command of ``apexgen``: training time and memory of every method on one random-init backbone,
or, with ``--inference``, seconds per image of the CFG teacher and the few-step student through the stock
pipeline. Its settings are given as flags, ``--config`` or ``KEY=VALUE`` (``apexgen.settings_layers``). Only
argparse and dataclasses are imported here; the bench modules are imported when the command runs."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from apexgen.backbones.registry import BACKBONES
from apexgen.config import ConfigError, require
from apexgen.jobs.real_backbones.command_settings import require_at_least_one
from apexgen.jobs.real_backbones.commands import at_least_one, check_device
from apexgen.settings_layers import add_config_arguments, print_settings, resolve

BENCH_TRAINING_STEPS, BENCH_TRAINING_BATCH = 5, 4  # apexgen bench: steps per method, batch
BENCH_TEACHER_STEPS, BENCH_REPEATS = 50, 3  # apexgen bench --inference: the teacher's steps, timed rounds
BENCH_OVERRIDE_EXAMPLE = "backbone=sd3 steps=3 methods=[flow_matching,apex]"
# The settings of one kind of bench only (the rest are shared), by field and flag: refused with the other.
TRAINING_BENCH_OPTIONS = {"lora": "--lora", "rank": "--rank", "steps": "--steps", "methods": "--methods"}
INFERENCE_BENCH_OPTIONS = {"model": "--model", "teacher_steps": "--teacher-steps", "repeats": "--repeats"}


@dataclass(frozen=True)
class BenchCommandSettings:
    """``apexgen bench``'s settings, each field the flag of the same name (``None``: the default its help
    names, which depends on the kind of bench)."""

    backbone: str = ""  # one of BACKBONES
    size: Literal["tiny", "100m", "0.7b"] | None = None
    lora: bool = False
    rank: int | None = None
    steps: int | None = None
    batch: int | None = None
    resolution: int | None = None
    methods: list[str] | None = None
    processes: Literal["fresh", "shared"] = "fresh"
    device: str = "cpu"
    seed: int = 0
    precision: Literal["fp32", "bf16"] | None = None
    out: str = "runs/bench"
    inference: bool = False
    model: str | None = None
    teacher_steps: int | None = None
    repeats: int | None = None

    def check(self) -> None:
        require(
            self.backbone in BACKBONES,
            "backbone",
            f"required: one of {', '.join(BACKBONES)} (--backbone NAME), got {self.backbone!r}",
        )
        require_at_least_one(self, "rank", "steps", "batch", "resolution", "teacher_steps", "repeats")
        if self.inference and self.model is None:
            raise ConfigError("", "--inference needs --model: the pipeline folder or hub id of the backbone's model")
        wrong = TRAINING_BENCH_OPTIONS if self.inference else INFERENCE_BENCH_OPTIONS
        given = [flag for name, flag in wrong.items() if getattr(self, name) not in (None, False)]
        if given:
            raise ConfigError("", f"{', '.join(given)}: only for {bench_kind(not self.inference)}")


def bench_kind(inference: bool) -> str:
    return "--inference" if inference else "the training bench (without --inference)"


def bench_command(args: argparse.Namespace) -> int:
    chosen = resolve(BenchCommandSettings, args, flags=True)
    check_bench_run(chosen, args.overwrite)
    if args.dry_run:
        print_settings(chosen)
        return 0
    if chosen.inference:
        return inference_bench_command(chosen)
    from apexgen.jobs.real_backbones.bench import run_bench
    from apexgen.jobs.real_backbones.bench_report import format_table
    from apexgen.jobs.real_backbones.bench_settings import BenchSettings

    settings = BenchSettings(
        chosen.backbone,
        chosen.size or "tiny",
        chosen.lora,
        chosen.rank,
        chosen.steps or BENCH_TRAINING_STEPS,
        chosen.batch or BENCH_TRAINING_BATCH,
        chosen.resolution,
        chosen.device,
        chosen.seed,
        chosen.precision,
        chosen.processes,
        tuple(chosen.methods or ()),
    )
    print(format_table(run_bench(settings, Path(chosen.out))))
    return 0


def inference_bench_command(chosen: BenchCommandSettings) -> int:
    from apexgen.jobs.real_backbones.bench_inference import InferenceSettings, format_table, run_inference_bench

    settings = InferenceSettings(
        chosen.backbone,
        chosen.model,
        chosen.size,
        chosen.resolution,
        chosen.batch or 1,
        chosen.teacher_steps or BENCH_TEACHER_STEPS,
        chosen.repeats or BENCH_REPEATS,
        chosen.device,
        chosen.precision,
        chosen.seed,
    )
    command = " ".join(["apexgen", *sys.argv[1:]])
    print(format_table(run_inference_bench(settings, Path(chosen.out), command)))
    return 0


def check_bench_run(chosen: BenchCommandSettings, overwrite: bool) -> None:
    """The device, and the report already in ``out`` (``--overwrite``: the training bench's only)."""
    if overwrite and chosen.inference:
        raise ConfigError("", f"--overwrite: only for {bench_kind(False)}")
    if chosen.device != "cpu":
        check_device(chosen.device)
    report = Path(chosen.out) / "bench.json"  # (the inference bench refuses a folder with its own report)
    if not chosen.inference and report.exists() and not overwrite:
        raise ConfigError("", f"{report} exists: pass --overwrite to replace it, or another --out")


def add_bench_command(commands) -> None:
    """Register ``bench`` on ``apexgen``'s sub-parsers."""
    bench = commands.add_parser(
        "bench",
        help="every method on one random-init backbone: time, memory, parameters; with --inference, seconds per "
        "image of the teacher (CFG) and the student through the stock pipeline",
    )
    bench.add_argument("--backbone", choices=tuple(BACKBONES), help="the backbone (required)")
    bench.add_argument(
        "--size",
        choices=("tiny", "100m", "0.7b"),
        help="random-init transformer: tiny (CPU), 100m (CPU memory figures) or about 0.7B (GPU) (default: tiny; "
        "with --inference: the folder's own transformer)",
    )
    bench.add_argument("--lora", action="store_true", help="LoRA students (and DMD2 with a full fake copy too)")
    bench.add_argument("--rank", type=int, help="LoRA rank (default: 4 tiny, 64 otherwise)")
    bench.add_argument(
        "--steps",
        type=at_least_one,
        help=f"training steps per method (default {BENCH_TRAINING_STEPS}); the first is excluded from the mean",
    )
    bench.add_argument(
        "--batch",
        type=at_least_one,
        help=f"batch (default {BENCH_TRAINING_BATCH}; with --inference: images per pipeline call, default 1)",
    )
    bench.add_argument(
        "--resolution",
        type=at_least_one,
        help="image side in pixels (default: 32 tiny, 256 100m, 512 0.7b; 1024 for a folder's own transformer)",
    )
    bench.add_argument("--methods", nargs="+", help="the rows to run, e.g. flow_matching apex dmd2 (default: all)")
    bench.add_argument(
        "--processes",
        choices=("fresh", "shared"),
        help="fresh: each method in a new process, its peak above the loaded model (default); shared: one process",
    )
    bench.add_argument("--overwrite", action="store_true", help="replace the report already in --out")
    bench.add_argument("--device", help="cpu or cuda (default: cpu)")
    bench.add_argument("--seed", type=int, help="default 0")
    bench.add_argument("--precision", choices=("fp32", "bf16"), help="default: bf16 on a GPU, fp32 on a CPU")
    bench.add_argument("--out", type=Path, help="the report's folder (default: runs/bench)")
    inference = bench.add_argument_group("inference (--inference)")
    inference.add_argument(
        "--inference",
        action="store_true",
        help="time the teacher (CFG) and the student at 1, 2, 4 steps through the stock pipeline of --model",
    )
    inference.add_argument("--model", help="the backbone's pipeline folder or hub id (its text encoders and VAE)")
    inference.add_argument(
        "--teacher-steps", type=at_least_one, help=f"the teacher's sampling steps (default {BENCH_TEACHER_STEPS})"
    )
    inference.add_argument(
        "--repeats",
        type=at_least_one,
        help=f"timed rounds over every setting, after a warm-up (default {BENCH_REPEATS})",
    )
    add_config_arguments(bench, BENCH_OVERRIDE_EXAMPLE)
    bench.set_defaults(handler=bench_command)
