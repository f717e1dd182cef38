"""``apexgen toy``: the toy benchmark from its settings (``--quick``, ``--config``, ``KEY=VALUE``), its table,
``toy_results.json`` and sample grids. Only the standard library is imported here; the benchmark's modules
load when the command runs (after its settings resolved), so that ``apexgen --help`` stays instant."""

from __future__ import annotations

import argparse
import logging
import time

log = logging.getLogger("apexgen")


def toy_command(args: argparse.Namespace) -> int:
    from apexgen.jobs.toy.config import QUICK, ToyConfig
    from apexgen.settings_layers import print_settings, resolve

    config = resolve(ToyConfig, args, *([QUICK] if args.quick else []))
    if args.dry_run:
        print_settings(config)
        return 0
    from apexgen.config import to_dict
    from apexgen.jobs.toy.benchmark import run_toy_benchmark
    from apexgen.jobs.toy.report import format_table, plot_grids, summarise, write_json

    args.out.mkdir(parents=True, exist_ok=True)
    log.info(
        "toy benchmark: datasets %s, seeds %s, methods %s, %d worker(s); writing to %s",
        list(config.datasets),
        list(config.seeds),
        list(config.students),
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
