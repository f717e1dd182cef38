"""TwinFlow: APEX's self-adversarial scheme with the fake branch keyed by negative time F_θ(x, −t, c)
instead of a shifted condition (the predecessor of APEX; arXiv 2512.05150)."""

from __future__ import annotations

from dataclasses import dataclass

from apexgen.objectives.apex import APEX, APEXConfig, FakeKey


@dataclass(frozen=True)
class TwinFlowConfig(APEXConfig):
    fake_key: FakeKey = "negative_time"


class TwinFlow(APEX):
    """Identical training rows and terms; only the key of the fake branch differs."""
