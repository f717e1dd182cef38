"""``apexgen toy --quick`` end to end: every method trains and is evaluated, the outputs are written, and
one-step APEX is clearly better than the one-step teacher."""

import json

import pytest

from apexgen.cli import main

ROW_KEYS = {
    "method",
    "nfe",
    "dataset",
    "seed",
    "sw2",
    "mmd",
    "coverage",
    "precision",
    "train_seconds",
    "peak_memory_mb",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    assert main(["toy", "--quick", "--out", str(out)]) == 0
    return out, json.loads((out / "toy_results.json").read_text())


def test_quick_run_writes_every_row_and_the_grids(quick_run):
    out, results = quick_run
    rows = results["rows"]
    assert all(ROW_KEYS <= set(row) for row in rows)
    for dataset in ("ring", "orbit"):
        have = {(r["method"], r["nfe"]) for r in rows if r["dataset"] == dataset}
        assert {("teacher", n) for n in (1, 2, 4, 8, 50)} <= have
        for method in ("apex", "twinflow", "dmd2", "consistency", "regression"):
            assert {(method, 1), (method, 2)} <= have
        assert (out / f"toy_grid_{dataset}.png").stat().st_size > 10_000
    assert (out / "teachers").is_dir()


def test_one_step_apex_is_clearly_better_than_the_one_step_teacher(quick_run):
    _, results = quick_run
    for dataset in ("ring", "orbit"):
        sw2 = {(r["method"], r["nfe"]): r["sw2"] for r in results["rows"] if r["dataset"] == dataset}
        assert sw2[("apex", 1)] < 0.6 * sw2[("teacher", 1)], (dataset, sw2)
