"""Conditions: the c in F(x_t, t, c), as batches of tensors that can be sliced, merged and moved.

Every condition type is a dataclass whose fields are tensors with the batch in dimension 0 (or None).
The field named by ``shift_field`` is what the condition shift acts on when it is applied to the
embeddings rather than inside the backbone (``ConditionShift.where == "embeds"``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

C = TypeVar("C", bound="Condition")


@dataclass
class Condition:
    shift_field: ClassVar[str]
    pooled_fields: ClassVar[tuple[str, ...]] = ()

    def _map(self: C, fn) -> C:
        values = {
            f.name: (None if getattr(self, f.name) is None else fn(f.name, getattr(self, f.name)))
            for f in dataclasses.fields(self)
        }
        return type(self)(**values)

    @property
    def batch_size(self) -> int:
        return getattr(self, self.shift_field).shape[0]

    def rows(self: C, index: slice | Tensor) -> C:
        """The conditions of the rows ``index`` (a slice or an index tensor)."""
        return self._map(lambda _, value: value[index])

    def where(self: C, mask: Tensor, other: C) -> C:
        """Row-wise choice: ``other`` where ``mask`` (B,) is True, ``self`` elsewhere."""

        def choose(name: str, value: Tensor) -> Tensor:
            replacement = getattr(other, name).to(value.dtype)
            row_mask = mask.reshape(mask.shape + (1,) * (value.dim() - 1))
            return torch.where(row_mask, replacement, value)

        return self._map(choose)

    def to(self: C, device=None, dtype=None) -> C:
        """Move to ``device``; floating-point fields also to ``dtype`` (masks keep theirs)."""
        return self._map(lambda _, value: value.to(device=device, dtype=dtype if value.is_floating_point() else None))

    def with_shift_field(self: C, value: Tensor) -> C:
        return dataclasses.replace(self, **{self.shift_field: value})

    def shifted(self: C, shift, pooled: bool = False) -> C:
        """S applied to the field ``shift_field`` (and, with ``pooled``, to every ``pooled_fields``)."""
        changed = {self.shift_field: shift(getattr(self, self.shift_field))}
        for name in self.pooled_fields if pooled else ():
            if getattr(self, name) is not None:
                changed[name] = shift(getattr(self, name))
        return dataclasses.replace(self, **changed)

    @classmethod
    def cat(cls: type[C], conditions: list[C]) -> C:
        first = conditions[0]
        values = {
            f.name: (
                None if getattr(first, f.name) is None else torch.cat([getattr(c, f.name) for c in conditions], dim=0)
            )
            for f in dataclasses.fields(first)
        }
        return type(first)(**values)

    def expand_rows(self: C, batch_size: int) -> C:
        """Repeat a one-row condition (e.g. the empty prompt) to ``batch_size`` rows."""
        return self._map(lambda _, value: value.expand(batch_size, *value.shape[1:]).contiguous())


@dataclass
class VectorCondition(Condition):
    """A condition vector per sample (the toy benchmark: one-hot classes or continuous vectors)."""

    shift_field: ClassVar[str] = "values"
    values: Tensor


@dataclass
class TextCondition(Condition):
    """Prompt embeddings: token hidden states for cross-attention, a pooled vector, a token mask."""

    shift_field: ClassVar[str] = "tokens"
    pooled_fields: ClassVar[tuple[str, ...]] = ("pooled",)
    tokens: Tensor
    pooled: Tensor | None = None
    mask: Tensor | None = None

    def padded(self, length: int) -> TextCondition:
        """The same prompts with ``length`` token positions; added positions are zeros and masked out."""
        extra = length - self.tokens.shape[1]
        if extra <= 0:
            return self
        batch, current = self.tokens.shape[0], self.tokens.shape[1]
        mask = (
            self.mask
            if self.mask is not None
            else torch.ones(batch, current, dtype=torch.bool, device=self.tokens.device)
        )
        tokens = torch.nn.functional.pad(self.tokens, (0, 0, 0, extra))
        return TextCondition(tokens, self.pooled, torch.nn.functional.pad(mask, (0, extra), value=False))

    @classmethod
    def cat(cls, conditions: list[TextCondition]) -> TextCondition:
        """Rows of prompts of different token lengths are padded to the longest (with masks) first."""
        longest = max(c.tokens.shape[1] for c in conditions)
        if any(c.tokens.shape[1] != longest for c in conditions):
            conditions = [c.padded(longest) for c in conditions]
        return super().cat(conditions)
