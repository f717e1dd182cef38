import logging

import pytest
import torch

from apexgen.condition import TextCondition
from apexgen.config import ConfigError, build
from apexgen.data.prompts import HELD_OUT, TRAIN
from apexgen.text import (
    DEFAULT_MAX_TOKENS,
    MINILM_HIDDEN,
    NULL_PROMPT,
    CachedTextEncoder,
    MiniLMEncoder,
    TextEncoderConfig,
    masked_mean,
    null_condition,
    text_encoder,
)


class CountingEncoder:
    """A stand-in encoder: deterministic embeddings from the prompt text, counting its calls."""

    def __init__(self, max_tokens: int = 4, identity: str = "counting-v1"):
        self.max_tokens, self._identity, self.calls = max_tokens, identity, 0

    @property
    def identity(self) -> str:
        return self._identity

    def encode(self, prompts):
        self.calls += 1
        lengths = torch.tensor([min(len(p.split()) + 2, self.max_tokens) for p in prompts])
        mask = torch.arange(self.max_tokens) < lengths[:, None]
        tokens = torch.stack([torch.full((self.max_tokens, 3), float(len(p))) for p in prompts]) * mask[..., None]
        return TextCondition(tokens=tokens, pooled=masked_mean(tokens, mask), mask=mask)


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEncoder()


def test_minilm_shapes_mask_and_pooling(minilm):
    prompts = ["a photo of a sneaker", "sneakers", "a pair of running shoes"]
    condition = minilm.encode(prompts)
    assert condition.tokens.shape == (3, DEFAULT_MAX_TOKENS, MINILM_HIDDEN)
    assert condition.pooled.shape == (3, MINILM_HIDDEN) and condition.mask.dtype == torch.bool
    assert condition.mask.sum(1).tolist() == minilm.token_lengths(prompts)
    assert (condition.tokens[~condition.mask] == 0).all()  # padding positions are zero
    expected = condition.tokens.sum(1) / condition.mask.sum(1, keepdim=True)
    torch.testing.assert_close(condition.pooled, expected)


def test_minilm_meaning_is_pretrained(minilm):
    prompts = ["a pair of running shoes", "athletic shoes", "a dress", "a bag", "a handbag"]
    pooled = torch.nn.functional.normalize(minilm.encode(prompts).pooled)
    similarity = pooled @ pooled.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3 and similarity[3, 4] > similarity[3, 2] + 0.2


def test_null_condition_is_the_empty_prompt(minilm):
    null = null_condition(minilm, batch_size=3)
    assert null.tokens.shape == (3, DEFAULT_MAX_TOKENS, MINILM_HIDDEN)
    assert null.mask.sum(1).tolist() == [2, 2, 2]  # [CLS] [SEP]
    torch.testing.assert_close(null.rows(slice(0, 1)).tokens, minilm.encode([NULL_PROMPT]).tokens)


def test_default_max_tokens_fits_every_prompt(minilm):
    lengths = minilm.token_lengths(TRAIN.all_prompts() + HELD_OUT.all_prompts())
    assert max(lengths) <= DEFAULT_MAX_TOKENS


def test_truncation_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="apexgen.text"):
        condition = MiniLMEncoder(max_tokens=4).encode(["a photo of a sneaker"])
    assert condition.mask.all() and "truncated" in caplog.text


def test_minilm_through_the_cache_is_not_reencoded(minilm, tmp_path, monkeypatch):
    cached = CachedTextEncoder(minilm, tmp_path)
    first = cached.encode(["a bag", "a coat"])

    def fail(prompts):
        raise AssertionError("encoded again")

    monkeypatch.setattr(minilm, "encode", fail)
    second = cached.encode(["a bag", "a coat"])
    for name in ("tokens", "pooled", "mask"):
        assert torch.equal(getattr(first, name), getattr(second, name))


def test_cache_encodes_each_prompt_list_once(tmp_path):
    encoder = CountingEncoder()
    cached = CachedTextEncoder(encoder, tmp_path)
    first = cached.encode(["a bag", "a dress"])
    second = cached.encode(["a bag", "a dress"])
    assert encoder.calls == 1 and torch.equal(first.tokens, second.tokens) and torch.equal(first.mask, second.mask)
    cached.encode(["a dress", "a bag"])  # another list (order matters: rows follow it)
    assert encoder.calls == 2


def test_cache_key_includes_encoder_and_max_tokens(tmp_path):
    prompts = ["a bag"]
    paths = {
        CachedTextEncoder(CountingEncoder(4, "a"), tmp_path).path(prompts),
        CachedTextEncoder(CountingEncoder(4, "b"), tmp_path).path(prompts),
        CachedTextEncoder(CountingEncoder(5, "a"), tmp_path).path(prompts),
        CachedTextEncoder(CountingEncoder(4, "a"), tmp_path).path(["a coat"]),
    }
    assert len(paths) == 4


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_key"])
def test_corrupt_cache_is_rebuilt(tmp_path, caplog, damage):
    encoder = CountingEncoder()
    cached = CachedTextEncoder(encoder, tmp_path)
    expected = cached.encode(["a bag", "a dress"])
    path = cached.path(["a bag", "a dress"])
    if damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-20])
    else:  # a valid file of another prompt list under this name
        cached.encode(["a coat"])
        path.write_bytes(cached.path(["a coat"]).read_bytes())
    with caplog.at_level(logging.WARNING, logger="apexgen.text"):
        rebuilt = cached.encode(["a bag", "a dress"])
    assert encoder.calls == (2 if damage != "other_key" else 3)
    assert "rebuilding" in caplog.text and str(path) in caplog.text
    assert torch.equal(rebuilt.tokens, expected.tokens)
    assert cached.encode(["a bag", "a dress"]) is not None and encoder.calls == (2 if damage != "other_key" else 3)


def test_config_and_factory(tmp_path):
    with pytest.raises(ConfigError, match="max_tokens"):
        build(TextEncoderConfig, {"max_tokens": 1})
    assert isinstance(text_encoder(TextEncoderConfig(cache_dir=str(tmp_path))), CachedTextEncoder)
    assert isinstance(text_encoder(TextEncoderConfig(cache_dir="")), MiniLMEncoder)
