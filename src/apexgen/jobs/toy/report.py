"""The toy benchmark's outputs: a terminal table (mean ± std over seeds), ``toy_results.json`` and a
scatter grid per dataset (rows: methods; columns: evaluation conditions)."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from apexgen.data.toy import toy_distribution

METRICS = ("sw2", "mmd", "coverage", "precision")
GRID_POINTS = 1500  # points per panel: enough to see the modes, few enough to see the density
METHOD_ORDER = ("teacher", "apex", "twinflow", "dmd2", "consistency", "regression")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds for every (dataset, variant, nfe)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["variant"], row["nfe"])].append(row)
    summary = []
    for (dataset, variant, nfe), members in groups.items():
        method = members[0]["method"]
        entry = {"dataset": dataset, "method": method, "variant": variant, "nfe": nfe, "seeds": len(members)}
        for key in (*METRICS, "train_seconds", "peak_memory_mb"):
            values = [m[key] for m in members]
            entry[f"{key}_mean"] = statistics.fmean(values)
            entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        entry["trainable_parameters"] = members[0]["trainable_parameters"]
        entry["held_parameters"] = members[0]["held_parameters"]
        summary.append(entry)
    order = {name: i for i, name in enumerate(METHOD_ORDER)}
    return sorted(summary, key=lambda e: (e["dataset"], order.get(e["method"], 99), e["variant"], e["nfe"]))


def format_table(summary: list[dict], floors: dict[str, list[float]]) -> str:
    width = max([12] + [len(e["variant"]) for e in summary])
    header = (
        f"{'dataset':8} {'method':{width}} {'NFE':>3}  {'sliced W2':>15}  {'MMD²':>17}  {'coverage':>8}  "
        f"{'precision':>9}  {'train s':>7}  {'peak MB':>7}  {'trained':>8}  {'held':>8}"
    )
    lines = [header, "-" * len(header)]
    for e in summary:
        lines.append(
            f"{e['dataset']:8} {e['variant']:{width}} {e['nfe']:>3}  {e['sw2_mean']:7.4f} ± {e['sw2_std']:.4f}  "
            f"{e['mmd_mean']:8.5f} ± {e['mmd_std']:.5f}  {e['coverage_mean']:8.3f}  {e['precision_mean']:9.3f}  "
            f"{e['train_seconds_mean']:7.1f}  {e['peak_memory_mb_mean']:7.1f}  {e['trainable_parameters']:8d}  "
            f"{e['held_parameters']:8d}"
        )
    for dataset, values in floors.items():
        lines.append(
            f"metric floor ({dataset}): sliced W2 between two exact samples of the same size = "
            f"{statistics.fmean(values):.4f}"
        )
    return "\n".join(lines)


def write_json(path: Path, rows: list[dict], summary: list[dict], extra: dict) -> None:
    path.write_text(json.dumps({"rows": rows, "summary": summary, **extra}, indent=1))


def plot_grids(out_dir: Path, samples: dict[str, dict[str, list[torch.Tensor]]], seed: int) -> list[Path]:
    """One PNG per dataset: a row per sampler, a column per evaluation condition, exact data on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for dataset, by_label in samples.items():
        distribution = toy_distribution(dataset)
        conditions = distribution.eval_conditions()
        exact = [
            distribution.sample(c.values.expand(GRID_POINTS, -1), torch.Generator().manual_seed(seed))
            for c in conditions
        ]
        panels = {"exact data": exact, **by_label}
        figure, axes = plt.subplots(
            len(panels),
            len(conditions),
            figsize=(2.2 * len(conditions), 2.0 * len(panels)),
            squeeze=False,
            sharex=True,
            sharey=True,
        )
        for row, (label, per_condition) in enumerate(panels.items()):
            for column, points in enumerate(per_condition):
                axis = axes[row][column]
                points = points[:GRID_POINTS]
                axis.scatter(points[:, 0], points[:, 1], s=1.5, alpha=0.4, color="C0" if row else "k")
                axis.set_xlim(-2.5, 2.5)
                axis.set_ylim(-2.5, 2.5)
                axis.set_xticks([])
                axis.set_yticks([])
                if row == 0:
                    axis.set_title(conditions[column].label, fontsize=8)
                if column == 0:
                    axis.set_ylabel(label, fontsize=8)
        figure.suptitle(f"toy benchmark: {dataset} (seed {seed})", fontsize=10)
        figure.tight_layout()
        path = out_dir / f"toy_grid_{dataset}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths
