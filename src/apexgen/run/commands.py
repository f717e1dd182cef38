"""The ``train``, ``export``, ``sample`` and ``bench`` commands of ``apexgen``. Only argparse is imported
here; each command imports its module when it runs, so that ``apexgen --help`` stays instant."""

from __future__ import annotations

import argparse
import functools
import logging
import os
from pathlib import Path

log = logging.getLogger("apexgen")

# Exit codes, as in apexgen.cli: 2 = a setting is wrong, 3 = an input (model, data, run folder) is unusable.
BAD_INPUT = 3


def reports_bad_input(command):
    """Log an unusable model folder, data set or run folder as one clear line and exit with code 3."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from apexgen.data.image_text import DataError
        from apexgen.run.pipeline import PipelineError
        from apexgen.run.train import RunError
        from apexgen.train.checkpoint import CheckpointError

        try:
            return command(args)
        except (PipelineError, DataError, RunError, CheckpointError) as error:
            log.error("%s", error)
            return BAD_INPUT

    return run


def run_config(args: argparse.Namespace):
    """Defaults < --config file < KEY=VALUE overrides."""
    from apexgen.config import load, load_yaml, parse_overrides
    from apexgen.run.config import RunConfig

    layers = [load_yaml(args.config)] if args.config else []
    return load(RunConfig, *layers, parse_overrides(args.overrides))


def dry_run(config) -> None:
    """The resolved settings and the memory estimate (from the transformer's config only: no weights)."""
    import yaml

    from apexgen.config import to_dict
    from apexgen.run.estimate import estimate, every_method, format_estimate, meta_transformer

    print(yaml.safe_dump(to_dict(config), sort_keys=False))
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


@reports_bad_input
def train_command(args: argparse.Namespace) -> int:
    config = run_config(args)
    if args.dry_run:
        dry_run(config)
        return 0
    from apexgen.run.train import run_training

    result = run_training(config, resume=args.resume, overwrite=args.overwrite)
    if result.export is not None:
        log.info("done: %d steps in %.0f s of training; export in %s", result.steps, result.seconds, result.export)
    return 0


@reports_bad_input
def export_command(args: argparse.Namespace) -> int:
    from apexgen.run.export import reexport

    reexport(args.run_dir, args.out)
    return 0


@reports_bad_input
def sample_command(args: argparse.Namespace) -> int:
    import torch

    from apexgen.run.sample import run_sample

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("bf16" if device == "cuda" else "fp32")
    run_sample(
        args.model, args.lora, args.prompt, args.out, args.steps, args.images, args.seed, args.resolution, dtype, device
    )
    return 0


def bench_command(args: argparse.Namespace) -> int:
    from apexgen.run.bench import BenchSettings, format_table, run_bench

    settings = BenchSettings(
        args.backbone,
        args.size,
        args.lora,
        args.rank,
        args.steps,
        args.batch,
        args.resolution,
        args.device,
        args.seed,
        args.precision,
    )
    print(format_table(run_bench(settings, args.out)))
    return 0


def add_run_folder_arguments(parser: argparse.ArgumentParser, folder: str) -> None:
    """``--resume`` or ``--overwrite`` (not both) for a command that writes a run into ``folder``; without
    either, a folder that already holds a run is refused."""
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--resume", action="store_true", help=f"continue from the newest checkpoint in {folder}")
    choice.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace the run already in {folder} (its summary, checkpoints, export, previews and logs)",
    )


def add_run_commands(commands) -> None:
    """Register the commands on ``apexgen``'s sub-parsers."""
    train = commands.add_parser("train", help="distil a real backbone (Qwen-Image, SANA, SD3, FLUX, Z-Image)")
    train.add_argument("--config", type=Path, help="YAML recipe (configs/*.yaml), merged over the defaults")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. model.path=/models/qwen out=runs/q")
    add_run_folder_arguments(train, "out")
    train.add_argument("--dry-run", action="store_true", help="print the settings and a memory estimate, then stop")
    train.set_defaults(run=train_command)

    export = commands.add_parser("export", help="export a run's newest checkpoint for the stock diffusers pipeline")
    export.add_argument("--run", dest="run_dir", type=Path, required=True, help="the out folder of apexgen train")
    export.add_argument("--out", type=Path, help="export folder (default: <run>/export)")
    export.set_defaults(run=export_command)

    sample = commands.add_parser("sample", help="sample an exported student with the stock diffusers pipeline")
    sample.add_argument("--model", required=True, help="the base model: diffusers pipeline folder or hub id")
    sample.add_argument("--lora", "--export", dest="lora", type=Path, required=True, help="an apexgen export folder")
    sample.add_argument("--prompt", required=True)
    sample.add_argument("--steps", type=int, choices=(1, 2, 4), default=1)
    sample.add_argument("--out", type=Path, default=Path("sample.png"), help="image file (several: <stem>_<i>.png)")
    sample.add_argument("--images", type=int, default=1, help="images of the prompt, one seed each")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--resolution", type=int, help="image side in pixels (default: the pipeline's)")
    sample.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="default: bf16 on a GPU, else fp32")
    sample.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sample.set_defaults(run=sample_command)

    bench = commands.add_parser("bench", help="every method on one random-init backbone: time, memory, parameters")
    bench.add_argument("--backbone", required=True, choices=("sd3", "flux", "qwen_image", "sana", "z_image"))
    bench.add_argument("--size", choices=("tiny", "0.7b"), default="tiny", help="tiny (CPU) or about 0.7B (GPU)")
    bench.add_argument("--lora", action="store_true", help="LoRA students (and DMD2 with a full fake copy too)")
    bench.add_argument("--rank", type=int, help="LoRA rank (default: 4 tiny, 64 otherwise)")
    bench.add_argument("--steps", type=int, default=5, help="steps per method; the first is excluded from the mean")
    bench.add_argument("--batch", type=int, default=4)
    bench.add_argument("--resolution", type=int, help="image side in pixels (default: 32 tiny, 512 for 0.7b)")
    bench.add_argument("--device", default="cpu", help="cpu or cuda")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--precision", choices=("fp32", "bf16"), help="default: bf16 on a GPU, fp32 on a CPU")
    bench.add_argument("--out", type=Path, default=Path("runs/bench"))
    bench.set_defaults(run=bench_command)
