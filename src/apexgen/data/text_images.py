"""The text-to-image training stream: labelled images, each paired with a train prompt of its class.

Every train prompt is encoded once into a table (through the embedding cache); a batch looks its
prompts' rows up. The stream owns one ``torch.Generator`` that shuffles each epoch and draws the
prompts, and its ``state_dict`` restores the exact position: the batches after a resume are the ones an
uninterrupted run would have produced.
"""

from __future__ import annotations

import logging

import torch

from apexgen.batch import Batch, DataStream
from apexgen.condition import TextCondition
from apexgen.data.fashion_mnist import FashionMNISTConfig, LabelledImages, load_config_split
from apexgen.data.prompts import TRAIN, PromptSet, PromptTable
from apexgen.text import TextEncoder, null_condition

log = logging.getLogger(__name__)


class ClassPromptStream(DataStream):
    """Endless batches ``Batch(x0 (B, C, H, W), cond, null_cond)`` over shuffled epochs (the last partial
    batch of an epoch is dropped), with the prompt of each image drawn from its class's table rows."""

    def __init__(
        self,
        data: LabelledImages,
        table: PromptTable,
        embeddings: TextCondition,
        null: TextCondition,
        batch_size: int,
        seed: int,
    ):
        if len(data) < batch_size:
            raise ValueError(f"a batch of {batch_size} needs at least as many images, the data has {len(data)}")
        if embeddings.batch_size != len(table.prompts):
            raise ValueError(f"{embeddings.batch_size} embedding rows for {len(table.prompts)} prompts")
        self.data, self.table, self.embeddings = data, table, embeddings
        self.null = null.expand_rows(batch_size)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position = 0, 0
        self.start_epoch()

    def start_epoch(self) -> None:
        self.epoch_start_state = self.generator.get_state()
        self.order = torch.randperm(len(self.data), generator=self.generator)

    def __next__(self) -> Batch:
        if self.position + self.batch_size > len(self.data):
            self.epoch, self.position = self.epoch + 1, 0
            self.start_epoch()
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        labels = self.data.labels[index]
        rows = self.table.draw(labels, self.generator)
        return Batch(self.data.images[index], self.embeddings.rows(rows), self.null)

    def state_dict(self) -> dict:
        """JSON-ready: the epoch's shuffle is redrawn from the generator state at its start."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "epoch_start_generator": self.epoch_start_state.tolist(),
            "generator": self.generator.get_state().tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(torch.tensor(state["epoch_start_generator"], dtype=torch.uint8))
        self.start_epoch()
        self.epoch, self.position = state["epoch"], state["position"]
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))


def prompt_embeddings(encoder: TextEncoder, prompt_set: PromptSet = TRAIN) -> tuple[PromptTable, TextCondition]:
    """The table of a prompt set and its embeddings, one row per prompt."""
    table = PromptTable.of(prompt_set)
    return table, encoder.encode(table.prompts)


def fashion_mnist_stream(
    config: FashionMNISTConfig, encoder: TextEncoder, batch_size: int, seed: int
) -> ClassPromptStream:
    """The Fashion-MNIST train split with train prompts, for text-to-image training."""
    data = load_config_split(config, "train")
    table, embeddings = prompt_embeddings(encoder, TRAIN)
    log.info("Fashion-MNIST stream: %d images, %d train prompts", len(data), len(table.prompts))
    return ClassPromptStream(data, table, embeddings, null_condition(encoder), batch_size, seed)
