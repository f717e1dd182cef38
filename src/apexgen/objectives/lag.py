"""The lag diagnostic of a self-adversarial fake branch (METHOD §5, issue 11): how well the fake branch
fits the generator's *current* samples, against a copy of it re-fit to them for a few updates.

A fake branch that tracks the generator scores about as well as its re-fit copy (ratio near 1); a ratio
well above 1 means it lags, and the generator direction g then pulls a prompt's samples together instead
of apart. The copy is thrown away; training is unaffected (its randomness comes from its own generator).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from apexgen.batch import Batch

if TYPE_CHECKING:
    from apexgen.objectives.apex import APEX


@dataclass
class LagReport:
    fake_loss: float  # L_fake of the fake branch on fresh generator samples
    refit_loss: float  # the same samples, after re-fitting a copy of the fake branch

    def as_dict(self) -> dict[str, float]:
        return {"lag_fake_loss": self.fake_loss, "lag_refit_loss": self.refit_loss, "lag_ratio": self.ratio}

    @property
    def ratio(self) -> float:
        return self.fake_loss / max(self.refit_loss, 1e-12)


def trainable(network: nn.Module) -> list[nn.Parameter]:
    own = getattr(network, "trainable_parameters", None)
    return own() if own else [p for p in network.parameters() if p.requires_grad]


def fake_branch_lag(objective: APEX, batch: Batch, rng: torch.Generator) -> LagReport:
    """L_fake now and after ``lag_refit_steps`` Adam updates of a copy of the network holding the fake
    branch, both on the same held-out draw; the copy trains on fresh draws of samples from the live student."""
    config = objective.config
    evaluation = rng.get_state()
    with torch.no_grad():
        now = objective.fake_loss(batch, rng).item()
    refit = copy.deepcopy(objective.fake_network)
    optimizer = torch.optim.Adam(trainable(refit), lr=config.lag_refit_lr)
    with torch.enable_grad():
        for _ in range(config.lag_refit_steps):
            optimizer.zero_grad(set_to_none=True)
            objective.fake_loss(batch, rng, network=refit).backward()
            optimizer.step()
    replay = torch.Generator(rng.device).set_state(evaluation)
    with torch.no_grad():
        after = objective.fake_loss(batch, replay, network=refit).item()
    return LagReport(now, after)
