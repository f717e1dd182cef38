"""``apexgen train`` in two processes (torchrun, gloo on the CPU): the main process encodes the data into
the cache and the other reads it, each trains on its shard, one export is written."""

import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from apexgen.export import LORA_WEIGHTS
from tests.run.helpers import images, train_arguments

ROOT = Path(__file__).parents[2]


def test_two_processes_share_the_cache_and_write_one_export(tmp_path, models):
    out = tmp_path / "run"
    arguments = train_arguments(
        "sd3", models("sd3"), images(tmp_path / "data"), out, f"data.cache_dir={tmp_path / 'cache'}"
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "apexgen.cli", *arguments]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("encoding 6 records") == 1 and result.stderr.count("using 6 cached encoded") == 2
    assert result.stderr.count("exported LoRA") == 1
    assert json.loads((out / "checkpoints" / "step_0000002" / "trainer.json").read_text())["world_size"] == 2
    assert len(list((tmp_path / "cache").iterdir())) == 1 and load_file(out / "export" / LORA_WEIGHTS)
