"""The evaluation prompts of the pixel-space job, encoded once: Fashion-MNIST's held-out templates and
synonyms (never seen in training), or the captions of an image–text folder's held-out split; and the rows
of a sample grid."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from apexgen.condition import TextCondition
from apexgen.data.fashion_mnist import CLASS_NAMES
from apexgen.data.folder_splits import CaptionedImages
from apexgen.data.prompts import HELD_OUT
from apexgen.data.text_images import unique_rows
from apexgen.text import TextEncoder, null_condition

GRID_ROWS = 10  # prompts in a sample grid: one per class (the first ten classes), or the first captions


@dataclass
class EvaluationPrompts:
    texts: tuple[str, ...]  # every evaluation prompt (Fashion-MNIST: class by class)
    labels: torch.Tensor | None  # (P,) the class of each prompt; None when the data has no classes
    embeddings: TextCondition  # (P, L, D) rows in the order of ``texts``
    null: TextCondition  # one row: the empty prompt
    grid: torch.Tensor  # the prompts of a sample grid's rows

    def used(self, count: int) -> int:
        """How many prompts ``count`` images cover: all, or as many as give each at least two images
        (diversity within a prompt needs two)."""
        return min(len(self.texts), max(count // 2, 1))

    def assignment(self, count: int) -> torch.Tensor:
        """Prompt index of each of ``count`` images: the prompts in turn, so every prompt gets its share."""
        return torch.arange(count) % self.used(count)

    def grid_rows(self) -> torch.Tensor:
        return self.grid


def evaluation_prompts(encoder: TextEncoder) -> EvaluationPrompts:
    """Fashion-MNIST's held-out prompts; a grid row per class (its first held-out prompt)."""
    texts, labels = [], []
    for label in range(len(CLASS_NAMES)):
        for text in HELD_OUT.prompts(label):
            texts.append(text)
            labels.append(label)
    grid = torch.tensor([texts.index(HELD_OUT.prompts(label)[0]) for label in range(len(CLASS_NAMES))])
    return EvaluationPrompts(tuple(texts), torch.tensor(labels), encoder.encode(texts), null_condition(encoder), grid)


def caption_prompts(encoder: TextEncoder, held_out: CaptionedImages) -> EvaluationPrompts:
    """The distinct captions of a folder's held-out split, each with the class of its first image; grid rows:
    the first caption of each class, or the first captions when there are no classes."""
    texts, rows = unique_rows(held_out.captions)
    first = [int((rows == i).nonzero()[0]) for i in range(len(texts))]
    labels = held_out.labels[first] if held_out.labels is not None else None
    if labels is None:
        grid = torch.arange(min(GRID_ROWS, len(texts)))
    else:
        grid = torch.tensor([int((labels == k).nonzero()[0]) for k in labels.unique()[:GRID_ROWS]])
    return EvaluationPrompts(texts, labels, encoder.encode(texts), null_condition(encoder), grid)
