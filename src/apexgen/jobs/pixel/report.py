"""The text-to-image report: report.md (table, grids, plots) next to report.json, a plot of FID against
NFE for the teacher and the students, and the students' training curves."""

from __future__ import annotations

import json
from pathlib import Path

from apexgen.markdown import markdown_table


def table(rows: list[dict]) -> str:
    header = (
        "method", "NFE", "FID ↓", "accuracy ↑", "diversity", "pixel diversity", "near-duplicates", "s / image",
        "train s", "peak MB",
    )  # fmt: skip
    cells = [
        (
            r["method"],
            r["nfe"],
            f"{r['fid']:.2f}",
            "—" if r["accuracy"] is None else f"{r['accuracy']:.3f}",
            f"{r['diversity']:.2f}",
            f"{r['pixel_diversity']:.2f}",
            f"{100 * r['near_duplicates']:.1f} %",
            f"{r['seconds_per_image']:.4f}",
            f"{r['train_seconds']:.0f}",
            f"{r['peak_memory_mb']:.0f}",
        )  # fmt: skip
        for r in rows
    ]
    return markdown_table(header, cells)


def plot_fid_against_nfe(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    for method in dict.fromkeys(r["method"] for r in rows):
        points = sorted((r["nfe"], r["fid"]) for r in rows if r["method"] == method)
        axis.plot(*zip(*points, strict=True), marker="o", label=method)
    axis.set_xscale("log")
    axis.set_xlabel("NFE (sampling steps)")
    axis.set_ylabel("FID (lower is better)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_training_curves(histories: dict[str, list[dict]], path: Path) -> Path:
    """One panel per method: every logged loss term against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3), squeeze=False)
    for axis, (method, history) in zip(axes[0], histories.items(), strict=True):
        steps = [h["step"] for h in history]
        for key in sorted({k for h in history for k in h if k != "step" and "fraction" not in k}):
            axis.plot(steps, [h.get(key, float("nan")) for h in history], label=key.split("/")[-1])
        axis.set_title(method)
        axis.set_xlabel("step")
        axis.set_yscale("log")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_report(report: dict, histories: dict[str, list[dict]], out: Path, command: str) -> Path:
    """report.md beside report.json, with the table, the grids and the plots."""
    rows = report["rows"]
    fid_plot = plot_fid_against_nfe(rows, out / "fid_vs_nfe.png")
    accuracy = report["classifier_test_accuracy"]
    adherence = (
        "accuracy = the in-project classifier's agreement with the prompt's class (its own test accuracy: "
        f"{accuracy:.3f})"
        if accuracy is not None
        else "no accuracy (the data has no classes)"
    )
    lines = [
        f"# apexgen text-to-image report ({report['data']}, held-out prompts)",
        "",
        f"Command: `{command}`",
        "",
        f"FID against {report['reference']} ({report['reference_samples']} images) with {report['samples']} "
        f"generated images per row (bundled Inception-v3); {adherence}; diversity = mean pairwise Inception-feature "
        "distance within a prompt, pixel diversity the same in pixels, near-duplicates the share of a prompt's pairs "
        f"closer than {report['near_duplicate_distance']:.3g} in pixels (rare for the teacher at NFE 50; a collapsed "
        f"generator scores high); the teacher samples with CFG {report['guidance']} (two network calls per step), "
        "the students with guidance off.",
        "",
        table(rows),
        "",
        f"![FID against NFE]({fid_plot.name})",
        "",
    ]
    if histories:
        curves = plot_training_curves(histories, out / "training_curves.png")
        lines += [f"![training curves]({curves.name})", ""]
    for grid in sorted(out.glob("grid_*.png")):
        lines += [
            f"**{grid.stem.removeprefix('grid_')}** (rows: {'classes' if accuracy is not None else 'prompts'}; "
            "columns: seeds)",
            "",
            f"![{grid.stem}]({grid.name})",
            "",
        ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return path
