import json

import pytest
import torch

from apexgen.data.encoding import EncodedDataset, EncodedSample, EncodedText
from apexgen.data.stream import EncodedStream, batch_conditions, epoch_order

LATENT_SHAPE = (2, 2, 2)


def dataset(size: int = 10, masked: bool = True, real_data: bool = True) -> EncodedDataset:
    """Sample i has latents filled with i and i % 3 + 1 tokens filled with i (so rows are identifiable)."""
    samples = []
    for i in range(size):
        length = i % 3 + 1 if masked else 3
        mask = torch.ones(length, dtype=torch.bool) if masked else None
        text = EncodedText(torch.full((length, 4), float(i)), torch.full((4,), float(i)), mask)
        samples.append(EncodedSample(text, torch.full(LATENT_SHAPE, float(i)) if real_data else None))
    null = EncodedText(torch.full((2 if masked else 3, 4), -1.0), torch.zeros(4), torch.ones(2, dtype=torch.bool))
    if not masked:
        null.mask = None
    return EncodedDataset(samples, null, LATENT_SHAPE, real_data)


def rows(batch) -> list[int]:
    return batch.x0[:, 0, 0, 0].long().tolist()


def test_each_epoch_visits_every_sample_once_in_a_new_order():
    stream = EncodedStream(dataset(10), batch_size=5, seed=3)
    epochs = [sorted(rows(next(stream)) + rows(next(stream))) for _ in range(3)]
    assert epochs == [list(range(10))] * 3
    orders = [epoch_order(10, 3, epoch).tolist() for epoch in range(3)]
    assert len({tuple(order) for order in orders}) == 3
    stream = EncodedStream(dataset(10), batch_size=5, seed=3)
    assert rows(next(stream)) + rows(next(stream)) == orders[0]


def test_batches_carry_on_across_epochs_and_conditions_match_their_rows():
    stream = EncodedStream(dataset(10), batch_size=4, seed=0)
    for _ in range(6):
        batch = next(stream)
        assert batch.size == 4 and batch.x0.shape == (4, *LATENT_SHAPE)
        ids = torch.tensor(rows(batch), dtype=torch.float32)
        assert torch.equal(batch.cond.tokens[:, 0, 0], ids) and torch.equal(batch.cond.pooled[:, 0], ids)
        assert batch.cond.tokens.shape == batch.null_cond.tokens.shape  # so that they can be concatenated
        assert torch.equal(batch.cond.mask.sum(1), (ids.long() % 3) + 1)
        assert (batch.null_cond.tokens[:, :2] == -1).all() and (batch.null_cond.tokens[:, 2:] == 0).all()


def test_resume_from_a_saved_state_gives_exactly_the_batches_of_an_uninterrupted_stream():
    uninterrupted = EncodedStream(dataset(10), batch_size=3, seed=7)
    for _ in range(5):
        next(uninterrupted)
    state = json.loads(json.dumps(uninterrupted.state_dict()))  # as the checkpoint stores it
    expected = [next(uninterrupted) for _ in range(6)]
    resumed = EncodedStream(dataset(10), batch_size=3, seed=7)
    resumed.load_state_dict(state)
    for want, got in zip(expected, (next(resumed) for _ in range(6)), strict=True):
        assert torch.equal(want.x0, got.x0)
        assert torch.equal(want.cond.tokens, got.cond.tokens) and torch.equal(want.cond.mask, got.cond.mask)
        assert torch.equal(want.null_cond.tokens, got.null_cond.tokens)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_take_disjoint_equal_shards_of_each_epoch(world_size):
    size, per_rank = 11, 11 // world_size
    streams = [EncodedStream(dataset(size), per_rank, seed=1, rank=r, world_size=world_size) for r in range(world_size)]
    for epoch in range(3):
        shards = [rows(next(stream)) for stream in streams]
        seen = [index for shard in shards for index in shard]
        assert len(set(seen)) == len(seen) == per_rank * world_size
        assert sorted(seen) == sorted(epoch_order(size, 1, epoch)[: per_rank * world_size].tolist())


def test_resuming_with_another_number_of_processes_continues_the_epoch_order():
    two = [EncodedStream(dataset(12), 2, seed=0, rank=r, world_size=2) for r in range(2)]
    used = [index for stream in two for index in rows(next(stream))]  # 4 of epoch 0's order
    one = EncodedStream(dataset(12), 4, seed=0)
    one.load_state_dict(two[0].state_dict())
    order = epoch_order(12, 0, 0).tolist()
    assert sorted(used) == sorted(order[:4]) and rows(next(one)) == order[4:8]


def test_a_state_from_other_data_or_another_seed_is_refused():
    state = EncodedStream(dataset(10), 2, seed=0).state_dict()
    with pytest.raises(ValueError, match="saved for 10 samples with seed 0, this one has 9 samples"):
        EncodedStream(dataset(9), 2, seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="the data or data.seed changed"):
        EncodedStream(dataset(10), 2, seed=1).load_state_dict(state)


def test_prompt_only_batches_hold_zero_latents_of_the_latent_shape():
    stream = EncodedStream(dataset(5, real_data=False), batch_size=3)
    batch = next(stream)
    assert not stream.real_data
    assert batch.x0.shape == (3, *LATENT_SHAPE) and not batch.x0.any()
    assert batch.cond.tokens.shape[0] == 3


def test_unmasked_embeddings_are_stacked_as_they_are():
    cond, null = batch_conditions([s.text for s in dataset(4, masked=False).samples], dataset(1, masked=False).null)
    assert cond.mask is None and null.mask is None and cond.tokens.shape == null.tokens.shape == (4, 3, 4)
    short = EncodedText(torch.zeros(2, 4), torch.zeros(4))
    with pytest.raises(ValueError, match="without a mask must all have 3 tokens, got"):
        batch_conditions([short], dataset(1, masked=False).null)


def test_bad_stream_arguments():
    with pytest.raises(ValueError, match="rank must be in"):
        EncodedStream(dataset(4), 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="3 samples cannot be shared by 4 processes"):
        EncodedStream(dataset(3), 1, rank=0, world_size=4)
