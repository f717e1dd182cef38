import pytest
import torch

from apexgen.data.prompts import (
    HELD_OUT,
    TRAIN,
    PromptSet,
    PromptTable,
    check_disjoint,
    draw_train_prompt,
    held_out_prompts,
)

SNEAKER = 7


def test_train_prompts_read_naturally():
    prompts = TRAIN.prompts(SNEAKER)
    assert {"a photo of a sneaker", "sneakers", "a pair of running shoes"} <= set(prompts)
    assert all("{}" not in p and p == p.strip() and "  " not in p for p in TRAIN.all_prompts())


def test_held_out_prompts_are_never_train_prompts():
    assert not set(TRAIN.all_prompts()) & set(HELD_OUT.all_prompts())
    assert not set(TRAIN.templates) & set(HELD_OUT.templates)
    train_nouns = {noun for nouns in TRAIN.synonyms for noun in nouns}
    assert not train_nouns & {noun for nouns in HELD_OUT.synonyms for noun in nouns}


def test_disjointness_check_catches_overlaps():
    with pytest.raises(ValueError, match="also appear in the train set"):
        check_disjoint(PromptSet(("{}",), (("a bag",),)), PromptSet(("{}",), (("a bag",),)))
    with pytest.raises(ValueError, match="synonyms used twice"):
        check_disjoint(PromptSet(("{}",), (("a bag",), ("a bag",))), PromptSet(("x {}",), (("a tote",), ("a sack",))))


def test_every_class_has_prompts_in_both_sets():
    assert TRAIN.classes == HELD_OUT.classes == 10
    for label in range(10):
        assert len(set(TRAIN.prompts(label))) == len(TRAIN.prompts(label)) >= 12
        assert len(set(held_out_prompts(label))) == len(held_out_prompts(label)) >= 4


def test_held_out_prompts_are_fixed():
    assert held_out_prompts(SNEAKER) == held_out_prompts(SNEAKER)
    assert held_out_prompts(SNEAKER)[0] == "a close-up photo of a trainer"


def test_draw_train_prompt_is_reproducible_and_of_the_class():
    first = [draw_train_prompt(SNEAKER, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert first[0] == first[1]
    generator = torch.Generator().manual_seed(0)
    drawn = {draw_train_prompt(SNEAKER, generator) for _ in range(300)}
    assert drawn == set(TRAIN.prompts(SNEAKER))


def test_table_draws_rows_of_each_label_uniformly():
    table = PromptTable.of(TRAIN)
    assert len(table.prompts) == len(TRAIN.all_prompts()) and table.labels.shape == (len(table.prompts),)
    labels = torch.arange(10).repeat(2400)
    rows = table.draw(labels, torch.Generator().manual_seed(0))
    assert (table.labels[rows] == labels).all()
    counts = torch.bincount(rows, minlength=len(table.prompts)).double()
    expected = 2400 / table.counts[table.labels].double()
    assert ((counts - expected).abs() / expected.sqrt()).max() < 5  # 5 binomial standard deviations
    again = table.draw(labels, torch.Generator().manual_seed(0))
    assert torch.equal(rows, again)
