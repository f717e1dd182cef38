"""Batches from an encoded dataset: shuffled per epoch, optionally sharded over processes, and resumable
exactly.

Epoch e visits the samples in the order ``randperm(N)`` drawn from a generator seeded with
``seed · 2^32 + e``, so every process computes the same order without communicating and the position
in it is the whole state. With ``world_size`` W, the order is cut to ⌊N/W⌋·W entries and rank r takes
entries r, r + W, r + 2W, …: the ranks' shards of an epoch are disjoint, equally long, and after each
rank has taken p samples together they have used the first p·W entries (which lets a run resume with
another W). Batches run on across epoch boundaries: every batch has ``batch_size`` rows.

Prompt-only data (``dataset.real_data`` False) yields ``Batch.x0`` = zeros of the latent shape
(B, C, h, w): not data, only the shape of the noise to draw. Methods whose rows need real samples
(e.g. APEX's anchor rows, flow-matching or regression targets) must refuse such a stream; check
:attr:`EncodedStream.real_data`. Rows that need only conditions (generator and fake-score rows, DMD2)
work with it.

Conditions: each sample's embeddings are padded to the longest of the batch and of the null condition,
with a mask where the embeddings have one (Qwen-Image, SANA, Z-Image), so that ``cond`` and
``null_cond`` (the empty prompt, one row repeated) have the same shape and can be concatenated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from apexgen.batch import Batch, DataStream
from apexgen.condition import TextCondition
from apexgen.data.encoding import EncodedDataset, EncodedText
from apexgen.seeding import EPOCH_ORDER

log = logging.getLogger(__name__)


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    generator = EPOCH_ORDER.generator(seed, epoch)
    return torch.randperm(size, generator=generator)


def stack_texts(texts: Sequence[EncodedText], length: int) -> TextCondition:
    """Rows padded with zeros to ``length`` tokens, with a mask if any row has one."""
    first = texts[0]
    pooled = None if first.pooled is None else torch.stack([text.pooled for text in texts])
    if all(text.mask is None for text in texts):
        lengths = {text.tokens.shape[0] for text in texts}
        if lengths != {length}:
            raise ValueError(f"prompt embeddings without a mask must all have {length} tokens, got {sorted(lengths)}")
        return TextCondition(torch.stack([text.tokens for text in texts]), pooled)
    tokens = first.tokens.new_zeros(len(texts), length, first.tokens.shape[-1])
    mask = torch.zeros(len(texts), length, dtype=torch.bool)
    for row, text in enumerate(texts):
        count = text.tokens.shape[0]
        tokens[row, :count] = text.tokens
        mask[row, :count] = True if text.mask is None else text.mask
    return TextCondition(tokens, pooled, mask)


def batch_conditions(texts: Sequence[EncodedText], null: EncodedText) -> tuple[TextCondition, TextCondition]:
    """``cond`` of the rows and ``null_cond`` (the null prompt on every row), padded to one length."""
    length = max(text.tokens.shape[0] for text in [*texts, null])
    return stack_texts(texts, length), stack_texts([null], length).expand_rows(len(texts))


class EncodedStream(DataStream):
    """Endless batches of an :class:`EncodedDataset` for process ``rank`` of ``world_size``."""

    def __init__(self, dataset: EncodedDataset, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if len(dataset.samples) < world_size:
            raise ValueError(f"{len(dataset.samples)} samples cannot be shared by {world_size} processes")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.per_rank = len(dataset.samples) // world_size
        self.epoch, self.position = 0, 0  # samples this rank has taken from epoch ``epoch``
        self._shard: tuple[int, torch.Tensor] | None = None  # (epoch, this rank's indices of it)

    @property
    def real_data(self) -> bool:
        return self.dataset.real_data

    def shard(self) -> torch.Tensor:
        if self._shard is None or self._shard[0] != self.epoch:
            order = epoch_order(len(self.dataset.samples), self.seed, self.epoch)
            self._shard = (self.epoch, order[: self.per_rank * self.world_size][self.rank :: self.world_size])
        return self._shard[1]

    def next_indices(self) -> list[int]:
        indices: list[int] = []
        while len(indices) < self.batch_size:
            if self.position == self.per_rank:
                self.epoch, self.position = self.epoch + 1, 0
                log.debug("data stream: epoch %d begins", self.epoch)
            take = min(self.batch_size - len(indices), self.per_rank - self.position)
            indices += self.shard()[self.position : self.position + take].tolist()
            self.position += take
        return indices

    def __next__(self) -> Batch:
        samples = [self.dataset.samples[index] for index in self.next_indices()]
        if self.real_data:
            x0 = torch.stack([sample.latents for sample in samples])
        else:
            x0 = torch.zeros(len(samples), *self.dataset.latent_shape)
        cond, null_cond = batch_conditions([sample.text for sample in samples], self.dataset.null)
        return Batch(x0, cond, null_cond)

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "consumed": self.position * self.world_size,  # entries of the epoch's order used by all ranks
            "size": len(self.dataset.samples),
            "seed": self.seed,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict) -> None:
        size = len(self.dataset.samples)
        if state["size"] != size or state["seed"] != self.seed:
            raise ValueError(
                f"cannot resume the data stream: it was saved for {state['size']} samples with seed {state['seed']}, "
                f"this one has {size} samples with seed {self.seed} (the data or data.seed changed)"
            )
        if state["world_size"] != self.world_size:
            log.warning(
                "resuming the data stream of %d processes with %d: up to %d samples of the epoch are seen twice",
                state["world_size"],
                self.world_size,
                self.world_size - 1,
            )
        self.epoch, self.position = state["epoch"], state["consumed"] // self.world_size
