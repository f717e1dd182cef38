"""The condition shift S(c) = a·c + b (METHOD §2, paper Eq. 9).

A flow model queried with S(c) is a second velocity field inside the same network; APEX trains it on
the model's own samples to play DMD's "fake score". The shift is fixed (not learned) and acts either on
the backbone's *projected* text tokens, through a forward hook on the backbone's own text-projection
module (the released code's choice), or on the condition embeddings given to the backbone. The
backbone's code is never touched: with no shift applied the model is exactly the stock model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

ShiftLocation = Literal["projected", "embeds"]


@dataclass(frozen=True)
class ConditionShift:
    """S(c) = a·c + b. ``where``: ``projected`` (hook on the text projection) or ``embeds``."""

    # the released code's S(c) = −c: in the toy ablation (benchmarks/toy.md) it matched or beat the paper's
    # a = −0.5, b = 1 on every dataset and seed
    a: float = -1.0
    b: float = 0.0
    where: ShiftLocation = "projected"
    # Also shift the pooled text vector of backbones that have one (SD3, FLUX: it drives AdaLN), so that S acts
    # on every text input (METHOD §2); off: the token stream alone, as the released code does.
    pooled: bool = False

    def __post_init__(self):
        if self.where not in ("projected", "embeds"):
            raise ValueError(f"where must be 'projected' or 'embeds', got {self.where!r}")

    def __call__(self, condition: Tensor) -> Tensor:
        return self.a * condition + self.b

    @contextmanager
    def hooked(self, *modules: nn.Module) -> Iterator[None]:
        """Apply S to the output of each of ``modules`` for the duration of the block, then remove the hooks."""

        def shift_output(_module: nn.Module, _inputs, output):
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"the condition shift hooks a module returning a tensor; "
                    f"{type(_module).__name__} returned {type(output).__name__}"
                )
            return self(output)

        handles = [module.register_forward_hook(shift_output) for module in modules]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
