"""One call signature for every velocity network: F(x_t, t, cond, shift=None) -> v.

Adapters subclass :class:`FlowBackbone` and implement :meth:`velocity` (packing, time scaling, masks
live there and nowhere else). They name the module whose output the condition shift acts on
(``text_projection``; ``pooled_projection`` too where a pooled text vector enters) and, for methods that
need a discriminator head, the module whose output is a feature map (``feature_module``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from apexgen.condition import Condition
from apexgen.shift import ConditionShift


class FlowBackbone(nn.Module, ABC):
    text_projection: str = ""
    pooled_projection: str = ""  # the projection of a pooled text vector, for backbones that take one
    feature_module: str = ""
    feature_dim: int = 0

    @abstractmethod
    def velocity(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
        """The velocity F(x_t, t, c) in apexgen's convention (v = ε − x0, t = 1 at noise)."""

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition, shift: ConditionShift | None = None) -> Tensor:
        """F(x_t, t, c) or, with ``shift``, F(x_t, t, S(c))."""
        if shift is None:
            return self.velocity(x_t, t, cond)
        if shift.where == "embeds":
            return self.velocity(x_t, t, cond.shifted(shift, pooled=shift.pooled))
        modules = [self.get_submodule(self.text_projection)]
        if shift.pooled and self.pooled_projection:
            modules.append(self.get_submodule(self.pooled_projection))
        with shift.hooked(*modules):
            return self.velocity(x_t, t, cond)

    def sharding_root(self) -> nn.Module:
        """The module every caller of the network enters: FSDP shards the network's blocks on their own and
        everything else at this root (``apexgen.train.sharding``)."""
        return self

    def pool_features(self, output) -> Tensor:
        """Turn the output of ``feature_module`` into one feature vector per sample (B, D)."""
        features = output[0] if isinstance(output, tuple) else output
        return features.flatten(1, -2).mean(1) if features.dim() > 2 else features

    def velocity_and_features(self, x_t: Tensor, t: Tensor, cond: Condition) -> tuple[Tensor, Tensor]:
        """F(x_t, t, c) and the pooled output of ``feature_module`` (B, feature_dim) from one forward."""
        captured = []
        module = self.get_submodule(self.feature_module)
        handle = module.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
        try:
            velocity = self(x_t, t, cond)
        finally:
            handle.remove()
        return velocity, self.pool_features(captured[0])
