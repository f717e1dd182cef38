"""Peak memory of a block of work: the CUDA allocator's peak on a GPU, the resident set's high-water
mark (VmHWM, reset through /proc/self/clear_refs) on a CPU. Reported in MiB above the level at entry."""

from __future__ import annotations

import resource
from pathlib import Path

import torch

MIB = 2**20
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_PEAK_RSS = "5"  # writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0)


def resident_kib(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_bytes(device: torch.device) -> int:
    """Memory in use now: allocated CUDA memory, or the process's resident set."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return (resident_kib("VmRSS") or 0) * 1024


class PeakMemory:
    """``with PeakMemory(device) as peak: ...``; then ``peak.mib`` is the peak above the entry level and
    ``peak.peak_bytes`` the absolute peak. Entering resets the peak counter, so nested measurements see only
    their own block: an outer measurement must combine the inner ones (see ``TimeLedger``)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.mib = 0.0
        self.peak_bytes = 0
        self.method = ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda_allocator_peak"
        else:
            self.method = self.reset_resident_peak()
        self.start = current_bytes(self.device)
        return self

    def reset_resident_peak(self) -> str:
        try:
            CLEAR_REFS.write_text(RESET_PEAK_RSS)
            return "process_rss_peak"
        except OSError:
            return "process_rss_peak_since_start"  # cannot reset: ru_maxrss over the process lifetime

    def current_peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        peak_kib = resident_kib("VmHWM") if self.method == "process_rss_peak" else None
        if peak_kib is None:
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak_kib * 1024

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.peak_bytes = self.current_peak_bytes()
        self.mib = max(self.peak_bytes - self.start, 0) / MIB
