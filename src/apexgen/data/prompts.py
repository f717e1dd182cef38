"""Prompts for class-labelled images: templates × synonyms, in a TRAIN set and a disjoint HELD-OUT set.

Training draws a prompt of the image's class from the train set; evaluation uses only held-out prompts,
whose wording (templates and synonyms) the model never saw. Each synonym is a whole noun phrase with
its article ("a sneaker", "a pair of running shoes", "sneakers"), so templates need no grammar.
Disjointness is checked when the module is imported: no held-out string can be a train string.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Per Fashion-MNIST class, in label order: (train synonyms, held-out synonyms).
SYNONYMS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("a t-shirt", "a tee", "a short-sleeved top", "a top"), ("a crew-neck tee", "a plain tank top")),
    (("trousers", "a pair of pants", "a pair of jeans", "slacks"), ("a pair of chinos", "long trousers")),
    (("a pullover", "a sweater", "a jumper", "a knitted sweater"), ("a wool jumper", "a cosy pullover")),
    (("a dress", "a summer dress", "an evening dress", "a long dress"), ("a frock", "a sundress")),
    (("a coat", "a jacket", "an overcoat", "a winter coat"), ("a parka", "a raincoat")),
    (("a sandal", "a pair of sandals", "sandals", "a summer sandal"), ("a strappy sandal", "open-toed sandals")),
    (("a shirt", "a button-up shirt", "a long-sleeved shirt", "a blouse"), ("a dress shirt", "a flannel shirt")),
    (("a sneaker", "sneakers", "a pair of running shoes", "a pair of sneakers"), ("a trainer", "athletic shoes")),
    (("a bag", "a handbag", "a purse", "a shopping bag"), ("a tote bag", "a leather satchel")),
    (("an ankle boot", "a pair of ankle boots", "a short boot", "ankle boots"), ("a chelsea boot", "a bootie")),
)
TRAIN_TEMPLATES = (
    "{}",
    "a photo of {}",
    "a picture of {}",
    "an image of {}",
    "a product photo of {}",
    "a grayscale photo of {}",
)
HELD_OUT_TEMPLATES = ("a close-up photo of {}", "a small black and white image of {}", "{}, studio shot")


@dataclass(frozen=True)
class PromptSet:
    """Templates × per-class synonyms; ``prompts(label)`` lists all of a class's prompts in a fixed order."""

    templates: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]  # per class label

    @property
    def classes(self) -> int:
        return len(self.synonyms)

    def prompts(self, label: int) -> tuple[str, ...]:
        return tuple(template.format(noun) for noun in self.synonyms[label] for template in self.templates)

    def all_prompts(self) -> tuple[str, ...]:
        return tuple(prompt for label in range(self.classes) for prompt in self.prompts(label))


TRAIN = PromptSet(TRAIN_TEMPLATES, tuple(train for train, _ in SYNONYMS))
HELD_OUT = PromptSet(HELD_OUT_TEMPLATES, tuple(held_out for _, held_out in SYNONYMS))


@dataclass(frozen=True)
class PromptTable:
    """The prompts of a set, flattened class by class: rows ``offsets[k] : offsets[k] + counts[k]``
    belong to class k. Row indices address a precomputed embedding table."""

    prompts: tuple[str, ...]
    labels: Tensor  # (P,) int64
    offsets: Tensor  # (K,) int64
    counts: Tensor  # (K,) int64

    @classmethod
    def of(cls, prompt_set: PromptSet) -> PromptTable:
        per_class = [prompt_set.prompts(label) for label in range(prompt_set.classes)]
        counts = torch.tensor([len(prompts) for prompts in per_class], dtype=torch.int64)
        offsets = torch.cumsum(counts, 0) - counts
        labels = torch.repeat_interleave(torch.arange(prompt_set.classes), counts)
        return cls(tuple(p for prompts in per_class for p in prompts), labels, offsets, counts)

    def draw(self, labels: Tensor, rng: torch.Generator) -> Tensor:
        """Row indices (B,) of one uniformly drawn prompt of each label's class."""
        uniform = torch.rand(labels.shape[0], generator=rng, dtype=torch.float64)
        choice = (uniform * self.counts[labels]).long().clamp(max=self.counts[labels] - 1)
        return self.offsets[labels] + choice


def draw_train_prompt(label: int, rng: torch.Generator) -> str:
    """One train prompt for class ``label``, drawn uniformly with ``generator``."""
    prompts = TRAIN.prompts(label)
    return prompts[int(torch.randint(len(prompts), (1,), generator=rng))]


def held_out_prompts(label: int) -> tuple[str, ...]:
    """The fixed evaluation prompts of class ``label`` (never produced by the train set)."""
    return HELD_OUT.prompts(label)


def check_disjoint(train: PromptSet, held_out: PromptSet) -> None:
    """No held-out prompt is a train prompt, and no synonym names two classes."""
    overlap = sorted(set(train.all_prompts()) & set(held_out.all_prompts()))
    if overlap:
        raise ValueError(f"held-out prompts also appear in the train set: {overlap[:5]}")
    nouns = [noun for prompt_set in (train, held_out) for synonyms in prompt_set.synonyms for noun in synonyms]
    repeated = sorted({noun for noun in nouns if nouns.count(noun) > 1})
    if repeated:
        raise ValueError(f"synonyms used twice (for two classes, or in both sets): {repeated}")


check_disjoint(TRAIN, HELD_OUT)
