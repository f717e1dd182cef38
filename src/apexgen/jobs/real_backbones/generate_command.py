"""``apexgen generate``: its arguments (those of the student shared with ``apexgen sample``) and the command;
its settings: ``command_settings.GenerateCommandSettings``. Only argparse is imported here; the command
imports ``generate`` when it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from apexgen.jobs.real_backbones.command_settings import GENERATE_IMAGES
from apexgen.jobs.real_backbones.commands import (
    add_run_folder_arguments,
    add_student_arguments,
    at_least_one,
    check_device,
    default_device,
    pipeline_dtype,
)
from apexgen.settings_layers import add_config_arguments, looks_like_override, print_settings, resolve

GENERATE_OVERRIDE_EXAMPLE = "steps=2 seeds=[0,1,2,3] batch=2"


def seed_or_override(word: str) -> int | str:
    """A word after ``--seeds``: a seed, or a ``KEY=VALUE`` override that follows the seeds (argparse gives the
    flag every word up to the next flag; ``settings_layers.given_flags`` moves the overrides out)."""
    if looks_like_override(word):
        return word
    try:
        return int(word)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a seed (an integer): {word!r}") from None


def generate_command(args: argparse.Namespace) -> int:
    from apexgen.jobs.real_backbones.command_settings import GenerateCommandSettings

    chosen = resolve(GenerateCommandSettings, args, flags=True)
    if chosen.device is not None:
        check_device(chosen.device)
    if args.dry_run:
        print_settings(chosen)
        return 0
    device = chosen.device or default_device()
    from apexgen.jobs.real_backbones.generate import GenerateSettings, run_generate

    settings = GenerateSettings(
        model=resolved(chosen.model),
        export=str(Path(chosen.lora).resolve()),
        steps=chosen.steps,
        seeds=chosen.seed_list(),
        resolution=chosen.resolution,
        dtype=pipeline_dtype(chosen.dtype, device),
        batch=chosen.batch,
    )
    prompts, out = Path(chosen.prompts), Path(chosen.out)
    run_generate(prompts, out, settings, chosen.format, device, args.resume, args.overwrite)
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
    generate.add_argument("--model", help="the base model of the export: pipeline folder or hub id (required)")
    add_student_arguments(generate)
    generate.add_argument(
        "--prompts",
        type=Path,
        help="GenEval evaluation_metadata.jsonl, or DPG-Bench prompts: a folder of <id>.txt files or dpg_bench.csv "
        "(required)",
    )
    generate.add_argument("--format", choices=("geneval", "dpg"), help="default: .jsonl → geneval, folder/.csv → dpg")
    generate.add_argument("--out", type=Path, help="the images folder the scorer is given (required)")
    seeds = generate.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds", type=seed_or_override, nargs="+", help="one image per seed, the same seeds for every prompt"
    )
    seeds.add_argument(
        "--images",
        type=at_least_one,
        help=f"images per prompt, seeds --seed, --seed + 1, ... (default {GENERATE_IMAGES})",
    )
    generate.add_argument("--seed", type=int, help="the first seed with --images (default 0)")
    generate.add_argument(
        "--batch",
        type=at_least_one,
        help=f"images per pipeline call (default {GENERATE_IMAGES}; 1: as apexgen sample)",
    )
    add_run_folder_arguments(
        generate,
        "--out",
        resume="keep the prompts whose images are complete (and made with these settings), write the others",
        overwrite="remove the images already in --out, then write them all",
    )
    add_config_arguments(generate, GENERATE_OVERRIDE_EXAMPLE)
    generate.set_defaults(handler=generate_command)
