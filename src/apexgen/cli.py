"""``apexgen <command>``: the command line. Heavy imports happen inside commands so that ``--help`` is
instant."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("apexgen")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file with settings (merged over the defaults)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="settings overriding the file, e.g. student.steps=2000 method.apex.shift.a=-1",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved configuration and stop")


def toy_command(args: argparse.Namespace) -> int:
    import yaml

    from apexgen.config import load, load_yaml, parse_overrides, to_dict
    from apexgen.toy.benchmark import QUICK, ToyConfig, run_toy_benchmark
    from apexgen.toy.report import format_table, plot_grids, summarise, write_json

    layers = [QUICK] if args.quick else []
    if args.config:
        layers.append(load_yaml(args.config))
    layers.append(parse_overrides(args.overrides))
    config = load(ToyConfig, *layers)
    if args.dry_run:
        print(yaml.safe_dump(to_dict(config), sort_keys=False))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    log.info(
        "toy benchmark: datasets %s, seeds %s, methods %s, %d worker(s); writing to %s",
        list(config.datasets),
        list(config.seeds),
        list(config.methods),
        config.workers,
        args.out,
    )
    started = time.perf_counter()
    results = run_toy_benchmark(config, teacher_cache=args.out / "teachers")
    wall = time.perf_counter() - started
    rows = [row for result in results for row in result.rows]
    summary = summarise(rows)
    floors: dict[str, list[float]] = {}
    for result in results:
        floors.setdefault(result.dataset, []).append(result.metric_floor)
    print(format_table(summary, floors))
    write_json(
        args.out / "toy_results.json",
        rows,
        summary,
        {"metric_floor": floors, "wall_seconds": wall, "config": to_dict(config)},
    )
    first_seed = config.seeds[0]
    grids = plot_grids(args.out, {r.dataset: r.samples for r in results if r.seed == first_seed}, first_seed)
    log.info("done in %.0f s: %s, %s", wall, args.out / "toy_results.json", ", ".join(map(str, grids)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apexgen", description="One-step generators from flow-matching models with APEX."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    toy = commands.add_parser("toy", help="the 2-D toy benchmark: every method against an exact answer")
    toy.add_argument("--quick", action="store_true", help="one seed, short training (about a minute)")
    toy.add_argument("--out", type=Path, default=Path("runs/toy"), help="output folder (default: runs/toy)")
    add_config_arguments(toy)
    toy.set_defaults(run=toy_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from apexgen.config import ConfigError

    try:
        return args.run(args)
    except ConfigError as error:
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
