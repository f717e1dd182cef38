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
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

from apexgen.config import load, to_dict
from apexgen.jobs.pixel.config import T2IConfig
from apexgen.markdown import markdown_table
from apexgen.objectives import schedule_of
from apexgen.objectives.base import GENERATOR_GROUPS, BudgetCount, steps_for_budget
from apexgen.overrides import parse_overrides

TEACHER = "src/apexgen/assets/fashion_mnist_teacher"
PRIVATE = ["methods.apex.fake_network=private", "methods.apex.slices.fake=0", "methods.apex.slices.generator=1"]
LAG = ["methods.apex.lag_every=100"]
# The APEX form of benchmarks/t2i_fashion_mnist.md before this study, spelled out so that a row means the same
# whatever the ``ours`` preset becomes; an APEX row starts from it unless it names a preset.
TODAY = ("methods.apex.weight_generator=4", "methods.apex.fake_warmup=50", "methods.apex.weight_regression=0")
# The real-branch CFG of every APEX row that names none: 3, the job's value when the study ran (the job's
# APEX_GUIDANCE, chosen by this study: 1.5, then 2), so that a row means the same whatever the default becomes.
STUDY_GUIDANCE = "methods.apex.real_guidance=3"


@dataclass(frozen=True)
class Row:
    label: str
    method: str  # a student method, or "teacher"
    overrides: tuple[str, ...] = ()
    nfe: int = 1
    seeds: tuple[int, ...] = (0,)
    budgets: tuple[int, ...] = (600,)
    count: BudgetCount = "total"  # which updates the budget counts

    def jobs(self) -> list[Job]:
        return [Job(self, seed, budget) for seed in self.seeds for budget in self.budgets]


@dataclass(frozen=True)
class Job:
    row: Row
    seed: int
    budget: int

    @property
    def name(self) -> str:
        if self.row.method == "teacher":
            return self.row.label
        return f"{self.row.label}_u{self.budget}_s{self.seed}"


def row(label: str, *overrides: str, method: str = "apex", **options) -> Row:
    names_preset = any(o.startswith("methods.apex.preset=") for o in overrides)
    base = TODAY if method == "apex" and not names_preset else ()
    names_guidance = any(o.startswith("methods.apex.real_guidance=") for o in overrides)
    guidance = (STUDY_GUIDANCE,) if method == "apex" and not names_guidance else ()
    return Row(label, method, (*base, *guidance, *overrides), **options)


ROWS: dict[str, list[Row]] = {
    "teacher": [row(f"teacher_cfg{g:g}", f"eval.guidance={g}", method="teacher", nfe=50) for g in (1.0, 1.5, 2.0, 3.0)],
    "core": [
        row("apex_today", *LAG),
        row("apex_paper", "methods.apex.preset=paper"),
        row("apex_released", "methods.apex.preset=released", *LAG),
        row("dmd2", method="dmd2"),
        row("regression", method="regression"),
        row("apex_private_k5", *PRIVATE, "methods.apex.fake_updates=5", "methods.apex.fake_warmup=0", *LAG),
        row(
            "apex_private_k5_nokey",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            "methods.apex.fake_key=none",
        ),
        row("twinflow", method="twinflow"),
    ],
    "levers": [
        row("apex_guidance1.5", "methods.apex.real_guidance=1.5"),
        row("apex_guidance2", "methods.apex.real_guidance=2"),
        row("apex_shift_-0.5_1", "methods.apex.condition_shift.a=-0.5", "methods.apex.condition_shift.b=1"),
        row("apex_fake_t_max0.8", "methods.apex.fake_time.t_max=0.8"),
        row("apex_slices_fake0.25", "methods.apex.slices.fake=0.25", "methods.apex.slices.generator=0.75"),
        row(
            "apex_anchor0.25",
            "methods.apex.slices.anchor=0.25",
            "methods.apex.slices.generator=0.375",
            "methods.apex.slices.fake=0.375",
        ),
        row("apex_private_k2", *PRIVATE, "methods.apex.fake_updates=2", "methods.apex.fake_warmup=0"),
        row(
            "apex_private_k5_guidance2",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            "methods.apex.real_guidance=2",
        ),
    ],
    "anchors": [
        row("apex_regression1", "methods.apex.weight_regression=1"),
        row("apex_regression4", "methods.apex.weight_regression=4"),
        row(
            "apex_private_k5_regression1",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            "methods.apex.weight_regression=1",
        ),
    ],
    "long": [
        row("regression", method="regression", budgets=(3000,)),
        row("apex_regression4", "methods.apex.weight_regression=4", *LAG, budgets=(3000,)),
        row("dmd2", method="dmd2", budgets=(3000,)),
        row(
            "apex_private_k5",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            *LAG,
            budgets=(3000,),
        ),
        row("apex_today", *LAG, budgets=(3000,)),
    ],
    "combinations": [
        row("apex_regression4_guidance1.5", "methods.apex.weight_regression=4", "methods.apex.real_guidance=1.5"),
        # between the CFG-1.5 row's FID and diversity and `ours`' accuracy (CFG 3)
        row("apex_regression4_guidance2", "methods.apex.weight_regression=4", "methods.apex.real_guidance=2"),
        row("apex_regression4_nowarmup", "methods.apex.weight_regression=4", "methods.apex.fake_warmup=0"),
        row("apex_regression8", "methods.apex.weight_regression=8"),
        # the fake-only warm-up at `ours`' guidance: 50 warm-up updates contract the one-step map (issue 11)
        row(
            "apex_regression4_guidance2_nowarmup",
            "methods.apex.weight_regression=4",
            "methods.apex.real_guidance=2",
            "methods.apex.fake_warmup=0",
        ),
        # the anchor's weight at `ours`' guidance: weight 8 had fewer near-duplicates than 4 at CFG 3, 600 updates
        row("apex_regression8_guidance2", "methods.apex.weight_regression=8", "methods.apex.real_guidance=2"),
        # the fairness check of the CFG-1.5 row: the best rival with the same lower guidance
        row("regression_guidance1.5", "methods.regression.guidance=1.5", method="regression"),
        row("dmd2_guidance1.5", "methods.dmd2.guidance=1.5", method="dmd2"),
        # the same check at `ours`' guidance in the Fashion-MNIST job (CFG 2)
        row("regression_guidance2", "methods.regression.guidance=2", method="regression"),
        row("dmd2_guidance2", "methods.dmd2.guidance=2", method="dmd2"),
        # the toy benchmark's finding (benchmarks/toy.md, "The anchor's pool"): a larger pool of more exact
        # endpoints for `ours`' anchor, and for regression itself, the fairness check (4x the pool's cost)
        row(
            "apex_regression4_guidance2_pool4096",
            "methods.apex.weight_regression=4",
            "methods.apex.real_guidance=2",
            "methods.apex.regression_pairs=4096",
            "methods.apex.regression_steps=50",
        ),
        row(
            "regression_guidance2_pool4096",
            "methods.regression.guidance=2",
            "methods.regression.pairs=4096",
            "methods.regression.teacher_steps=50",
            method="regression",
        ),
        # the toy's second pool finding (benchmarks/toy.md: 65,536 pairs beat 4,096 on orbit for both): more
        # pairs at the same 25 Euler steps, separating the pool's size from its steps (4,096 x 50 above)
        row(
            "apex_regression4_guidance2_pool8192",
            "methods.apex.weight_regression=4",
            "methods.apex.real_guidance=2",
            "methods.apex.regression_pairs=8192",
        ),
        row(
            "regression_guidance2_pool8192",
            "methods.regression.guidance=2",
            "methods.regression.pairs=8192",
            method="regression",
        ),
    ],
    # Equal generator updates: the budget counts only the updates that move the generator, so DMD2 (five
    # critic updates per generator update) and the private adapter (five fake updates) get as many
    # generator updates as `ours` has at 600 total (550, after its 50 fake-only warm-up updates).
    "equal_generator": [
        row("dmd2_generator550", method="dmd2", budgets=(550,), count="generator"),
        row(
            "apex_private_k5_generator550",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            budgets=(550,),
            count="generator",
        ),
        # the private adapter with `ours`' anchor and guidance: the best equal-generator row plus ours' levers
        row(
            "apex_private_k5_regression4_guidance2_generator550",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            "methods.apex.weight_regression=4",
            "methods.apex.real_guidance=2",
            budgets=(550,),
            count="generator",
        ),
    ],
    "table6": [
        row("paper_fake_only", "methods.apex.preset=paper", "methods.apex.weight_anchor=0"),
        row("paper_mix_only", "methods.apex.preset=paper", "methods.apex.weight_fake=0"),
        row("paper_1_0.5", "methods.apex.preset=paper", "methods.apex.weight_anchor=0.5"),
        row("paper_1_2", "methods.apex.preset=paper", "methods.apex.weight_anchor=2"),
    ],
    "table7": [
        row(
            f"paper_a{a:g}_b{b:g}",
            "methods.apex.preset=paper",
            f"methods.apex.condition_shift.a={a}",
            f"methods.apex.condition_shift.b={b}",
        )
        for a in (-1.0, -0.5, 0.5)
        for b in (0.0, 1.0)
        if (a, b) != (-0.5, 1.0)
    ],
    "table7_embeds": [
        row(
            f"paper_embeds_a{a:g}_b{b:g}",
            "methods.apex.preset=paper",
            "methods.apex.condition_shift.where=embeds",
            f"methods.apex.condition_shift.a={a}",
            f"methods.apex.condition_shift.b={b}",
        )
        for a in (-1.0, -0.5, 0.5)
        for b in (0.0, 1.0)
    ],
    "paper_options": [
        row("paper_nograd", "methods.apex.preset=paper", "methods.apex.paper.fake_gradient=false"),
        row(
            "paper_fresh",
            "methods.apex.preset=paper",
            "methods.apex.paper.fake_noise=fresh",
            "methods.apex.paper.fake_time=fresh",
        ),
        row("paper_cap100", "methods.apex.preset=paper", "methods.apex.mix_weight_cap=100"),
        row("paper_uniform", "methods.apex.preset=paper", "methods.apex.mix_weighting=uniform"),
    ],
}


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
