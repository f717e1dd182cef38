"""``apexgen generate``: its arguments (those of the student shared with ``apexgen sample``) and the command.
Only argparse is imported here; the command imports ``run.generate`` when it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from apexgen.run.commands import (
    add_run_folder_arguments,
    add_student_arguments,
    at_least_one,
    check_device,
    default_device,
    pipeline_dtype,
)

GENERATE_IMAGES = 4  # images per prompt without --images/--seeds: what GenEval's and DPG-Bench's scripts make


def generate_command(args: argparse.Namespace) -> int:
    from apexgen.config import ConfigError

    if args.seeds is not None and args.seed is not None:
        raise ConfigError(
            "", "--seed is the first seed of --images; with --seeds, list every seed and leave out --seed"
        )
    if args.device is not None:
        check_device(args.device)
    device = args.device or default_device()
    from apexgen.run.generate import GenerateSettings, run_generate

    first = args.seed or 0
    settings = GenerateSettings(
        model=resolved(args.model),
        export=str(args.lora.resolve()),
        steps=args.steps,
        seeds=args.seeds or list(range(first, first + (args.images or GENERATE_IMAGES))),
        resolution=args.resolution,
        dtype=pipeline_dtype(args.dtype, device),
        batch=args.batch,
    )
    run_generate(args.prompts, args.out, settings, args.format, device, args.resume, args.overwrite)
    return 0


def resolved(model: str) -> str:
    """A local model folder as an absolute path (a hub id as it is)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def add_generate_command(commands) -> None:
    generate = commands.add_parser(
        "generate",
        help="images of a GenEval or DPG-Bench prompt set, in the folder layout its scorer reads",
        description="An exported student, sampled with the stock diffusers pipeline, writes one image per seed "
        "for each prompt: GenEval: <out>/<index>/metadata.jsonl and samples/<k>.png; DPG-Bench: <out>/<id>.png, "
        "the seeds' images tiled 2 per row.",
    )
    generate.add_argument("--model", required=True, help="the base model of the export: pipeline folder or hub id")
    add_student_arguments(generate)
    generate.add_argument(
        "--prompts",
        type=Path,
        required=True,
        help="GenEval evaluation_metadata.jsonl, or DPG-Bench prompts: a folder of <id>.txt files or dpg_bench.csv",
    )
    generate.add_argument("--format", choices=("geneval", "dpg"), help="default: .jsonl → geneval, folder/.csv → dpg")
    generate.add_argument("--out", type=Path, required=True, help="the images folder the scorer is given")
    seeds = generate.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, nargs="+", help="one image per seed, the same seeds for every prompt")
    seeds.add_argument(
        "--images",
        type=at_least_one,
        help=f"images per prompt, seeds --seed, --seed + 1, ... (default {GENERATE_IMAGES})",
    )
    generate.add_argument("--seed", type=int, help="the first seed with --images (default 0)")
    generate.add_argument(
        "--batch", type=at_least_one, default=GENERATE_IMAGES, help="images per pipeline call (1: as apexgen sample)"
    )
    add_run_folder_arguments(
        generate,
        "--out",
        resume="keep the prompts whose images are complete (and made with these settings), write the others",
        overwrite="remove the images already in --out, then write them all",
    )
    generate.set_defaults(run=generate_command)
