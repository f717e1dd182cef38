"""What ``apexgen sample`` draws, in either job: the request that the pixel job's grid
(``jobs/pixel/sample.py``) and the diffusers backbones' images (``jobs/real_backbones/sample.py``) share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SampleRequest:
    """``images`` images of ``prompt`` in ``steps`` steps of the stock pipeline from seed ``seed``, saved at
    ``out``, run on ``device``."""

    prompt: str
    out: Path
    steps: int = 1
    images: int = 1
    seed: int = 0
    device: str = "cpu"
