"""The ``train``, ``export`` and ``sample`` commands of ``apexgen`` (``generate``: ``generate_command``;
``bench``: ``bench_commands``). Every command takes its settings as flags, ``--config`` and ``KEY=VALUE``
(``apexgen.settings_layers``; ``export`` and ``sample``: ``command_settings``) and ``--dry-run``. Only
argparse is imported here; each command imports its module when it runs, so that ``apexgen --help`` stays
instant."""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from apexgen.jobs.real_backbones.command_settings import SAMPLE_GRID_IMAGES
from apexgen.settings_layers import add_config_arguments, looks_like_override, print_settings, resolve

log = logging.getLogger("apexgen")

# Exit codes (apexgen.cli.main maps errors to them): 2 = a setting is wrong, 3 = an input (model, data, run
# folder) is unusable.
BAD_SETTING, BAD_INPUT = 2, 3
# A valid example of each command's KEY=VALUE overrides (train's over a recipe; tests/test_cli.py loads each).
TRAIN_OVERRIDE_EXAMPLE = (
    "model.path=/models/sd35 data.path=/data/images out=runs/sd35 methods.apex.condition_shift.a=-1"
)
EXPORT_OVERRIDE_EXAMPLE = "run=runs/sd35 out=exports/sd35"
SAMPLE_OVERRIDE_EXAMPLE = "steps=2 images=4 seed=7"


def at_least_one(text: str) -> int:
    """An argparse type: a whole number ≥ 1 (a wrong one is refused with exit code 2, as a setting)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def run_config(args: argparse.Namespace):
    """Defaults < --config file < KEY=VALUE overrides."""
    from apexgen.jobs.real_backbones.config import RunConfig

    return resolve(RunConfig, args)


def dry_run(config) -> None:
    """The resolved settings and the memory estimate (from the transformer's config only: no weights)."""
    import yaml

    from apexgen.config import to_dict
    from apexgen.jobs.real_backbones.estimate import estimate, every_method, format_estimate, meta_transformer
    from apexgen.objectives import endpoint_pool_size

    print(yaml.safe_dump(to_dict(config), sort_keys=False))
    pool = endpoint_pool_size(config.method, config.methods)
    if pool is not None:
        print(f"{pool.describe()}\n")
    try:
        transformer = meta_transformer(config.model.backbone, config.model.path)
    except Exception as error:  # a hub id offline, a folder without transformer/config.json, ...
        print(
            f"memory estimate unavailable: the transformer config of {config.model.path!r} could not be read "
            f"({type(error).__name__}: {str(error)[:200]}); set model.path to a local pipeline folder or a "
            "reachable hub id"
        )
        return
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    chosen = estimate(config, transformer, processes)
    print(format_estimate(chosen, every_method(config, transformer, processes), processes))


def train_command(args: argparse.Namespace) -> int:
    config = run_config(args)
    if args.dry_run:
        dry_run(config)
        return 0
    started = time.perf_counter()
    from apexgen.jobs.real_backbones.train import run_training
    from apexgen.train.run_folder import SUMMARY_FILE

    result = run_training(config, resume=args.resume, overwrite=args.overwrite)
    if result.export is not None:
        log.info(
            "done in %.0f s: %d steps (%.0f s of training); export in %s, summary %s",
            time.perf_counter() - started,
            result.steps,
            result.seconds,
            result.export,
            result.out / SUMMARY_FILE,
        )
    return 0


def export_command(args: argparse.Namespace) -> int:
    from apexgen.jobs.real_backbones.command_settings import ExportCommandSettings

    settings = resolve(ExportCommandSettings, args, flags=True)
    if args.dry_run:
        print_settings(settings)
        return 0
    from apexgen.jobs.real_backbones.export import reexport

    reexport(Path(settings.run), Path(settings.out) if settings.out else None)
    return 0


def sample_command(args: argparse.Namespace) -> int:
    from apexgen.jobs.real_backbones.command_settings import SampleCommandSettings

    if args.teacher and looks_like_override(args.teacher):  # --teacher KEY=VALUE: the shipped teacher
        args.overrides, args.teacher = [args.teacher, *args.overrides], ""
    settings = resolve(SampleCommandSettings, args, flags=True)
    check_sample_settings(settings)
    if args.dry_run:
        print_settings(settings)
        return 0
    from apexgen.jobs.sample_request import SampleRequest

    device = settings.device or default_device()
    export = Path(settings.lora)
    default_images = 1 if settings.teacher is None else SAMPLE_GRID_IMAGES
    request = SampleRequest(
        settings.prompt, Path(settings.out), settings.steps, settings.images or default_images, settings.seed, device
    )
    if settings.teacher is not None:
        from apexgen.jobs.pixel.models import teacher_folder
        from apexgen.jobs.pixel.sample import sample_grid

        sample_grid(teacher_folder(Path(settings.teacher) if settings.teacher else None), export, request)
        return 0
    from apexgen.jobs.real_backbones.sample import run_sample

    run_sample(settings.model, export, request, settings.resolution, pipeline_dtype(settings.dtype, device))
    return 0


def pipeline_dtype(dtype: str | None, device: str) -> str:
    """--dtype, or by default bf16 on a GPU and fp32 on a CPU."""
    return dtype or ("bf16" if device.startswith("cuda") else "fp32")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_sample_settings(settings) -> None:
    """What ``apexgen sample`` can refuse before loading a model beyond its settings' own checks: the image
    file name and the device."""
    from PIL import Image

    from apexgen.config import ConfigError

    Image.init()
    writable = sorted(ext for ext, kind in Image.registered_extensions().items() if kind in Image.SAVE)
    out = Path(settings.out)
    if out.suffix.lower() not in writable:
        raise ConfigError(
            "",
            f"--out {out}: not an image file name (no image extension); give one such as "
            f"{out.with_suffix('.png')} (.png, .jpg, .webp, ...)",
        )
    if settings.device is not None:
        check_device(settings.device)


def check_device(name: str) -> None:
    import torch

    from apexgen.config import ConfigError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError("", f"--device {name}: not a device; use cpu or cuda (cuda:1 for the second GPU)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "",
            f"--device {name}: no CUDA device is available here; use --device cpu, or leave --device out "
            "(a GPU is used when there is one)",
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError("", f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s) here")


def add_run_folder_arguments(
    parser: argparse.ArgumentParser, folder: str, resume: str | None = None, overwrite: str | None = None
) -> None:
    """``--resume`` or ``--overwrite`` (not both) for a command that writes a run into ``folder``; without
    either, a folder that already holds a run is refused. ``resume`` and ``overwrite`` replace the help of a
    run's training."""
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--resume", action="store_true", help=resume or f"continue from the newest checkpoint in {folder}"
    )
    choice.add_argument(
        "--overwrite",
        action="store_true",
        help=overwrite or f"replace the run already in {folder} (its summary, checkpoints, export, previews and logs)",
    )


def add_student_arguments(parser: argparse.ArgumentParser) -> None:
    """The export and how the stock pipeline samples it (``sample`` and ``generate``; their
    settings' ``StudentSettings``)."""
    parser.add_argument("--lora", "--export", dest="lora", type=Path, help="an apexgen export folder (required)")
    parser.add_argument(
        "--steps", type=at_least_one, help="steps (NFE): one the export has settings for (1, 2 or 4; default 1)"
    )
    parser.add_argument("--resolution", type=at_least_one, help="image side in pixels (default: the pipeline's)")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="default: bf16 on a GPU, else fp32")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def add_run_commands(commands) -> None:
    """Register the commands on ``apexgen``'s sub-parsers."""
    train = commands.add_parser("train", help="distil a real backbone (Qwen-Image, SANA, SD3, FLUX, Z-Image)")
    train.add_argument("--config", type=Path, help="YAML recipe (configs/*.yaml), merged over the defaults")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=f"e.g. {TRAIN_OVERRIDE_EXAMPLE}")
    add_run_folder_arguments(train, "out")
    train.add_argument("--dry-run", action="store_true", help="print the settings and a memory estimate, then stop")
    train.set_defaults(handler=train_command)

    export = commands.add_parser("export", help="export a run's newest checkpoint for the stock diffusers pipeline")
    export.add_argument("--run", type=Path, help="the out folder of apexgen train (required)")
    export.add_argument("--out", type=Path, help="export folder (default: <run>/export)")
    add_config_arguments(export, EXPORT_OVERRIDE_EXAMPLE)
    export.set_defaults(handler=export_command)

    sample = commands.add_parser("sample", help="sample an exported student with the stock diffusers pipeline")
    base = sample.add_mutually_exclusive_group()
    base.add_argument("--model", help="the base model of an `apexgen train` export: pipeline folder or hub id")
    base.add_argument(
        "--teacher",
        nargs="?",
        const="",
        help="the teacher of an `apexgen distill` export (a train-teacher folder; with no folder: the shipped one); "
        "writes one PNG grid",
    )
    add_student_arguments(sample)
    sample.add_argument("--prompt", help="the text to sample (required)")
    sample.add_argument(
        "--out",
        type=Path,
        help="image file (default: sample.png; --model with several images: <stem>_<i>.png; --teacher: one grid)",
    )
    sample.add_argument(
        "--images",
        type=at_least_one,
        help=f"images of the prompt, one seed each (default: 1; {SAMPLE_GRID_IMAGES} with --teacher)",
    )
    sample.add_argument("--seed", type=int, help="the first image's seed (default 0)")
    add_config_arguments(sample, SAMPLE_OVERRIDE_EXAMPLE)
    sample.set_defaults(handler=sample_command)

    from apexgen.jobs.real_backbones.generate_command import (
        add_generate_command,
    )  # it builds on this module's arguments

    add_generate_command(commands)
