"""``apexgen <command>``: the command line. Heavy imports happen inside commands so that ``--help`` is
instant."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from apexgen.config import ConfigError
from apexgen.jobs.real_backbones.bench_commands import add_bench_command
from apexgen.jobs.real_backbones.commands import (
    BAD_INPUT,
    BAD_SETTING,
    add_run_commands,
    add_run_folder_arguments,
    at_least_one,
)
from apexgen.jobs.toy.commands import toy_command
from apexgen.settings_layers import add_config_arguments, print_settings, resolve, split_overrides
from apexgen.train.interrupt import TrainingInterrupted

log = logging.getLogger("apexgen")

# Exit codes (docs/reliability.md): BAD_SETTING = 2 = a setting is wrong, BAD_INPUT = 3 = an input (model, data,
# run folder) is unusable; a run stopped by a signal exits with 128 + its number (130 for Ctrl-C, 143 for SIGTERM).
INTERRUPTED = 130
# The errors that say an input is unusable, by module and class. main() looks each class up only if its module
# was imported (an error can only come from code that imported its class), so that a command failing on its
# settings is not kept waiting for torch and diffusers to load just to tell the errors apart.
BAD_INPUT_ERRORS = (
    ("apexgen.data.fashion_mnist", "DatasetMissingError"),
    ("apexgen.data.fashion_mnist", "DatasetCorruptError"),
    ("apexgen.data.image_text", "DataError"),
    ("apexgen.jobs.pixel.models", "ModelFileError"),
    ("apexgen.train.checkpoint", "CheckpointError"),
    ("apexgen.train.run_folder", "RunFolderError"),
    ("apexgen.jobs.real_backbones.pipeline", "PipelineError"),
    ("apexgen.jobs.real_backbones.benchmark_prompts", "PromptFileError"),
    ("apexgen.jobs.real_backbones.train", "RunError"),
)
# A valid example of KEY=VALUE overrides for each command's --help (tests/test_cli.py loads each).
OVERRIDE_EXAMPLES = {
    "toy": "student.steps=2000 methods.apex.condition_shift.a=-1",
    "train-teacher": "teacher.steps=2000 data.limit=10000",
    "distill": "distill.train.steps=2000 methods.apex.condition_shift.a=-1",
    "eval": "eval.fid.samples=1000 eval.student_nfe=[1,2]",
    "demo": "distill.train.steps=100 eval.fid.samples=200",
}


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def t2i_config(args: argparse.Namespace, *presets: dict):
    """The text-to-image settings: defaults < presets < --config file < KEY=VALUE overrides."""
    from apexgen.jobs.pixel.config import T2IConfig

    return resolve(T2IConfig, args, *presets)


def train_teacher_command(args: argparse.Namespace) -> int:
    config = t2i_config(args)  # before the heavy imports: a wrong setting is told at once
    if args.dry_run:
        print_settings(config)
        return 0
    from apexgen.jobs.pixel.train import train_teacher

    train_teacher(config, args.out, resume=args.resume, overwrite=args.overwrite)
    return 0


def distill_command(args: argparse.Namespace) -> int:
    config = t2i_config(args, {"distill": {"method": args.method}} if args.method else {})
    if args.dry_run:
        print_settings(config)
        return 0
    from apexgen.jobs.pixel.train import distill

    distill(config, resolve_teacher(args.teacher), args.out, resume=args.resume, overwrite=args.overwrite)
    return 0


def eval_command(args: argparse.Namespace) -> int:
    args.students, overrides = split_overrides(args.students)  # argparse gives --students every word
    args.overrides = [*args.overrides, *overrides]
    config = t2i_config(args)
    if args.dry_run:
        print_settings(config)
        return 0
    from apexgen.jobs.pixel.evaluate import evaluate, student_candidate, teacher_candidate
    from apexgen.jobs.pixel.report import table, write_report
    from apexgen.jobs.pixel.run_folders import HISTORY, student_labels

    started = time.perf_counter()
    labels = student_labels(args.students)
    teacher = resolve_teacher(args.teacher)
    students = [student_candidate(teacher, run, config) for run in args.students]
    for student, label in zip(students, labels, strict=True):
        student.method = label  # the name of its rows, kept rows, grid and curves
    report = evaluate([teacher_candidate(teacher, config), *students], config, args.out)
    histories = {
        label: json.loads((run / HISTORY).read_text()) for run, label in zip(args.students, labels, strict=True)
    }
    path = write_report(report, histories, args.out, " ".join(["apexgen", *sys.argv[1:]]))
    print(table(report["rows"]))
    log.info("done in %.0f s: %s (rows kept in %s)", time.perf_counter() - started, path, args.out / "rows")
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from apexgen.jobs.pixel.config import DEMO

    config = t2i_config(args, DEMO)  # before the heavy imports: a bad setting fails in a second
    if args.dry_run:
        print_settings(config)
        return 0
    from apexgen.jobs.pixel.demo import run_demo
    from apexgen.jobs.pixel.models import shipped_teacher

    run_demo(config, args.teacher or shipped_teacher(), args.out, " ".join(["apexgen", *sys.argv[1:]]))
    return 0


def resolve_teacher(path: Path | None) -> Path:
    """``--teacher`` or, without it, the teacher that ships in the package."""
    from apexgen.jobs.pixel.models import teacher_folder

    return teacher_folder(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apexgen", description="One-step generators from flow-matching models with APEX."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--threads", type=at_least_one, help="CPU threads for PyTorch (on a busy machine, 1 avoids thrashing)"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (the closing line of each long step stays)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    toy = commands.add_parser("toy", help="the 2-D toy benchmark: every method against an exact answer")
    toy.add_argument("--quick", action="store_true", help="one seed, short training (about a minute)")
    toy.add_argument("--out", type=Path, default=Path("runs/toy"), help="output folder (default: runs/toy)")
    add_config_arguments(toy, OVERRIDE_EXAMPLES["toy"])
    toy.set_defaults(handler=toy_command)

    teacher = commands.add_parser(
        "train-teacher", help="train the pixel-space teacher (SD3 MMDiT) on Fashion-MNIST or an image–text folder"
    )
    teacher.add_argument("--out", type=Path, default=Path("runs/teacher"), help="output folder")
    add_run_folder_arguments(teacher, "--out")
    add_config_arguments(teacher, OVERRIDE_EXAMPLES["train-teacher"])
    teacher.set_defaults(handler=train_teacher_command)

    distill = commands.add_parser("distill", help="distil a one-step student from the teacher (LoRA by default)")
    distill.add_argument("--teacher", type=Path, help="teacher folder (default: the teacher shipped in the package)")
    distill.add_argument("--method", help="apex (default), twinflow, dmd2, consistency or regression")
    distill.add_argument("--out", type=Path, default=Path("runs/distill"), help="output folder")
    add_run_folder_arguments(distill, "--out")
    add_config_arguments(distill, OVERRIDE_EXAMPLES["distill"])
    distill.set_defaults(handler=distill_command)

    evaluate = commands.add_parser("eval", help="FID, prompt adherence, diversity and speed of teacher and students")
    evaluate.add_argument("--teacher", type=Path, help="teacher folder (default: the teacher shipped in the package)")
    evaluate.add_argument("--students", type=Path, nargs="*", default=[], help="folders written by apexgen distill")
    evaluate.add_argument("--out", type=Path, default=Path("runs/eval"), help="output folder")
    add_config_arguments(evaluate, OVERRIDE_EXAMPLES["eval"])
    evaluate.set_defaults(handler=eval_command)

    demo = commands.add_parser("demo", help="the main job: teacher → APEX one-step LoRA → evaluation → report")
    demo.add_argument("--teacher", type=Path, help="teacher folder (default: the shipped one, else train one)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    add_config_arguments(demo, OVERRIDE_EXAMPLES["demo"])
    demo.set_defaults(handler=demo_command)

    add_run_commands(commands)
    add_bench_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from apexgen.known_warnings import silence_known_warnings

    silence_known_warnings()
    if args.no_progress:
        from apexgen.progress import PROGRESS_VARIABLE

        os.environ[PROGRESS_VARIABLE] = "0"
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.handler(args)
    except ConfigError as error:
        log.error("%s", error)
        return BAD_SETTING
    except TrainingInterrupted as stopped:
        log.warning("%s", stopped)
        return stopped.exit_code
    except KeyboardInterrupt:
        log.error("interrupted by Ctrl-C")
        return INTERRUPTED
    except FloatingPointError as error:  # a loss that became NaN (apexgen.train.finite.NonFiniteLoss)
        log.error("%s", error)
        return BAD_INPUT if getattr(error, "at_first_step", False) else BAD_SETTING
    except Exception as error:
        if not unusable_input(error):
            raise
        log.error("%s", error)
        return BAD_INPUT


def unusable_input(error: Exception) -> bool:
    """Whether ``error`` is one of BAD_INPUT_ERRORS (a class whose module is not imported cannot have raised it)."""
    for module, name in BAD_INPUT_ERRORS:
        kind = getattr(sys.modules.get(module), name, None)
        if kind is not None and isinstance(error, kind):
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
