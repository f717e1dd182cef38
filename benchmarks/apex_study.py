"""The APEX study (benchmarks/apex_study.md): APEX presets, levers against collapse, the paper's ablations
and the rival methods, each distilled from the shipped Fashion-MNIST teacher with the same data, seeds and
budget, and scored on the held-out prompts (FID, accuracy, Inception and pixel diversity, near-duplicates).

    python benchmarks/apex_study.py --out runs/apex_study --rows core levers --samples 2000 --workers 2
    python benchmarks/apex_study.py --out runs/apex_study --report benchmarks/results/apex_study

A row is named by its label, seed and budget; a row whose score is kept in <out>/scores is not run again, and
a distilled student whose run.json exists is not trained again (the study is rerun-safe). ``--workers 2``
runs two rows at once with one thread each (faster on 2 cores than one row with two threads).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from apex_study_rows import ROWS, Job, Row

from apexgen.config import load, to_dict
from apexgen.jobs.pixel.config import T2IConfig
from apexgen.markdown import markdown_table
from apexgen.objectives import schedule_of
from apexgen.objectives.base import GENERATOR_GROUPS, steps_for_budget
from apexgen.overrides import parse_overrides

TEACHER = "src/apexgen/assets/fashion_mnist_teacher"


def job_config(job: Job, samples: int) -> T2IConfig:
    overrides = {"eval": {"fid": {"samples": samples}}}
    if job.row.method != "teacher":
        base = load(T2IConfig, parse_overrides(list(job.row.overrides)))
        steps = steps_for_budget(schedule_of(job.row.method, base.methods), job.budget, job.row.count)
        train = {"steps": steps, "seed": job.seed, "preview_every": 0}
        overrides["distill"] = {"method": job.row.method, "train": train}
    return load(T2IConfig, parse_overrides(list(job.row.overrides)), overrides)


def update_counts(job: Job, config: T2IConfig) -> dict[str, int]:
    schedule = schedule_of(config.distill.method, config.methods)
    groups = [group for step in range(config.distill.train.steps) for group in schedule(step)]
    return {"updates": len(groups), "generator_updates": sum(g in GENERATOR_GROUPS for g in groups)}


def run_job(job: Job, out: Path, samples: int, threads: int | None) -> dict:
    """Distil (unless done) and score one job; its record is kept in <out>/scores/<name>.json."""
    import torch

    from apexgen.jobs.pixel.evaluate import Candidate, kept_or_scored_row, scorer, student_candidate, teacher_candidate
    from apexgen.jobs.pixel.train import distill, preview_grid
    from apexgen.train.run_folder import SUMMARY_FILE

    if threads:
        torch.set_num_threads(threads)
    record_path = out / "scores" / f"{job.name}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    config = job_config(job, samples)
    teacher = Path(TEACHER)
    started = time.perf_counter()
    if job.row.method == "teacher":
        candidate: Candidate = teacher_candidate(teacher, config)
        counts = {"updates": 0, "generator_updates": 0}
        history = []
    else:
        run = out / "runs" / job.name
        if not (run / SUMMARY_FILE).is_file():
            distill(config, teacher, run, resume=True)
        candidate = student_candidate(teacher, run, config)
        counts = update_counts(job, config)
        history = json.loads((run / "history.json").read_text())
    candidate.method = job.name
    candidate.nfe = (job.row.nfe,)
    judge = scorer(config)
    candidate.network.eval()
    scored = kept_or_scored_row(judge, candidate, job.row.nfe, out / "scores" / "rows")
    preview_grid(
        candidate.network, candidate.sampler, job.row.nfe, judge.prompts, config, out / "grids" / f"{job.name}.png"
    )
    last = history[-1] if history else {}
    record = {
        "name": job.name,
        "row": asdict(job.row),
        "seed": job.seed,
        "budget": job.budget,
        **counts,
        "steps": config.distill.train.steps,
        **{k: scored[k] for k in ("fid", "accuracy", "diversity", "pixel_diversity", "near_duplicates")},
        "train_seconds": candidate.train_seconds,
        "final_logs": last,
        "lag": [{k: h[k] for k in h if k == "step" or "lag_" in k} for h in history if any("lag_" in k for k in h)],
        "method_config": to_dict(getattr(config.methods, config.distill.method)),
        "wall_seconds": time.perf_counter() - started,
    }
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1))
    return record


def format_table(records: list[dict]) -> str:
    header = ("row", "seed", "updates (generator)", "FID ↓", "accuracy ↑", "diversity", "pixel diversity", "near-dup.")
    cells = [
        (
            r["row"]["label"],
            r["seed"],
            f"{r['updates']} ({r['generator_updates']})",
            f"{r['fid']:.1f}",
            f"{r['accuracy']:.3f}",
            f"{r['diversity']:.2f}",
            f"{r['pixel_diversity']:.2f}",
            f"{100 * r['near_duplicates']:.1f} %",
        )  # fmt: skip
        for r in records
    ]
    return markdown_table(header, cells)


def report(out: Path, destination: Path) -> None:
    """Copy every kept record and grid to ``destination`` (next to the records already there: a row of the
    same name is replaced) and print the table."""
    kept = destination / "records.json"
    records = {r["name"]: r for r in json.loads(kept.read_text())} if kept.is_file() else {}
    records |= {r["name"]: r for r in (json.loads(p.read_text()) for p in sorted((out / "scores").glob("*.json")))}
    records = list(records.values())
    destination.mkdir(parents=True, exist_ok=True)
    (destination / "records.json").write_text(json.dumps(records, indent=1))
    for grid in (out / "grids").glob("*.png"):
        shutil.copy(grid, destination / grid.name)
    print(format_table(records))


LOG_FORMAT = "%(asctime)s %(process)d %(name)s: %(message)s"


def worker_logging(level: int, format: str) -> None:
    logging.basicConfig(level=level, format=format, datefmt="%H:%M:%S")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/apex_study"))
    parser.add_argument("--rows", nargs="*", default=[], choices=sorted(ROWS), help="groups of rows to run")
    parser.add_argument("--only", nargs="*", default=[], help="run only these row labels of the groups")
    parser.add_argument("--seeds", type=int, nargs="+", help="override every row's seeds")
    parser.add_argument("--budgets", type=int, nargs="+", help="override every row's budgets (optimiser updates)")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--report", type=Path, help="copy the kept records and grids here and print the table")
    args = parser.parse_args()
    worker_logging(logging.INFO, LOG_FORMAT)
    rows = [r for group in args.rows for r in ROWS[group] if not args.only or r.label in args.only]
    jobs = []
    for r in rows:
        options = {}
        if args.seeds and r.method != "teacher":
            options["seeds"] = tuple(args.seeds)
        if args.budgets and r.method != "teacher":
            options["budgets"] = tuple(args.budgets)
        jobs += Row(**{**asdict(r), "overrides": r.overrides, **options}).jobs()
    if args.workers == 1:
        records = [run_job(job, args.out, args.samples, None) for job in jobs]
    else:
        logging_setup = (logging.INFO, LOG_FORMAT)
        with ProcessPoolExecutor(args.workers, get_context("spawn"), worker_logging, logging_setup) as pool:
            futures = [pool.submit(run_job, job, args.out, args.samples, 1) for job in jobs]
            records = [f.result() for f in futures]
    if records:
        print(format_table(records))
    if args.report:
        report(args.out, args.report)


if __name__ == "__main__":
    main()
