"""Tests in several processes: ``torchrun --standalone`` (gloo on the CPU), one thread each, offline, with
this checkout's code (and ``tests`` importable)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def torchrun(arguments: list[str], processes: int = 2, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=<processes> <arguments>``; fails the test on a non-zero exit."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    result = subprocess.run([*command, *arguments], env=env, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
