"""How the cost of a training step grows (issue 10): step time and peak memory of APEX and DMD2 (and flow
matching as the floor) at several batch sizes and resolutions on one backbone, each row an `apexgen bench`
run in fresh processes.

    python benchmarks/bench_scaling.py --out runs/bench_scaling [--backbone sd3] [--size 100m]
        [--batches 2 4] [--resolutions 128 192] [--methods flow_matching apex dmd2] [--steps 3] [--lora]

Writes ``<out>/<resolution>_b<batch>/<method>/bench.json`` per cell and method (a kept one is not rerun), then
``<out>/scaling.md`` (one table) and ``<out>/scaling.png`` (peak memory and step time against the image
tokens per batch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apexgen.jobs.real_backbones.bench import run_bench  # noqa: E402
from apexgen.jobs.real_backbones.bench_models import bench_model  # noqa: E402
from apexgen.jobs.real_backbones.bench_report import REPORT  # noqa: E402
from apexgen.jobs.real_backbones.bench_settings import BenchSettings  # noqa: E402


def cell(out: Path, settings: BenchSettings) -> list[dict]:
    """The rows of one (batch, resolution) cell, one bench run per method: read back when kept, measured
    otherwise."""
    rows = []
    for method in settings.methods:
        folder = out / f"{settings.resolution}_b{settings.batch}" / method
        if not (folder / REPORT).is_file():
            run_bench(dataclasses.replace(settings, methods=(method,)), folder)
        rows += json.loads((folder / REPORT).read_text())["rows"]
    keys = {"backbone": settings.backbone, "size": settings.size, "batch": settings.batch}
    return [{**keys, "resolution": settings.resolution, **row} for row in rows]


def tokens(row: dict) -> int:
    """Image tokens per batch (latent side / patch, squared, times the batch)."""
    model = bench_model(row["backbone"], row["size"])
    return row["batch"] * (row["resolution"] // model.vae_factor // model.config["patch_size"]) ** 2


def table(rows: list[dict]) -> str:
    lines = [
        "| method | resolution | batch | image tokens | s/step | s/update | peak MiB | predicted MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["name"], r["resolution"], r["batch"])):
        predicted = r["breakdown"]["predicted_mib"] if r["breakdown"] else float("nan")
        lines.append(
            f"| {r['name']} | {r['resolution']} | {r['batch']} | {tokens(r):,} | {r['seconds_per_step']:.2f} | "
            f"{r['seconds_per_step'] / r['updates_per_step']:.2f} | {r['training_peak_mib']:.0f} | {predicted:.0f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    figure, (memory, time) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = sorted((r for r in rows if r["name"] == name), key=tokens)
        x = [tokens(r) for r in mine]
        memory.plot(x, [r["training_peak_mib"] for r in mine], "o-", label=name)
        time.plot(x, [r["seconds_per_step"] for r in mine], "o-", label=name)
    for axis, label in ((memory, "peak above the loaded model (MiB)"), (time, "seconds per step")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("image tokens per batch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    memory.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_scaling"))
    parser.add_argument("--backbone", default="sd3")
    parser.add_argument("--size", default="100m")
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 192])
    parser.add_argument("--methods", nargs="+", default=["flow_matching", "apex", "dmd2"])
    parser.add_argument("--steps", type=int, default=3, help="APEX needs 3: one warm-up step, two regular")
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    rows = []
    for resolution in args.resolutions:
        for batch in args.batches:
            settings = BenchSettings(
                args.backbone,
                args.size,
                lora=args.lora,
                steps=args.steps,
                batch=batch,
                resolution=resolution,
                device=args.device,
                methods=tuple(args.methods),
            )
            rows += cell(args.out, settings)
    (args.out / "scaling.md").write_text(table(rows) + "\n")
    plot(rows, args.out / "scaling.png")
    print(table(rows))


if __name__ == "__main__":
    main()
