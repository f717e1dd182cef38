"""The APEX ablation on the toy benchmark (benchmarks/toy.md): condition-shift variants, generator forms,
anchor rows and our own options, every variant from the same teachers (cached), seeds and budget.

    python benchmarks/toy_ablation.py --out runs/toy_ablation [--seeds 0 1 2] [--variants NAME ...]

Writes ``<out>/toy_ablation.json`` and prints a markdown table (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

from apexgen.config import build, fill, to_dict
from apexgen.jobs.toy.benchmark import Variant, run_toy_benchmark
from apexgen.jobs.toy.config import ToyConfig
from apexgen.jobs.toy.report import summarise

# The anchor pool of the ``ours`` preset itself, the toy default until 2026-12-04 (since then the toy's APEX
# anchor takes the regression row's pool, 4,096 x 50): the rows measured before keep it.
PRESET_POOL = {"regression_pairs": 2048, "regression_steps": 25}
# Each variant changes the default APEX settings (``ToyConfig().methods.apex``) by these keys.
VARIANTS: dict[str, dict] = {
    "default (preset ours)": {},
    "preset ours, the preset's anchor pool 2048 x 25 (the toy default until 2026-12-04)": {
        "preset": "ours",
        **PRESET_POOL,
    },
    # the toy default before issue 11: today's form with a 250-update fake warm-up and no regression anchor
    "former default (fake warm-up 250, no anchor)": {
        "weight_generator": 1.0,
        "fake_warmup": 250,
        "weight_regression": 0.0,
    },
    "no fake warm-up": {"fake_warmup": 0},
    "fake warm-up 500": {"fake_warmup": 500},
    "fake warm-up 1000": {"fake_warmup": 1000},
    "shift a=-0.5, b=1 (the paper's best cell)": {"condition_shift": {"a": -0.5, "b": 1.0}},
    "shift a=+0.5, b=0 (positive scale)": {"condition_shift": {"a": 0.5, "b": 0.0}},
    "negative time (TwinFlow key)": {"fake_key": "negative_time"},
    "no fake branch": {"weight_fake": 0.0, "slices": {"generator": 1.0, "anchor": 0.0, "fake": 0.0}},
    "form mix": {"generator_form": "mix", "slices": {"generator": 0.0, "anchor": 0.5, "fake": 0.5}},
    "form both": {"generator_form": "both", "slices": {"generator": 0.5, "anchor": 0.25, "fake": 0.25}},
    "with anchor rows": {"slices": {"generator": 0.5, "anchor": 0.25, "fake": 0.25}},
    "real branch = live model, with anchor": {
        "real_velocity": "live",
        "slices": {"generator": 0.5, "anchor": 0.25, "fake": 0.25},
    },
    "DMD normalisation of g": {"normalise": "dmd"},
    # the study of issue 11 (benchmarks/apex_study.md)
    "preset paper": {"preset": "paper"},
    "preset released": {"preset": "released"},
    "private fake network, 5 fake updates": {
        "fake_network": "private",
        "fake_updates": 5,
        "fake_warmup": 0,
        "slices": {"generator": 1.0, "anchor": 0.0, "fake": 0.0},
    },
    "private fake network, 5 fake updates, no key": {
        "fake_network": "private",
        "fake_updates": 5,
        "fake_warmup": 0,
        "fake_key": "none",
        "slices": {"generator": 1.0, "anchor": 0.0, "fake": 0.0},
    },
    "regression anchor 1": {"weight_regression": 1.0, "regression_pairs": 4096, "regression_steps": 50},
    "preset ours, fake warm-up 250": {"preset": "ours", "fake_warmup": 250, **PRESET_POOL},
    "preset ours, anchor pool 4096 x 50 steps (the regression row's)": {
        "preset": "ours",
        "regression_pairs": 4096,
        "regression_steps": 50,
    },
    "preset ours, regression anchor 8": {"preset": "ours", "weight_regression": 8.0, **PRESET_POOL},
    # the default with a 16x larger pool for its anchor: on orbit's continuous condition 4,096 pairs are sparse
    "default, anchor pool 65536 x 50": {"regression_pairs": 65536},
    "default, anchor pool 65536 x 50, regression anchor 8": {"regression_pairs": 65536, "weight_regression": 8.0},
    "default, anchor pool 65536 x 50, generator weight 2": {"regression_pairs": 65536, "weight_generator": 2.0},
    "default, anchor pool 65536 x 50, generator weight 1": {"regression_pairs": 65536, "weight_generator": 1.0},
}
# Rival methods with their toy defaults, run next to the variants from the same teachers and budget.
RIVALS = ("twinflow", "dmd2", "consistency", "regression")
# Rival variants: a rival method with some of its settings changed, as (method, keys).
RIVAL_VARIANTS: dict[str, tuple[str, dict]] = {
    # is the orbit gap of the one-step students the finite pool? (4,096 pairs seen 375 times each in 6,000 updates)
    "regression, pool 65536 x 50": ("regression", {"pairs": 65536}),
    "regression, pool 4096 x 50 (the toy default until 2026-12-07)": ("regression", {"pairs": 4096}),
}


def variant(label: str, config: ToyConfig) -> Variant:
    if label in RIVALS:
        return Variant(label, label, config.methods)
    method, changes = RIVAL_VARIANTS.get(label, ("apex", VARIANTS.get(label)))
    settings = getattr(config.methods, method)
    values = fill(type(settings), to_dict(settings), changes, f"methods.{method}")
    changed = build(type(settings), values, f"methods.{method}")
    return Variant(label, method, dataclasses.replace(config.methods, **{method: changed}))


def markdown(summary: list[dict]) -> str:
    """One line per (dataset, variant): the NFE-1 metrics and the NFE-2 sliced W2."""
    nfe2 = {(e["dataset"], e["variant"]): e for e in summary if e["nfe"] == 2}
    lines = [
        "| dataset | variant | sliced W2 (NFE 1) | MMD² | precision | coverage | sliced W2 (NFE 2) | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in summary:
        if e["method"] == "teacher" or e["nfe"] != 1:
            continue
        two = nfe2[(e["dataset"], e["variant"])]
        lines.append(
            f"| {e['dataset']} | {e['variant']} | {e['sw2_mean']:.4f} ± {e['sw2_std']:.4f} | "
            f"{e['mmd_mean']:.5f} | {e['precision_mean']:.3f} | {e['coverage_mean']:.2f} | "
            f"{two['sw2_mean']:.4f} ± {two['sw2_std']:.4f} | {e['train_seconds_mean']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/toy_ablation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=[*VARIANTS, *RIVAL_VARIANTS, *RIVALS], metavar="NAME"
    )
    parser.add_argument("--teacher-cache", type=Path, default=Path("runs/toy/teachers"))
    parser.add_argument("--workers", type=int, default=ToyConfig().workers)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    config = dataclasses.replace(
        ToyConfig(),
        seeds=tuple(args.seeds),
        workers=args.workers,
        eval=dataclasses.replace(ToyConfig().eval, teacher_nfe=(1, 50), student_nfe=(1, 2)),
    )
    started = time.perf_counter()
    results = run_toy_benchmark(config, [variant(label, config) for label in args.variants], args.teacher_cache)
    rows = [row for result in results for row in result.rows]
    summary = summarise(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "rows": rows,
        "summary": summary,
        "variants": {
            k: VARIANTS[k] if k in VARIANTS else RIVAL_VARIANTS.get(k, "the method's toy defaults")
            for k in args.variants
        },
        "config": to_dict(config),
        "wall_seconds": time.perf_counter() - started,
    }
    (args.out / "toy_ablation.json").write_text(json.dumps(record, indent=1))
    print(markdown(summary))


if __name__ == "__main__":
    main()
