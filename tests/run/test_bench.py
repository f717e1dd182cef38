"""``apexgen bench`` on a tiny backbone: every method on the same model and batches, one table."""

import json

import pytest
import torch

from apexgen.cli import main
from apexgen.run.bench import BenchSettings, run_bench


def test_bench_writes_the_table_of_every_method(tmp_path, capsys):
    assert main(["bench", "--backbone", "sd3", "--steps", "2", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "bench.md").read_text()
    assert table.splitlines()[2].startswith("| method | form | updates/step | s/step |")
    rows = {row["name"]: row for row in json.loads((tmp_path / "bench.json").read_text())["rows"]}
    assert list(rows) == ["flow_matching", "apex", "twinflow", "dmd2", "consistency"]
    assert "| apex | full | 1 |" in capsys.readouterr().out
    assert all(row["seconds_per_step"] > 0 and row["memory_method"] for row in rows.values())
    n = rows["flow_matching"]["held_parameters"]  # full fine-tuning: held = copies of the transformer
    assert [rows[name]["held_parameters"] // n for name in ("apex", "twinflow", "dmd2", "consistency")] == [2, 2, 3, 3]
    assert rows["dmd2"]["updates_per_step"] == 6 and rows["dmd2"]["trainable_parameters"] == 2 * n
    assert (tmp_path / "apex" / "ledger.jsonl").is_file()


def test_lora_bench_adds_dmd2_with_a_full_fake_score(tmp_path):
    rows = {row.name: row for row in run_bench(BenchSettings("z_image", lora=True, steps=2), tmp_path)}
    assert list(rows) == ["flow_matching", "apex", "twinflow", "dmd2", "dmd2_full_fake", "consistency"]
    lora = rows["apex"].trainable_parameters
    assert rows["dmd2"].trainable_parameters == 2 * lora  # one base, two adapters
    assert rows["dmd2"].held_parameters == rows["apex"].held_parameters + lora
    assert rows["dmd2_full_fake"].weights_mib > rows["dmd2"].weights_mib


def test_the_gpu_presets_are_about_seven_hundred_million_parameters():
    from accelerate import init_empty_weights

    from apexgen.backbones.registry import adapter_class
    from apexgen.run.bench_models import bench_model

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
