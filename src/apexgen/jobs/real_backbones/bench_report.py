"""The report of ``apexgen bench``: the table of every method, the memory breakdown beside the measured peak,
and the machine it ran on (``bench.md``, ``bench.json``)."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from apexgen.jobs.real_backbones.bench_settings import BenchRow, BenchSettings
from apexgen.markdown import markdown_table

if TYPE_CHECKING:
    from apexgen.jobs.real_backbones.bench_models import BenchModel


REPORT = "bench.json"


def format_table(rows: list[BenchRow]) -> str:
    header = ("method", "form", "updates/step", "s/step", "weights MiB", "peak MiB", "trainable", "held")
    cells = [
        (
            r.name, r.form, r.updates_per_step, f"{r.seconds_per_step:.4f}",
            f"{r.weights_mib:.1f}", f"{r.training_peak_mib:.1f}",
            f"{r.trainable_parameters:,}", f"{r.held_parameters:,}",
        )
        for r in rows
    ]  # fmt: skip
    return markdown_table(header, cells, right_from=2)


def format_breakdown(rows: list[BenchRow]) -> str:
    """The predicted bytes of each row beside its measured peak (MiB above the loaded model)."""
    header = (
        "method", "weights held", "optimiser", "gradients", "activations", "no-grad / backward", "predicted",
        "measured", "predicted / measured", "dry-run estimate",
    )  # fmt: skip
    cells = []
    for r in rows:
        b = r.breakdown
        if b is None:
            continue
        ratio = b.predicted_mib / r.training_peak_mib if r.training_peak_mib > 0 else float("nan")
        estimate = "—" if r.dry_run_mib is None else f"{r.dry_run_mib:.1f}"
        mib = (b.weights_mib, b.optimizer_mib, b.gradients_mib, b.activations_mib, b.transient_mib, b.predicted_mib)
        cells.append((r.name, *(f"{v:.1f}" for v in (*mib, r.training_peak_mib)), f"{ratio:.2f}", estimate))
    return markdown_table(header, cells, right_from=1)


def environment(device: str) -> dict:
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or "cpu"
    return {"torch": torch.__version__, "device": device, "device_name": name, "threads": torch.get_num_threads()}


def write_report(settings: BenchSettings, model: BenchModel, rows: list[BenchRow], out: Path) -> None:
    side = settings.resolution or model.resolution
    header = (
        f"# apexgen bench: {settings.backbone} ({settings.size}), batch {settings.batch}, {side}² images "
        f"({side // model.vae_factor}² latents), {settings.steps} steps, {settings.precision} on {settings.device}"
    )
    notes = (
        "s/step: mean over the steps after the first; an update is one optimiser step (DMD2 updates its critic "
        "several times per generator update). weights: parameters and buffers the method's networks hold. "
        "peak: the highest memory above the loaded model while the method built its networks and trained (its "
        "extra networks, gradients, optimiser states, activations), "
        + (
            "each method in a fresh process. "
            if settings.processes == "fresh"
            else "all methods in one process (rough: a method's freed memory can hide the next one's). "
        )
        + "The breakdown (apexgen.jobs.real_backbones.bench_memory) predicts it from the networks "
        "and one probe of each loss; the dry-run estimate is what `apexgen train --dry-run` prints for the same "
        "method and form (weights, gradients and optimiser states only), less the loaded model."
    )
    out.mkdir(parents=True, exist_ok=True)
    tables = [format_table(rows)] + ([format_breakdown(rows)] if any(r.breakdown for r in rows) else [])
    (out / "bench.md").write_text("\n\n".join([header, *tables, notes]) + "\n")
    report = {
        "settings": asdict(settings),
        "environment": environment(settings.device),
        "rows": [row_record(r) for r in rows],
    }
    (out / REPORT).write_text(json.dumps(report, indent=1))


def row_record(row: BenchRow) -> dict:
    record = asdict(row)
    if row.breakdown is not None:
        record["breakdown"]["predicted_mib"] = row.breakdown.predicted_mib
    return record
