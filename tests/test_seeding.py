import torch

from apexgen import seeding
from apexgen.seeding import Stream, seeded_global_rng


def test_draws_inside_come_from_the_seed_and_the_callers_state_is_restored():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with seeded_global_rng(7):
        first = torch.rand(4)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.rand(10)  # another global state: the block still draws the same
    with seeded_global_rng(7):
        again = torch.rand(4)
    with seeded_global_rng(8):
        other = torch.rand(4)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_stream_seeds_its_generators_offset_plus_seed_times_per_seed_plus_index_times_stride():
    stream = Stream(offset=5, per_seed=100, stride=7)
    assert stream.seed(3, 2) == 5 + 300 + 14
    assert torch.equal(
        torch.rand(3, generator=stream.generator(3, 2)), torch.rand(3, generator=torch.Generator().manual_seed(319))
    )


def test_the_streams_of_one_training_run_never_share_a_seed():
    """Within a run of seed s: 8 ranks' training noise, 10^5 steps of diagnostics, the objective's library draws."""
    for seed in (0, 1, 12345):
        ranks = {seeding.TRAINING.seed(seed, rank) for rank in range(8)}
        diagnostics = {seeding.DIAGNOSTICS.seed(seed, step) for step in range(100_000)}
        init = {seeding.OBJECTIVE_INIT.seed(seed)}
        assert len(ranks) == 8 and not (ranks & diagnostics) and not (init & (ranks | diagnostics))


def test_the_toy_streams_of_one_seed_are_apart_for_up_to_a_thousand_conditions():
    streams = (seeding.TOY_EVAL_NOISE, seeding.TOY_REFERENCE, seeding.TOY_METRIC, seeding.TOY_STUDENT)
    seeds = [{stream.seed(0, index) for index in range(1000)} for stream in streams]
    assert sum(map(len, seeds)) == len(set().union(*seeds)) == 4000
