"""``apexgen bench`` on a tiny backbone: every method on the same model and batches, one table."""

import json

import pytest
import torch

from apexgen.cli import main
from apexgen.jobs.real_backbones.bench import run_bench
from apexgen.jobs.real_backbones.bench_settings import BenchSettings

FULL = ["flow_matching", "apex", "apex_paper", "apex_released", "twinflow", "dmd2", "consistency"]


def test_bench_writes_the_table_of_every_method(tmp_path, capsys):
    arguments = ["bench", "--backbone", "sd3", "--steps", "3", "--processes", "shared", "--out", str(tmp_path)]
    assert main(arguments) == 0
    table = (tmp_path / "bench.md").read_text()
    assert table.splitlines()[2].startswith("| method | form | updates/step | s/step |")
    rows = {row["name"]: row for row in json.loads((tmp_path / "bench.json").read_text())["rows"]}
    assert list(rows) == FULL
    assert "| apex | full | 1 |" in capsys.readouterr().out
    assert all(row["seconds_per_step"] > 0 and row["memory_method"] for row in rows.values())
    n = rows["flow_matching"]["held_parameters"]  # full fine-tuning: held = copies of the transformer
    held = [rows[name]["held_parameters"] // n for name in FULL[1:]]
    assert held == [2, 1, 2, 2, 3, 3]  # the paper's APEX reads no teacher: no frozen copy
    assert rows["dmd2"]["updates_per_step"] == 6 and rows["dmd2"]["trainable_parameters"] == 2 * n
    assert (tmp_path / "apex" / "ledger.jsonl").is_file()
    assert main(arguments) != 0  # the report is not replaced without --overwrite
    assert main([*arguments, "--overwrite", "--methods", "flow_matching"]) == 0


def test_lora_bench_adds_dmd2_with_a_full_fake_score(tmp_path):
    settings = BenchSettings("z_image", lora=True, steps=3, processes="shared")
    rows = {row.name: row for row in run_bench(settings, tmp_path)}
    assert list(rows) == [*FULL[:6], "dmd2_full_fake", "consistency"]
    lora = rows["apex"].trainable_parameters
    assert rows["dmd2"].trainable_parameters == 2 * lora  # one base, two adapters
    assert rows["dmd2"].held_parameters == rows["apex"].held_parameters + lora
    assert rows["dmd2_full_fake"].weights_mib > rows["dmd2"].weights_mib


def test_fresh_processes_measure_above_the_loaded_model_with_a_breakdown(tmp_path):
    methods = ("flow_matching", "apex", "apex_paper")
    rows = {row.name: row for row in run_bench(BenchSettings("sd3", steps=3, methods=methods), tmp_path)}
    assert list(rows) == list(methods)
    weights = {name: row.breakdown.weights_mib for name, row in rows.items()}
    model_mib = rows["flow_matching"].weights_mib
    assert weights["flow_matching"] == weights["apex_paper"] == 0  # the student is the loaded model
    assert weights["apex"] == pytest.approx(model_mib, rel=0.01)  # + the frozen teacher copy
    # ours frees the second AdamW state of its fake-branch warm-up once the warm-up (one step here) is over
    assert rows["apex"].breakdown.optimizer_mib == pytest.approx(rows["flow_matching"].breakdown.optimizer_mib)
    teacher_copy = rows["flow_matching"].trainable_parameters * 4 / 2**20  # fp32
    assert rows["apex"].dry_run_mib == pytest.approx(rows["flow_matching"].dry_run_mib + teacher_copy)
    assert all(row.breakdown.activations_mib > 0 and row.training_peak_mib > 0 for row in rows.values())
    assert "| apex_paper | 0.0 |" in (tmp_path / "bench.md").read_text()
    record = json.loads((tmp_path / "bench.json").read_text())["rows"][1]
    assert record["breakdown"]["predicted_mib"] == pytest.approx(rows["apex"].breakdown.predicted_mib)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--methods", "dmd3"], "--methods: unknown bench method(s) dmd3"),
        (["--size", "100m"], "size 100m is defined"),
        (["--batch", "2"], "needs at least 3 rows"),
    ],
)
def test_bench_refuses_bad_choices_before_work(tmp_path, caplog, arguments, message):
    out = tmp_path / "bench"
    assert main(["bench", "--backbone", "flux", *arguments, "--out", str(out)]) != 0
    assert message in caplog.text and not out.exists()


def test_the_cpu_memory_presets_are_about_a_hundred_million_parameters():
    from accelerate import init_empty_weights

    from apexgen.backbones.registry import adapter_class
    from apexgen.jobs.real_backbones.bench_models import bench_model

    for name in ("sd3", "qwen_image"):
        with init_empty_weights():
            transformer = adapter_class(name).transformer_class.from_config(bench_model(name, "100m").config)
        assert 1.0e8 < sum(p.numel() for p in transformer.parameters()) < 1.5e8, name


def test_the_gpu_presets_are_about_seven_hundred_million_parameters():
    from accelerate import init_empty_weights

    from apexgen.backbones.registry import adapter_class
    from apexgen.jobs.real_backbones.bench_models import bench_model

    for name in ("sd3", "flux", "qwen_image", "sana", "z_image"):
        with init_empty_weights():
            transformer = adapter_class(name).transformer_class.from_config(bench_model(name, "0.7b").config)
        assert 0.6e9 < sum(p.numel() for p in transformer.parameters()) < 0.72e9, name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_seven_hundred_million_parameter_bench_on_a_gpu(tmp_path):
    """The GPU measurement (bf16): every method in LoRA form on the 0.69B Qwen-Image model, batch 4, 512²."""
    rows = {row.name: row for row in run_bench(BenchSettings("qwen_image", "0.7b", True, device="cuda"), tmp_path)}
    assert rows["apex"].memory_method == "cuda_allocator_peak"
    assert rows["dmd2_full_fake"].weights_mib > rows["dmd2"].weights_mib > 0
