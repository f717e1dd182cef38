"""What the data side hands the training side: batches of real samples with their conditions, from
streams whose position can be saved and restored (exact resume)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor

from apexgen.condition import Condition


@dataclass
class Batch:
    """Real samples x0 with their conditions and the matching unconditional (null) conditions."""

    x0: Tensor
    cond: Condition
    null_cond: Condition

    @property
    def size(self) -> int:
        return self.x0.shape[0]

    def rows(self, index: slice | Tensor) -> Batch:
        return Batch(self.x0[index], self.cond.rows(index), self.null_cond.rows(index))


class DataStream(Iterator[Batch]):
    """An endless iterator of batches whose position can be saved and restored."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
