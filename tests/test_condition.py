import torch

from apexgen.condition import TextCondition, VectorCondition


def test_rows_where_and_cat_act_on_every_field():
    a = TextCondition(torch.randn(3, 4, 2), torch.randn(3, 2), torch.ones(3, 4, dtype=torch.bool))
    b = TextCondition(torch.zeros(3, 4, 2), torch.zeros(3, 2), torch.zeros(3, 4, dtype=torch.bool))
    chosen = a.where(torch.tensor([True, False, True]), b)
    assert torch.equal(chosen.tokens[1], a.tokens[1]) and torch.equal(chosen.tokens[0], b.tokens[0])
    assert chosen.mask.dtype == torch.bool
    both = TextCondition.cat([a, b])
    assert both.batch_size == 6 and torch.equal(both.rows(slice(3, 6)).tokens, b.tokens)


def test_prompts_of_different_lengths_are_padded_and_masked_when_joined():
    short = TextCondition(torch.ones(2, 3, 5), torch.ones(2, 5), None)
    long = TextCondition(torch.ones(1, 6, 5), torch.ones(1, 5), torch.ones(1, 6, dtype=torch.bool))
    joined = TextCondition.cat([short, long])
    assert joined.tokens.shape == (3, 6, 5)
    assert joined.mask[:2, :3].all() and not joined.mask[:2, 3:].any() and joined.mask[2].all()
    assert (joined.tokens[:2, 3:] == 0).all()


def test_expand_and_vector_conditions():
    null = VectorCondition(torch.zeros(1, 3)).expand_rows(4)
    assert null.values.shape == (4, 3) and null.batch_size == 4
