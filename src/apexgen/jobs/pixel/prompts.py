"""The evaluation prompts of the text-to-image job, encoded once: the held-out templates and synonyms
(never seen in training), and the rows of a class × seed sample grid."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from apexgen.condition import TextCondition
from apexgen.data.fashion_mnist import CLASS_NAMES
from apexgen.data.prompts import HELD_OUT
from apexgen.text import TextEncoder, null_condition


@dataclass
class EvaluationPrompts:
    texts: tuple[str, ...]  # every held-out prompt, class by class
    labels: torch.Tensor  # (P,) the class of each prompt
    embeddings: TextCondition  # (P, L, D) rows in the order of ``texts``
    null: TextCondition  # one row: the empty prompt

    def assignment(self, count: int) -> torch.Tensor:
        """Prompt index of each of ``count`` images: the prompts in turn, so every prompt gets its share."""
        return torch.arange(count) % len(self.texts)

    def grid_rows(self) -> torch.Tensor:
        """One prompt per class (its first held-out prompt), for class × seed grids."""
        first = [self.texts.index(HELD_OUT.prompts(label)[0]) for label in range(len(CLASS_NAMES))]
        return torch.tensor(first)


def evaluation_prompts(encoder: TextEncoder) -> EvaluationPrompts:
    texts, labels = [], []
    for label in range(len(CLASS_NAMES)):
        for text in HELD_OUT.prompts(label):
            texts.append(text)
            labels.append(label)
    return EvaluationPrompts(tuple(texts), torch.tensor(labels), encoder.encode(texts), null_condition(encoder))
