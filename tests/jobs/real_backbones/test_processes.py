"""``apexgen train`` in two processes (torchrun, gloo on the CPU): the main process encodes the data into
the cache and the other reads it, each trains on its shard, one export is written."""

import json

from safetensors.torch import load_file

from apexgen.export import LORA_WEIGHTS
from tests.jobs.real_backbones.helpers import images, train_arguments
from tests.launch import torchrun


def test_two_processes_share_the_cache_and_write_one_export(tmp_path, models):
    out = tmp_path / "run"
    arguments = train_arguments(
        "sd3", models("sd3"), images(tmp_path / "data"), out, f"data.cache_dir={tmp_path / 'cache'}"
    )
    result = torchrun(["-m", "apexgen.cli", *arguments], cwd=tmp_path)
    assert result.stderr.count("encoding 6 records") == 1 and result.stderr.count("using 6 cached encoded") == 2
    assert result.stderr.count("exported LoRA") == 1
    assert json.loads((out / "checkpoints" / "step_0000002" / "trainer.json").read_text())["world_size"] == 2
    assert len(list((tmp_path / "cache").iterdir())) == 1 and load_file(out / "export" / LORA_WEIGHTS)
