"""``apexgen bench --inference``: seconds per image of the teacher (its stock pipeline, 50 steps with
classifier-free guidance) and of the student at 1, 2 and 4 steps (the export's guidance-off arguments and
scheduler, ``apexgen.export.sampling_settings``), on the same backbone and through the same stock pipeline.

End to end: the wall time of one pipeline call, prompt text in and PIL images out (text encoding, the
denoising loop, VAE decoding). Transformer: the setting's transformer calls made directly on inputs of the
pipeline's shapes (``bench_calls``). Both after a warm-up run: the median of repeats taken in rounds over
every setting, synchronised on CUDA.

Counting: NFE = sampling steps; transformer evaluations per image = the rows an image puts through the
transformer = 2 × NFE with CFG (in one batched call or two calls per step), NFE without.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from apexgen.backbones.registry import adapter_class
from apexgen.config import ConfigError
from apexgen.export import EXPORTED_STEPS
from apexgen.jobs.real_backbones.bench_calls import (
    NEGATIVE_PROMPT,
    InferenceSettings,
    Pipelines,
    Setting,
    batch_per_call,
    calls_per_step,
    load_pipelines,
    pipeline_run,
    transformer_run,
)
from apexgen.jobs.real_backbones.bench_models import bench_model
from apexgen.jobs.real_backbones.bench_report import environment
from apexgen.jobs.real_backbones.pipeline import DTYPES
from apexgen.markdown import markdown_table
from apexgen.train.run_folder import RunFolderError

log = logging.getLogger(__name__)

REPORT_MARKDOWN, REPORT_JSON = "bench_inference.md", "bench_inference.json"


@dataclass
class InferenceRow:
    setting: str
    nfe: int  # sampling steps
    transformer_calls: int  # per pipeline call
    batch_per_call: int  # rows per transformer call, in images of the pipeline call (2 with batched CFG)
    transformer_evaluations: int  # per image: calls × batch per call
    transformer_seconds: float  # per image
    end_to_end_seconds: float  # per image
    transformer_speedup: float = 1.0  # the teacher's seconds over this row's
    end_to_end_speedup: float = 1.0


def settings_grid(settings: InferenceSettings) -> list[Setting]:
    teacher = Setting(f"teacher, CFG, {settings.teacher_steps} steps", settings.teacher_steps, guided=True)
    return [teacher, *(Setting(f"student, {n} step{'s' * (n > 1)}", n, guided=False) for n in EXPORTED_STEPS)]


def check_settings(settings: InferenceSettings) -> None:
    adapter_class(settings.backbone)  # an unknown backbone is refused here, before any loading
    for name in ("batch", "teacher_steps", "repeats"):
        if getattr(settings, name) < 1:
            raise ConfigError("", f"{name.replace('_', ' ')} must be ≥ 1, got {getattr(settings, name)}")
    if settings.size is not None:
        bench_model(settings.backbone, settings.size)  # an unknown size is refused
    if settings.dtype not in DTYPES:
        raise ConfigError("", f"precision {settings.dtype!r}: use fp32 or bf16")


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def median_seconds(runs: list[Callable[[], object]], repeats: int, device: str) -> list[float]:
    """The median wall time of each run, after one warm-up call of each, over ``repeats`` rounds that call
    every run once in turn (a busy spell of a shared machine then falls on every setting alike)."""
    for run in runs:
        run()  # kernels, allocator pools, lazy initialisation
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, record in zip(runs, times, strict=True):
            synchronise(device)
            started = time.perf_counter()
            run()
            synchronise(device)
            record.append(time.perf_counter() - started)
    return [statistics.median(record) for record in times]


def measure(pipelines: Pipelines, grid: list[Setting], settings: InferenceSettings) -> list[InferenceRow]:
    """One row per setting: its transformer calls made directly, and its pipeline call, per image."""
    runs = [transformer_run(pipelines, setting, settings) for setting in grid]
    runs += [pipeline_run(pipelines, setting, settings) for setting in grid]
    seconds = [value / settings.batch for value in median_seconds(runs, settings.repeats, settings.device)]
    rows = []
    for setting, transformer, end_to_end in zip(grid, seconds[: len(grid)], seconds[len(grid) :], strict=True):
        calls = setting.steps * calls_per_step(settings.backbone, setting)
        batch = batch_per_call(settings.backbone, setting)
        rows.append(InferenceRow(setting.name, setting.steps, calls, batch, calls * batch, transformer, end_to_end))
        log.info("%s: transformer %.4g s/image, end to end %.4g s/image", setting.name, transformer, end_to_end)
    return rows


def with_speedups(rows: list[InferenceRow]) -> list[InferenceRow]:
    """Each row's speed-up over the teacher (the first row), transformer time and end to end."""
    teacher = rows[0]
    for row in rows:
        row.transformer_speedup = teacher.transformer_seconds / row.transformer_seconds
        row.end_to_end_speedup = teacher.end_to_end_seconds / row.end_to_end_seconds
    return rows


def run_inference_bench(settings: InferenceSettings, out: Path, command: str | None = None) -> list[InferenceRow]:
    """The teacher's row, then the student's at each exported step count; writes ``bench_inference.md`` and
    ``bench_inference.json`` into ``out`` (a folder that already holds them is refused)."""
    check_settings(settings)
    if (out / REPORT_JSON).exists():
        raise RunFolderError(f"{out} already holds an inference bench ({REPORT_JSON}); choose another --out")
    pipelines = load_pipelines(settings)
    rows = with_speedups(measure(pipelines, settings_grid(settings), settings))
    write_report(settings, pipelines, rows, out, command)
    return rows


def format_table(rows: list[InferenceRow]) -> str:
    header = (
        "setting", "NFE", "transformer calls", "batch per call", "transformer evaluations", "transformer s/image",
        "end-to-end s/image", "speed-up, transformer", "speed-up, end to end",
    )  # fmt: skip
    cells = [
        (
            r.setting, r.nfe, r.transformer_calls, f"{r.batch_per_call}×", r.transformer_evaluations,
            f"{r.transformer_seconds:.4g}", f"{r.end_to_end_seconds:.4g}",
            f"{r.transformer_speedup:.1f}×", f"{r.end_to_end_speedup:.1f}×",
        )
        for r in rows
    ]  # fmt: skip
    return markdown_table(header, cells, right_from=1)


def write_report(
    settings: InferenceSettings, pipelines: Pipelines, rows: list[InferenceRow], out: Path, command: str | None
) -> None:
    transformer = pipelines.adapter.transformer
    parameters = sum(p.numel() for p in transformer.parameters())
    origin = f"random-init {settings.size}" if settings.size else "the folder's"
    header = (
        f"# apexgen bench --inference: {settings.backbone}, {origin} {type(transformer).__name__} "
        f"({parameters:,} parameters), {settings.batch} image(s) per call, {settings.side}² images, "
        f"{settings.dtype} on {settings.device}, median of {settings.repeats} rounds after a warm-up"
    )
    cfg = "one call of 2× batch" if adapter_class(settings.backbone).stock_pipeline.cfg_batched else "two calls"
    notes = (
        f"NFE: sampling steps. The teacher runs the pipeline's CFG ({cfg} per step, negative prompt "
        f"{NEGATIVE_PROMPT!r}); the student the export's guidance-off arguments and scheduler, with the same "
        "transformer (a full-weights export or a fused LoRA costs the same per call). Transformer evaluations: "
        "the rows an image puts through the transformer (calls × batch per call). Transformer s/image: those "
        "calls made directly on inputs of the pipeline's shapes; end to end: the pipeline call, prompt text in, "
        "PIL images out. Speed-up: the teacher's seconds over the row's."
    )
    parts = [header, *([f"Command: `{command}`"] if command else []), format_table(rows), notes]
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_MARKDOWN).write_text("\n\n".join(parts) + "\n")
    report = {
        "settings": asdict(settings) | {"resolution": settings.side, "precision": settings.dtype},
        "command": command,
        "transformer_parameters": parameters,
        "cfg_batched": adapter_class(settings.backbone).stock_pipeline.cfg_batched,
        "environment": environment(settings.device),
        "rows": [asdict(r) for r in rows],
    }
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1))
