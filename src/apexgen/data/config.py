"""Settings of real image–text data: where it is, how images become latents and captions become prompt
embeddings, and where the encoded set is cached. Filled strictly like every config (``apexgen.config``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from apexgen.config import require, require_positive

DataKind = Literal["imagefolder", "parquet", "prompts"]


@dataclass(frozen=True)
class DataConfig:
    # imagefolder: a folder with metadata.jsonl ({"file_name": ..., "text": ...} per line) next to the images;
    # parquet: a .parquet file or a folder of them (Hugging Face datasets layout);
    # prompts: a .txt file (one prompt per line) or a .jsonl file (one {"text": ...} per line), no images.
    kind: DataKind = "imagefolder"
    path: str = ""
    resolution: int = 1024  # square side in pixels: the shorter side is resized to it, then centre-cropped
    image_column: str = "image"  # parquet: {"bytes", "path"} structs or raw bytes
    text_column: str = "text"  # the caption key of metadata.jsonl, parquet and prompt .jsonl files
    cache_dir: str | None = None  # on-disk cache of latents and prompt embeddings; None: encode into memory
    max_sequence_length: int | None = None  # text tokens; None: the stock pipeline's own default
    latent_sample: Literal["sample", "mode"] = "sample"  # one draw of the VAE posterior per image, or its mode
    seed: int = 0  # the VAE draws (one fixed draw per image) and the per-epoch shuffles
    encode_batch_size: int = 8  # images or prompts per encoder call
    shard_size: int = 1024  # samples per cache file

    def check(self) -> None:
        require(bool(self.path), "path", f"required: where the {self.kind} data is, e.g. data.path=/data/images")
        require_positive(self, "resolution", "encode_batch_size", "shard_size")
        require(self.seed >= 0, "seed", f"must be ≥ 0, got {self.seed}")
        length = self.max_sequence_length
        require(length is None or length > 0, "max_sequence_length", f"must be > 0 or null, got {length}")
        require(bool(self.image_column), "image_column", "must name the image column")
        require(bool(self.text_column), "text_column", "must name the caption column or key")
