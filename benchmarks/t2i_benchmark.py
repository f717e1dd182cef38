"""The text-to-image benchmark (benchmarks/t2i_fashion_mnist.md): every method distilled from the same
teacher with the same data, seeds and budget (the same number of optimiser updates: DMD2, which makes
critic_updates + 1 updates per step, runs proportionally fewer steps), then all evaluated together on the
held-out prompts with N generated images per row.

    python benchmarks/t2i_benchmark.py --teacher src/apexgen/assets/fashion_mnist_teacher \\
        --out runs/t2i_benchmark [--updates 1200] [--samples 5000] [--methods apex twinflow dmd2 regression]
        [--teacher-nfe 1 2 4 8 50] [--student-nfe 1 2]

A method whose folder already holds run.json is not trained again (rerun-safe); --resume continues an
interrupted distillation.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from apexgen.config import load
from apexgen.jobs.pixel.config import T2IConfig
from apexgen.jobs.pixel.evaluate import evaluate, student_candidate, teacher_candidate
from apexgen.jobs.pixel.report import write_report
from apexgen.jobs.pixel.train import distill
from apexgen.objectives import STUDENT_METHODS
from apexgen.overrides import parse_overrides
from apexgen.train.run_folder import SUMMARY_FILE


def method_config(
    method: str, updates: int, samples: int, extra: list[str], teacher_nfe=(1, 2, 4, 8, 50), student_nfe=(1, 2)
) -> T2IConfig:
    base = load(T2IConfig, parse_overrides(extra))
    per_step = base.methods.dmd2.critic_updates + 1 if method == "dmd2" else 1
    overrides = {
        "distill": {"method": method, "train": {"steps": updates // per_step}},
        "eval": {"fid": {"samples": samples}, "teacher_nfe": list(teacher_nfe), "student_nfe": list(student_nfe)},
    }
    return load(T2IConfig, parse_overrides(extra), overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/t2i_benchmark"))
    parser.add_argument("--updates", type=int, default=1200)
    parser.add_argument("--samples", type=int, default=5000)
    # choices: an override written after --methods (which takes every word up to the next option) is an error,
    # not a method name; write overrides before the options or after `--`
    parser.add_argument(
        "--methods", nargs="+", default=["apex", "twinflow", "dmd2", "regression"], choices=STUDENT_METHODS
    )
    parser.add_argument("--teacher-nfe", type=int, nargs="+", default=[1, 2, 4, 8, 50])
    parser.add_argument("--student-nfe", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for method in args.methods:
        if not (args.out / method / SUMMARY_FILE).is_file():
            config = method_config(method, args.updates, args.samples, args.overrides)
            distill(config, args.teacher, args.out / method, resume=args.resume)
    config = method_config("apex", args.updates, args.samples, args.overrides, args.teacher_nfe, args.student_nfe)
    candidates = [teacher_candidate(args.teacher, config)]
    candidates += [student_candidate(args.teacher, args.out / method, config) for method in args.methods]
    report = evaluate(candidates, config, args.out / "report")
    report["updates"] = args.updates
    histories = {m: json.loads((args.out / m / "history.json").read_text()) for m in args.methods}
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(write_report(report, histories, args.out / "report", command).read_text())


if __name__ == "__main__":
    main()
