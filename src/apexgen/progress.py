"""Progress bars of the long steps (training, data encoding, the teacher-endpoint pool, image generation,
Inception features): tqdm on stderr, switched off for the whole process by ``APEXGEN_PROGRESS=0`` (what
``apexgen --no-progress`` sets) and, for training, by ``train.progress=false``. Each step also logs one closing
line (what was done, how long it took, where the outputs are), which stays when the bar is off."""

from __future__ import annotations

import os
from collections.abc import Iterable

from tqdm.auto import tqdm

from apexgen.batch import DataStream

PROGRESS_VARIABLE = "APEXGEN_PROGRESS"  # "0": no progress bars


def progress_shown() -> bool:
    return os.environ.get(PROGRESS_VARIABLE, "1") != "0"


def progress_bar(
    iterable: Iterable | None = None, description: str = "", total: int | None = None, unit: str = "it", shown=True
) -> tqdm:
    """A bar that disappears when done (the closing log line replaces it); hidden when ``shown`` is False or
    progress is switched off."""
    return tqdm(
        iterable,
        desc=description,
        total=total,
        unit=unit,
        disable=not (shown and progress_shown()),
        leave=False,
        dynamic_ncols=True,
    )


class CountedStream(DataStream):
    """A data stream whose every batch drawn moves a progress bar by its rows."""

    def __init__(self, stream: DataStream, bar):
        self.stream, self.bar = stream, bar

    def __next__(self):
        batch = next(self.stream)
        self.bar.update(batch.size)
        return batch

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)
