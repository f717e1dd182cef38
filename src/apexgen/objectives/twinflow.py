"""TwinFlow: APEX's self-adversarial scheme with the fake branch keyed by negative time F_θ(x, −t, c)
instead of a shifted condition (the predecessor of APEX; arXiv 2512.05150). Its default is the released
code's objective (METHOD §4) with the negative-time key alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apexgen.objectives.apex import APEX
from apexgen.objectives.apex_config import RELEASED, APEXConfig, FakeKey

TWINFLOW_PRESETS = {"released": {**RELEASED, "fake_key": "negative_time"}}


@dataclass(frozen=True)
class TwinFlowConfig(APEXConfig):
    fake_key: FakeKey = "negative_time"

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return TWINFLOW_PRESETS


class TwinFlow(APEX):
    """Identical training rows and terms; only the key of the fake branch differs."""
