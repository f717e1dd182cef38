"""The GPU figures of issue 10 in one command: training memory and step time of every method (full
fine-tuning and LoRA) and the inference speed-up, on a ≈0.7B random-init Qwen-Image-architecture model in
bf16 at 512² (1,024 image tokens), batch 4, each method in a fresh process; within a time budget (rows not
started in time are listed as missing).

    benchmarks/gpu.sh                                                 # on a CUDA machine
    python benchmarks/gpu.py --device cpu --size tiny --resolution 32 --out /tmp/gpu_check   # the CPU check

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

from apexgen.run.bench import BenchRow, BenchSettings, run_bench
from apexgen.run.bench_report import environment, format_breakdown, format_table, row_record

FULL_ROWS = ("flow_matching", "apex", "apex_paper", "apex_released", "twinflow", "dmd2", "consistency")
LORA_ROWS = ("flow_matching", "apex", "apex_paper", "dmd2", "dmd2_full_fake")
# The reference: steps of the same shape on an H100 (0.69B Qwen-Image architecture, bf16, batch 4,
# 1,024 image tokens); not our code.
REFERENCE = (
    "Reference (issue 10, an H100, not our code): flow matching 88 ms / 6.9 GiB; one gradient pass plus two "
    "no-grad forwards 144 ms / 6.9 GiB; three networks, DMD2-like, 213 ms / 12.0 GiB."
)

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


def report(sections: list[Section], out: Path, wall: float) -> None:
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
    started = time.monotonic()
    for section in sections:
        run_section(section, args.work, started + args.budget_seconds)
    report(sections, args.out, time.monotonic() - started)
    print((args.out / "gpu.md").read_text())


if __name__ == "__main__":
    main()
