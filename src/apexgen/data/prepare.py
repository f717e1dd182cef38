"""Real data for a run, in one call: open and check the source, then encode it with the backbone's stock
pipeline into memory, or load it from the on-disk cache (building the cache first when there is none).

In a run of several processes, let one process prepare the data first (e.g. inside accelerate's
``main_process_first()``) so that the others find the cache complete; a cache folder appears only
once it is complete, so a process never reads a half-written one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from apexgen.data.cache import cache_folder, encoder_identity, open_cache, write_cache
from apexgen.data.config import DataConfig
from apexgen.data.encoding import EncodedDataset, PipelineEncoder, encode_dataset, encode_samples
from apexgen.data.image_text import Reader
from apexgen.data.readers import open_reader
from apexgen.data.stream import EncodedStream

log = logging.getLogger(__name__)


def cache_identity(reader: Reader, encoder: PipelineEncoder, resolution: int) -> dict:
    return {
        "dataset": reader.identity(),
        "resolution": resolution,
        "settings": encoder.settings(),
        "encoder": encoder_identity(encoder.pipeline),
    }


def prepare_dataset(config: DataConfig, pipeline, backbone: str) -> EncodedDataset:
    """The encoded dataset of ``config`` for ``backbone`` (a registry name) and its stock ``pipeline``."""
    reader = open_reader(config)  # checks the whole index: bad input fails here, before any encoding
    encoder = PipelineEncoder(pipeline, backbone, config.max_sequence_length, config.latent_sample, config.seed)
    latent_shape = encoder.latent_shape(config.resolution)
    if config.cache_dir is None:
        return encode_dataset(reader, encoder, config.resolution, config.encode_batch_size)
    identity = cache_identity(reader, encoder, config.resolution)
    folder = cache_folder(Path(config.cache_dir).expanduser(), identity)
    dataset = open_cache(folder, identity)
    if dataset is None:
        log.info("encoding %d records of %s into the cache %s", len(reader), config.path, folder)
        samples = encode_samples(reader, encoder, config.encode_batch_size)
        write_cache(folder, identity, samples, encoder.null(), latent_shape, reader.has_images, config.shard_size)
        dataset = open_cache(folder, identity)
        if dataset is None:
            raise RuntimeError(f"the cache just written to {folder} cannot be read back (see the log)")
    return dataset


def data_stream(
    config: DataConfig, dataset: EncodedDataset, batch_size: int, rank: int = 0, world_size: int = 1
) -> EncodedStream:
    return EncodedStream(dataset, batch_size, config.seed, rank, world_size)
