"""The ``bench`` command of ``apexgen``: training time and memory of every method on one random-init backbone,
or, with ``--inference``, seconds per image of the CFG teacher and the few-step student through the stock
pipeline. Only argparse is imported here; the bench modules are imported when the command runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apexgen.run.commands import at_least_one, check_device

BENCH_TRAINING_STEPS, BENCH_TRAINING_BATCH = 5, 4  # apexgen bench: steps per method, batch
BENCH_TEACHER_STEPS, BENCH_REPEATS = 50, 3  # apexgen bench --inference: the teacher's steps, timed rounds


def bench_command(args: argparse.Namespace) -> int:
    check_bench_arguments(args)
    if args.inference:
        return inference_bench_command(args)
    from apexgen.run.bench import run_bench
    from apexgen.run.bench_report import format_table
    from apexgen.run.bench_settings import BenchSettings

    settings = BenchSettings(
        args.backbone,
        args.size or "tiny",
        args.lora,
        args.rank,
        args.steps or BENCH_TRAINING_STEPS,
        args.batch or BENCH_TRAINING_BATCH,
        args.resolution,
        args.device,
        args.seed,
        args.precision,
        args.processes,
        tuple(args.methods or ()),
    )
    print(format_table(run_bench(settings, args.out)))
    return 0


def inference_bench_command(args: argparse.Namespace) -> int:
    from apexgen.run.bench_inference import InferenceSettings, format_table, run_inference_bench

    settings = InferenceSettings(
        args.backbone,
        args.model,
        args.size,
        args.resolution,
        args.batch or 1,
        args.teacher_steps or BENCH_TEACHER_STEPS,
        args.repeats or BENCH_REPEATS,
        args.device,
        args.precision,
        args.seed,
    )
    print(format_table(run_inference_bench(settings, args.out, " ".join(["apexgen", *sys.argv[1:]]))))
    return 0


# The options of one kind of bench only (the rest are shared): refused with the other.
TRAINING_BENCH_OPTIONS = {"lora": "--lora", "rank": "--rank", "steps": "--steps", "methods": "--methods"}
TRAINING_BENCH_OPTIONS |= {"overwrite": "--overwrite"}
INFERENCE_BENCH_OPTIONS = {"model": "--model", "teacher_steps": "--teacher-steps", "repeats": "--repeats"}


def check_bench_arguments(args: argparse.Namespace) -> None:
    from apexgen.config import ConfigError

    if args.inference and args.model is None:
        raise ConfigError("", "--inference needs --model: the pipeline folder or hub id of the backbone's model")
    wrong = TRAINING_BENCH_OPTIONS if args.inference else INFERENCE_BENCH_OPTIONS
    given = [flag for name, flag in wrong.items() if getattr(args, name) not in (None, False)]
    if given:
        kind = "the training bench (without --inference)" if args.inference else "--inference"
        raise ConfigError("", f"{', '.join(given)}: only for {kind}")
    if args.device != "cpu":
        check_device(args.device)
    report = args.out / "bench.json"  # (the inference bench refuses a folder with its own report)
    if not args.inference and report.exists() and not args.overwrite:
        raise ConfigError("", f"{report} exists: pass --overwrite to replace it, or another --out")


def add_bench_command(commands) -> None:
    """Register ``bench`` on ``apexgen``'s sub-parsers."""
    bench = commands.add_parser(
        "bench",
        help="every method on one random-init backbone: time, memory, parameters; with --inference, seconds per "
        "image of the teacher (CFG) and the student through the stock pipeline",
    )
    bench.add_argument("--backbone", required=True, choices=("sd3", "flux", "qwen_image", "sana", "z_image"))
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
        default="fresh",
        help="fresh: each method in a new process, its peak above the loaded model (default); shared: one process",
    )
    bench.add_argument("--overwrite", action="store_true", help="replace the report already in --out")
    bench.add_argument("--device", default="cpu", help="cpu or cuda")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--precision", choices=("fp32", "bf16"), help="default: bf16 on a GPU, fp32 on a CPU")
    bench.add_argument("--out", type=Path, default=Path("runs/bench"))
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
    bench.set_defaults(run=bench_command)
