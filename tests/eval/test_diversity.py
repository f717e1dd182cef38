import itertools

import pytest
import torch

from apexgen.eval.diversity import mean_pairwise_distance, near_duplicate_share, prompt_diversity


def test_mean_pairwise_distance_matches_a_loop():
    features = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pairs = list(itertools.combinations(range(7), 2))
    expected = sum((features[i] - features[j]).norm().item() for i, j in pairs) / len(pairs)
    assert mean_pairwise_distance(features) == pytest.approx(expected, rel=1e-12)


def test_collapsed_images_have_zero_diversity():
    assert mean_pairwise_distance(torch.ones(4, 3)) == 0.0


def test_grouped_by_prompt():
    features = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    result = prompt_diversity(features, torch.tensor([5, 5, 2, 2, 2]))
    assert result.per_prompt == {2: 0.0, 5: 5.0} and result.mean == 2.5


def test_errors():
    with pytest.raises(ValueError, match="N ≥ 2"):
        mean_pairwise_distance(torch.ones(1, 3))
    with pytest.raises(ValueError, match="group ids"):
        prompt_diversity(torch.ones(4, 3), torch.zeros(3))


def test_near_duplicate_share_counts_close_pairs_within_prompts_only():
    # prompt 0: three copies of one image (3 close pairs); prompt 1: two images 5 apart (1 far pair)
    features = torch.tensor([[0.0, 0.0], [0.0, 0.1], [0.1, 0.0], [10.0, 0.0], [10.0, 5.0]])
    groups = torch.tensor([0, 0, 0, 1, 1])
    assert near_duplicate_share(features, groups, threshold=1.0) == pytest.approx(3 / 4)
    assert near_duplicate_share(features, groups, threshold=6.0) == 1.0
    # (0.1, 0) moved to prompt 1, far from its images: only the pair (0, 0)–(0, 0.1) is close
    assert near_duplicate_share(features, torch.tensor([0, 0, 1, 1, 1]), threshold=0.5) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate_share(features, groups, threshold=0)


def test_pixel_diversity_takes_images():
    images = torch.zeros(4, 1, 2, 2)
    images[1] += 1.0  # distance 2 from the others within prompt 0
    result = prompt_diversity(images, torch.tensor([0, 0, 1, 1]))
    assert result.per_prompt == {0: 2.0, 1: 0.0}
