"""The GPU figures of issue 10 in one command: training memory and step time of every method (full
fine-tuning and LoRA) and the inference speed-up, on a ≈0.7B random-init Qwen-Image-architecture model in
bf16 at 512² (1,024 image tokens), batch 4, each method in a fresh process; within a time budget (rows not
started in time are listed as missing).

    benchmarks/gpu.sh                                                 # on a CUDA machine
    PYTHONPATH=src:. python benchmarks/tiny_pipeline.py --backbone sd3 --out /tmp/sd3_tiny      # the CPU check
    python benchmarks/gpu.py --device cpu --size tiny --resolution 32 --inference-model /tmp/sd3_tiny \
        --out /tmp/gpu_check --work /tmp/gpu_work

The inference rows time an SD3-architecture transformer of the same size (benchmarks/tiny_pipeline.py writes
an SD3 folder at the 0.7b widths; there is no Qwen-Image one yet), inside that folder's stock pipeline.

Writes ``<out>/gpu.json`` and ``<out>/gpu.md`` (default out: benchmarks/results/gpu); each row's own bench
report and ledger go under ``--work`` (default runs/gpu; a kept row is measured again).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import torch

from apexgen.jobs.real_backbones.bench import run_bench
from apexgen.jobs.real_backbones.bench_calls import InferenceSettings
from apexgen.jobs.real_backbones.bench_inference import InferenceRow, run_inference_bench
from apexgen.jobs.real_backbones.bench_inference import format_table as inference_table
from apexgen.jobs.real_backbones.bench_report import environment, format_breakdown, format_table, row_record
from apexgen.jobs.real_backbones.bench_settings import BenchRow, BenchSettings

FULL_ROWS = ("flow_matching", "apex", "apex_paper", "apex_released", "twinflow", "dmd2", "consistency")
LORA_ROWS = ("flow_matching", "apex", "apex_paper", "dmd2", "dmd2_full_fake")
# The reference: steps of the same shape on an H100 (0.69B Qwen-Image architecture, bf16, batch 4,
# 1,024 image tokens); not our code.
REFERENCE = (
    "Reference (issue 10, an H100, not our code): flow matching 88 ms / 6.9 GiB; one gradient pass plus two "
    "no-grad forwards 144 ms / 6.9 GiB; three networks, DMD2-like, 213 ms / 12.0 GiB."
)

INFERENCE_REPEATS = 10  # timed rounds over the teacher and student settings

log = logging.getLogger("gpu")


@dataclasses.dataclass
class Section:
    name: str
    folder: str
    settings: BenchSettings
    rows: list[BenchRow] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)


def run_section(section: Section, out: Path, deadline: float) -> None:
    """Each method of the section in its own bench run, while time is left."""
    for method in section.settings.methods:
        if time.monotonic() > deadline:
            section.missing.append(method)
            continue
        one = dataclasses.replace(section.settings, methods=(method,))
        section.rows += run_bench(one, out / section.folder / method)


def run_inference(settings: InferenceSettings | None, work: Path, deadline: float) -> list[InferenceRow] | None:
    """The inference speed-up (``apexgen bench --inference``), when a pipeline folder is given and time is left."""
    if settings is None or time.monotonic() > deadline:
        return None
    return run_inference_bench(settings, work / "inference")


def report(sections: list[Section], inference: list[InferenceRow] | None, out: Path, wall: float) -> None:
    first = sections[0].settings
    lines = [
        f"# GPU figures: {first.backbone} ({first.size}), batch {first.batch}, {first.resolution}², "
        f"{first.precision} on {first.device} ({environment(first.device)['device_name']}), {wall:.0f} s",
        "",
    ]
    for section in sections:
        lines += [f"## {section.name}", "", format_table(section.rows), "", format_breakdown(section.rows), ""]
        if section.missing:
            lines += [f"Not run (time budget): {', '.join(section.missing)}", ""]
    lines += [REFERENCE, ""]
    if inference is not None:
        lines += ["## Inference (stock pipeline, teacher 50 steps with CFG against the student)", ""]
        lines += [inference_table(inference), ""]
    else:
        lines += ["Inference: not run (no --inference-model, or the time budget was spent).", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.md").write_text("\n".join(lines))
    record = {
        "environment": environment(first.device),
        "wall_seconds": wall,
        "sections": {
            s.name: {
                "settings": dataclasses.asdict(s.settings),
                "rows": [row_record(r) for r in s.rows],
                "missing": s.missing,
            }
            for s in sections
        },
        "inference": None if inference is None else [dataclasses.asdict(r) for r in inference],
    }
    (out / "gpu.json").write_text(json.dumps(record, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu"))
    parser.add_argument("--work", type=Path, default=Path("runs/gpu"), help="the runs' ledgers (not committed)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbone", default="qwen_image")
    parser.add_argument("--size", default="0.7b")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--inference-model", help="a pipeline folder for the inference rows (benchmarks/tiny_pipeline.py writes one)"
    )
    parser.add_argument("--inference-backbone", default="sd3", help="the backbone of --inference-model")
    parser.add_argument("--budget-seconds", type=float, default=420.0, help="no new row starts after this")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here; for the CPU check pass --device cpu --size tiny")
    base = BenchSettings(
        args.backbone,
        args.size,
        steps=args.steps,
        batch=args.batch,
        resolution=args.resolution,
        device=args.device,
        autocast="bf16" if args.device.startswith("cuda") else None,
    )
    sections = [
        Section("full fine-tuning", "full", dataclasses.replace(base, methods=FULL_ROWS)),
        Section("LoRA", "lora", dataclasses.replace(base, lora=True, methods=LORA_ROWS)),
    ]
    inference = None
    if args.inference_model:
        inference = InferenceSettings(
            args.inference_backbone,
            args.inference_model,
            args.size,
            args.resolution,
            repeats=INFERENCE_REPEATS,
            device=args.device,
            precision="bf16" if args.device.startswith("cuda") else None,
        )
    started = time.monotonic()
    deadline = started + args.budget_seconds
    # the inference rows first: they are the shortest and the must-show of item 4
    inference_rows = run_inference(inference, args.work, deadline)
    for section in sections:
        run_section(section, args.work, deadline)
    report(sections, inference_rows, args.out, time.monotonic() - started)
    print((args.out / "gpu.md").read_text())


if __name__ == "__main__":
    main()
