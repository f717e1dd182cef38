"""Source → stock-pipeline encoding → (cache) → stream → backbone, on tiny pipelines."""

import json
import logging

import numpy as np
import pytest
import torch

from apexgen.config import build
from apexgen.data.cache import INDEX_FILE, CachedSamples
from apexgen.data.config import DataConfig
from apexgen.data.encoding import PipelineEncoder
from apexgen.data.image_text import DataError
from apexgen.data.prepare import data_stream, prepare_dataset
from apexgen.guidance import guided_velocity
from tests.backbones.tiny import NAMES, tiny_backbone
from tests.data.files import CAPTIONS, image_folder, parquet_file
from tests.data.tiny_pipelines import MAX_SEQUENCE_LENGTH, SIDE, tiny_pipeline


def config(path, name: str = "sd3", **values) -> DataConfig:
    settings = dict(path=str(path), resolution=SIDE, max_sequence_length=MAX_SEQUENCE_LENGTH[name], encode_batch_size=4)
    return build(DataConfig, settings | values)


def assert_same_samples(first, second):
    assert len(first.samples) == len(second.samples)
    for a, b in zip(first.samples, second.samples, strict=True):
        assert torch.equal(a.text.tokens, b.text.tokens)
        for x, y in ((a.text.pooled, b.text.pooled), (a.text.mask, b.text.mask), (a.latents, b.latents)):
            assert (x is None and y is None) or torch.equal(x, y)
    assert torch.equal(first.null.tokens, second.null.tokens) and first.latent_shape == second.latent_shape


@pytest.mark.parametrize("name", NAMES)
def test_an_image_folder_trains_each_backbone_through_the_stream(tmp_path, name, caplog):
    folder = image_folder(tmp_path / "set", corrupt=(2,))
    with caplog.at_level(logging.WARNING):
        dataset = prepare_dataset(config(folder, name), tiny_pipeline(name), name)
    assert "skipped 1 of 6 images" in caplog.text
    assert len(dataset.samples) == len(CAPTIONS) - 1 and dataset.real_data and dataset.latent_shape == (4, 16, 16)
    batch = next(data_stream(config(folder, name), dataset, batch_size=3))
    assert batch.x0.shape == (3, 4, 16, 16)
    backbone, t = tiny_backbone(name), torch.tensor([0.2, 0.5, 0.9])
    with torch.no_grad():
        assert backbone(batch.x0, t, batch.cond).shape == batch.x0.shape
        assert guided_velocity(backbone, batch.x0, t, batch.cond, batch.null_cond, 3.0).isfinite().all()


def test_the_cache_is_built_once_then_used_without_encoding(tmp_path, monkeypatch, caplog):
    cached = config(image_folder(tmp_path / "set"), cache_dir=str(tmp_path / "cache"), shard_size=4)
    pipeline = tiny_pipeline("sd3")
    built = prepare_dataset(cached, pipeline, "sd3")
    assert isinstance(built.samples, CachedSamples) and len(built.samples.paths) == 2  # 6 samples, 4 per shard
    in_memory = prepare_dataset(config(cached.path), pipeline, "sd3")
    assert_same_samples(built, in_memory)

    def refuse(*args, **kwargs):
        raise AssertionError("encoded again although the cache is complete")

    monkeypatch.setattr(PipelineEncoder, "encode_prompts", refuse)
    monkeypatch.setattr(PipelineEncoder, "encode_images", refuse)
    with caplog.at_level(logging.INFO, logger="apexgen.data.cache"):
        assert_same_samples(prepare_dataset(cached, pipeline, "sd3"), built)
    assert "using 6 cached encoded samples" in caplog.text


def cache_folder(root):
    (folder,) = [path for path in root.iterdir() if not path.name.startswith(".")]
    return folder


@pytest.mark.parametrize("damage", ["truncate", "delete", "index", "garbage"])
def test_a_damaged_cache_is_detected_and_rebuilt(tmp_path, caplog, damage):
    cached = config(image_folder(tmp_path / "set"), cache_dir=str(tmp_path / "cache"), shard_size=4)
    pipeline = tiny_pipeline("sd3")
    first = prepare_dataset(cached, pipeline, "sd3")
    folder = cache_folder(tmp_path / "cache")
    shard = folder / "shard_00001.safetensors"
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-100])
    elif damage == "delete":
        shard.unlink()
    elif damage == "index":
        (folder / INDEX_FILE).write_text('{"format": 1, "identity": {')
    else:  # overwritten with as many random bytes: the sizes in the index still match
        shard.write_bytes(np.random.default_rng(0).bytes(shard.stat().st_size))
    with caplog.at_level(logging.WARNING, logger="apexgen.data.cache"):
        rebuilt = prepare_dataset(cached, pipeline, "sd3")
    expected = {
        "truncate": "bytes instead of",
        "delete": "is missing",
        "index": "is unreadable",
        "garbage": "shard_00001.safetensors is not a readable safetensors file",
    }[damage]
    assert "ignoring the cache" in caplog.text and expected in caplog.text
    assert_same_samples(rebuilt, first)


def test_other_data_or_other_encoder_weights_get_their_own_cache(tmp_path):
    folder = image_folder(tmp_path / "set")
    cached = config(folder, cache_dir=str(tmp_path / "cache"))
    prepare_dataset(cached, tiny_pipeline("sd3", seed=0), "sd3")
    prepare_dataset(cached, tiny_pipeline("sd3", seed=1), "sd3")  # same configs, other weights
    lines = (folder / "metadata.jsonl").read_text().replace("a red cat", "a red hat")
    (folder / "metadata.jsonl").write_text(lines)
    prepare_dataset(cached, tiny_pipeline("sd3", seed=0), "sd3")
    prepare_dataset(config(folder, cache_dir=str(tmp_path / "cache"), resolution=16), tiny_pipeline("sd3"), "sd3")
    folders = [path for path in (tmp_path / "cache").iterdir()]
    assert len(folders) == 4 and all(path.name.startswith("sd3-") for path in folders)
    for path in folders:
        index = json.loads((path / INDEX_FILE).read_text())
        assert index["count"] == len(CAPTIONS) and index["identity"]["settings"]["backbone"] == "sd3"


def test_parquet_and_prompt_only_data(tmp_path):
    pipeline = tiny_pipeline("qwen_image")
    path = parquet_file(tmp_path / "train.parquet")
    parquet = prepare_dataset(config(path, "qwen_image", kind="parquet"), pipeline, "qwen_image")
    assert len(parquet.samples) == len(CAPTIONS) and parquet.samples[0].latents.shape == (4, 16, 16)
    (tmp_path / "prompts.txt").write_text("\n".join(CAPTIONS))
    prompts = config(tmp_path / "prompts.txt", "qwen_image", kind="prompts", cache_dir=str(tmp_path / "cache"))
    dataset = prepare_dataset(prompts, pipeline, "qwen_image")
    assert not dataset.real_data and all(sample.latents is None for sample in dataset.samples)
    for sample, same in zip(dataset.samples, parquet.samples, strict=True):  # same captions, same embeddings
        assert torch.equal(sample.text.tokens, same.text.tokens)
    batch = next(data_stream(prompts, dataset, batch_size=4))
    assert batch.x0.shape == (4, 4, 16, 16) and not batch.x0.any()


def test_bad_input_fails_before_any_encoding(tmp_path, monkeypatch):
    folder = image_folder(tmp_path / "set")
    (folder / "metadata.jsonl").unlink()
    monkeypatch.setattr(PipelineEncoder, "__init__", lambda *args: pytest.fail("an encoder was built"))
    with pytest.raises(DataError, match="has no metadata.jsonl"):
        prepare_dataset(config(folder), None, "sd3")


def test_a_source_of_only_unreadable_images_fails_and_leaves_no_cache_behind(tmp_path):
    folder = image_folder(tmp_path / "set", corrupt=range(len(CAPTIONS)))
    with pytest.raises(DataError, match="none of the 6 images could be decoded"):
        prepare_dataset(config(folder, cache_dir=str(tmp_path / "cache")), tiny_pipeline("sd3"), "sd3")
    assert list((tmp_path / "cache").iterdir()) == []


def test_encoding_shows_a_bar_that_can_be_switched_off_and_a_closing_line(tmp_path, capsys, caplog, monkeypatch):
    folder = image_folder(tmp_path / "set")
    pipeline = tiny_pipeline("sd3")
    with caplog.at_level(logging.INFO, logger="apexgen.data.encoding"):
        prepare_dataset(config(folder), pipeline, "sd3")
    assert "encoding set" in capsys.readouterr().err and f"encoded 6 samples of {folder}" in caplog.text
    monkeypatch.setenv("APEXGEN_PROGRESS", "0")  # what apexgen --no-progress sets
    prepare_dataset(config(folder), pipeline, "sd3")
    assert "encoding set" not in capsys.readouterr().err


def test_a_shard_that_becomes_unreadable_during_a_run_is_named_with_the_fix(tmp_path):
    cached = config(image_folder(tmp_path / "set"), cache_dir=str(tmp_path / "cache"), shard_size=4)
    dataset = prepare_dataset(cached, tiny_pipeline("sd3"), "sd3")
    shard = cache_folder(tmp_path / "cache") / "shard_00000.safetensors"
    shard.write_bytes(np.random.default_rng(0).bytes(shard.stat().st_size))
    with pytest.raises(
        DataError, match="shard_00000.safetensors became unreadable during the run .*delete .* and rerun"
    ):
        dataset.samples[0]
