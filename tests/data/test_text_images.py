import json

import pytest
import torch

from apexgen.condition import TextCondition
from apexgen.data.fashion_mnist import LabelledImages, load_split, split_paths
from apexgen.data.prompts import TRAIN, PromptTable
from apexgen.data.text_images import ClassPromptStream, class_prompt_stream, prompt_embeddings
from apexgen.text import NULL_PROMPT


class RowEncoder:
    """Embeddings that say which prompt they are: every value of row i is i + 1; the null prompt is 0."""

    max_tokens = 3
    identity = "row-encoder"

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, prompts):
        values = torch.tensor(
            [0.0 if p == NULL_PROMPT else float(len(self.seen) + i + 1) for i, p in enumerate(prompts)]
        )
        self.seen += list(prompts)
        return TextCondition(
            tokens=values[:, None, None].expand(-1, 3, 4).clone(),
            pooled=values[:, None].expand(-1, 4).clone(),
            mask=torch.ones(len(prompts), 3, dtype=torch.bool),
        )


def labelled(count: int = 50) -> LabelledImages:
    labels = torch.arange(count) % 10
    images = labels.float()[:, None, None, None].expand(-1, 1, 32, 32).clone()  # each image shows its label
    return LabelledImages(images, labels)


def stream(seed: int = 0, count: int = 50, batch_size: int = 16) -> ClassPromptStream:
    encoder = RowEncoder()
    table, embeddings = prompt_embeddings(encoder, TRAIN)
    null = encoder.encode([NULL_PROMPT])
    return ClassPromptStream(labelled(count), table, embeddings, null, batch_size, seed)


def same(a, b) -> bool:
    return (
        torch.equal(a.x0, b.x0) and torch.equal(a.cond.tokens, b.cond.tokens) and torch.equal(a.cond.mask, b.cond.mask)
    )


def test_batches_pair_images_with_prompts_of_their_class():
    data_stream = stream()
    table: PromptTable = data_stream.table
    for _ in range(5):
        batch = next(data_stream)
        assert batch.x0.shape == (16, 1, 32, 32) and batch.size == 16
        labels = batch.x0[:, 0, 0, 0].long()
        rows = batch.cond.pooled[:, 0].long() - 1
        assert (table.labels[rows] == labels).all()
        assert batch.cond.tokens.shape == (16, 3, 4) and (batch.null_cond.tokens == 0).all()
        assert batch.null_cond.batch_size == 16


def test_epochs_are_shuffled_permutations():
    data_stream = stream(count=48, batch_size=16)
    first = torch.cat([next(data_stream).x0 for _ in range(3)])
    second = torch.cat([next(data_stream).x0 for _ in range(3)])
    assert data_stream.epoch == 1
    assert torch.equal(first.flatten().sort().values, second.flatten().sort().values)
    assert not torch.equal(data_stream.order, torch.arange(48))


def test_exact_resume_across_epochs():
    uninterrupted = stream(seed=5)
    expected = [next(uninterrupted) for _ in range(8)]  # 3 batches per epoch: crosses two epoch boundaries
    interrupted = stream(seed=5)
    for _ in range(4):
        next(interrupted)
    state = json.loads(json.dumps(interrupted.state_dict()))  # as the checkpoint's trainer.json stores it
    resumed = stream(seed=123)
    resumed.load_state_dict(state)
    assert all(same(next(resumed), batch) for batch in expected[4:])


def test_seeds_differ():
    assert not same(next(stream(seed=0)), next(stream(seed=1)))


def test_too_small_data_is_an_error():
    with pytest.raises(ValueError, match="at least as many images"):
        stream(count=8, batch_size=16)


@pytest.mark.skipif(not split_paths("train")[0].is_file(), reason="Fashion-MNIST is not installed")
def test_fashion_mnist_stream_encodes_train_prompts_once():
    encoder = RowEncoder()
    data_stream = class_prompt_stream(load_split("train", limit=64), encoder, batch_size=8, seed=0)
    batch = next(data_stream)
    assert batch.x0.shape == (8, 1, 32, 32) and -1 <= batch.x0.min() and batch.x0.max() <= 1
    assert encoder.seen == list(PromptTable.of(TRAIN).prompts) + [NULL_PROMPT]
