"""The memory and time ledger: per training step, seconds spent in each named section (data, each loss
term, backward, optimiser) and the step's peak memory above its start (CUDA allocator on GPU, process RSS
on CPU), and the highest absolute peak of the run."""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from apexgen.memory import PeakMemory


class TimeLedger:
    """``with ledger.section("fake"): ...`` adds the block's wall time to this step's "fake" entry.
    On CUDA the device is synchronised at both ends, so a section's time is its own kernels' time."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.current: dict[str, float] = defaultdict(float)
        self.steps: list[dict[str, float]] = []
        self.peak_bytes = 0  # the highest absolute peak of any step
        self.step_peak_mib = 0.0  # the highest peak of any step above that step's own starting level

    def synchronise(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        self.synchronise()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.synchronise()
            self.current[name] += time.perf_counter() - started

    @contextmanager
    def step(self, index: int) -> Iterator[None]:
        """Measure one training step: its sections and its peak memory."""
        self.current = defaultdict(float)
        started = time.perf_counter()
        with PeakMemory(self.device) as peak:
            yield
        self.synchronise()
        self.peak_bytes = max(self.peak_bytes, peak.peak_bytes)
        self.step_peak_mib = max(self.step_peak_mib, peak.mib)
        record = {"step": index, "seconds": time.perf_counter() - started, "peak_memory_mb": peak.mib}
        record.update({f"time/{name}": seconds for name, seconds in self.current.items()})
        self.steps.append(record)

    def summary(self) -> dict[str, float]:
        """Mean of every timed quantity over the recorded steps (the first, warm-up step excluded when
        there are others) and the largest step peak."""
        steps = self.steps[1:] if len(self.steps) > 1 else self.steps
        if not steps:
            return {}
        keys = sorted({key for record in steps for key in record if key.startswith("time/") or key == "seconds"})
        summary = {key: statistics.fmean(record.get(key, 0.0) for record in steps) for key in keys}
        summary["peak_memory_mb"] = max(record["peak_memory_mb"] for record in self.steps)
        summary["steps"] = len(self.steps)
        return summary

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "ledger.jsonl", "w") as file:
            for record in self.steps:
                file.write(json.dumps(record) + "\n")
        (directory / "ledger_summary.json").write_text(json.dumps(self.summary(), indent=1))


class NullLedger(TimeLedger):
    """The ledger objectives hold until a trainer attaches its own: sections cost nothing."""

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        yield
