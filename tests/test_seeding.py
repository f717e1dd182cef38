import torch

from apexgen.seeding import seeded_global_rng


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
