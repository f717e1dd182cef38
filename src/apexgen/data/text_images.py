"""The text-to-image training streams of the pixel-space job: labelled images, each paired with a train
prompt of its class (Fashion-MNIST), or captioned images with their own captions (an image–text folder).

Every prompt is encoded once into a table (through the embedding cache); a batch looks its prompts' rows
up. A stream owns one ``torch.Generator`` that shuffles each epoch (and draws the class prompts), and its
``state_dict`` restores the exact position: the batches after a resume are the ones an uninterrupted run
would have produced.
"""

from __future__ import annotations

import logging
from abc import abstractmethod

import torch
from torch import Tensor

from apexgen.batch import Batch, DataStream
from apexgen.condition import TextCondition
from apexgen.data.fashion_mnist import LabelledImages
from apexgen.data.folder_splits import CaptionedImages
from apexgen.data.prompts import TRAIN, PromptSet, PromptTable
from apexgen.text import TextEncoder, null_condition

log = logging.getLogger(__name__)


class ShuffledStream(DataStream):
    """Endless batches ``Batch(x0 (B, C, H, W), cond, null_cond)`` over shuffled epochs (the last partial
    batch of an epoch is dropped); ``prompt_rows`` says which rows of ``embeddings`` the images get."""

    def __init__(self, images: Tensor, embeddings: TextCondition, null: TextCondition, batch_size: int, seed: int):
        if len(images) < batch_size:
            raise ValueError(f"a batch of {batch_size} needs at least as many images, the data has {len(images)}")
        self.images, self.embeddings = images, embeddings
        self.null = null.expand_rows(batch_size)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position = 0, 0
        self.start_epoch()

    @abstractmethod
    def prompt_rows(self, index: Tensor) -> Tensor:
        """The embedding rows (B,) of the images ``index`` (B,)."""

    def start_epoch(self) -> None:
        self.epoch_start_state = self.generator.get_state()
        self.order = torch.randperm(len(self.images), generator=self.generator)

    def __next__(self) -> Batch:
        if self.position + self.batch_size > len(self.images):
            self.epoch, self.position = self.epoch + 1, 0
            self.start_epoch()
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return Batch(self.images[index], self.embeddings.rows(self.prompt_rows(index)), self.null)

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


class ClassPromptStream(ShuffledStream):
    """Labelled images, the prompt of each drawn from its class's table rows."""

    def __init__(
        self,
        data: LabelledImages,
        table: PromptTable,
        embeddings: TextCondition,
        null: TextCondition,
        batch_size: int,
        seed: int,
    ):
        if embeddings.batch_size != len(table.prompts):
            raise ValueError(f"{embeddings.batch_size} embedding rows for {len(table.prompts)} prompts")
        self.data, self.table = data, table
        super().__init__(data.images, embeddings, null, batch_size, seed)

    def prompt_rows(self, index: Tensor) -> Tensor:
        return self.table.draw(self.data.labels[index], self.generator)


class CaptionStream(ShuffledStream):
    """Captioned images, each with its own caption (``caption_rows`` maps an image to its caption's row)."""

    def __init__(
        self,
        images: Tensor,
        caption_rows: Tensor,
        embeddings: TextCondition,
        null: TextCondition,
        batch_size: int,
        seed: int,
    ):
        self.caption_rows = caption_rows
        super().__init__(images, embeddings, null, batch_size, seed)

    def prompt_rows(self, index: Tensor) -> Tensor:
        return self.caption_rows[index]


def prompt_embeddings(encoder: TextEncoder, prompt_set: PromptSet = TRAIN) -> tuple[PromptTable, TextCondition]:
    """The table of a prompt set and its embeddings, one row per prompt."""
    table = PromptTable.of(prompt_set)
    return table, encoder.encode(table.prompts)


def class_prompt_stream(data: LabelledImages, encoder: TextEncoder, batch_size: int, seed: int) -> ClassPromptStream:
    """Labelled images (the Fashion-MNIST train split) with train prompts, for text-to-image training."""
    table, embeddings = prompt_embeddings(encoder, TRAIN)
    log.info("Fashion-MNIST stream: %d images, %d train prompts", len(data), len(table.prompts))
    return ClassPromptStream(data, table, embeddings, null_condition(encoder), batch_size, seed)


def unique_rows(texts: tuple[str, ...]) -> tuple[tuple[str, ...], Tensor]:
    """The distinct texts in order of first appearance, and each text's row among them."""
    distinct = tuple(dict.fromkeys(texts))
    row = {text: i for i, text in enumerate(distinct)}
    return distinct, torch.tensor([row[text] for text in texts], dtype=torch.int64)


def caption_stream(data: CaptionedImages, encoder: TextEncoder, batch_size: int, seed: int) -> CaptionStream:
    """Captioned images with their own captions (each distinct caption encoded once)."""
    captions, rows = unique_rows(data.captions)
    log.info("caption stream: %d images, %d distinct captions", len(data), len(captions))
    return CaptionStream(data.images, rows, encoder.encode(captions), null_condition(encoder), batch_size, seed)
