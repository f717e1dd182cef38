"""Parquet files as image–caption records: Hugging Face structs or raw bytes, folders of shards, and
problems named with the file and the fix before any image is decoded."""

import logging

import numpy as np
import pytest
import torch

from apexgen.data.image_text import DataError, ImageFolderReader
from apexgen.data.parquet import ParquetReader
from tests.data.files import CAPTIONS, image_bytes, image_folder, parquet_file

RESOLUTION = 16


@pytest.mark.parametrize("struct", [True, False])
def test_parquet_images_as_hugging_face_structs_or_raw_bytes(tmp_path, struct):
    reader = ParquetReader(parquet_file(tmp_path / "train.parquet", struct=struct), RESOLUTION)
    records = list(reader)
    assert [record.text for record in records] == CAPTIONS
    folder = ImageFolderReader(image_folder(tmp_path / "set"), RESOLUTION)
    for record, same in zip(records, folder, strict=True):
        assert torch.equal(record.image, same.image)  # the same PNG bytes decode to the same tensor


def test_a_parquet_folder_reads_every_file_in_order_with_custom_columns(tmp_path):
    columns = ("jpg", "caption")
    parquet_file(tmp_path / "data" / "train-00000-of-00002.parquet", CAPTIONS[:2], columns=columns)
    parquet_file(tmp_path / "data" / "train-00001-of-00002.parquet", CAPTIONS[2:], columns=columns)
    reader = ParquetReader(tmp_path / "data", RESOLUTION, image_column="jpg", text_column="caption")
    assert len(reader) == len(CAPTIONS)
    assert [(r.index, r.text) for r in reader] == list(enumerate(CAPTIONS))


def test_parquet_problems_fail_naming_the_file_and_what_it_has(tmp_path):
    path = parquet_file(tmp_path / "train.parquet")
    with pytest.raises(DataError, match="train.parquet has no column 'caption'; its columns: image, text"):
        ParquetReader(path, RESOLUTION, text_column="caption")
    with pytest.raises(DataError, match="column 'text' holds string; expected image bytes"):
        ParquetReader(path, RESOLUTION, image_column="text")
    with pytest.raises(DataError, match="neither a .parquet file nor a folder"):
        ParquetReader(tmp_path / "empty", RESOLUTION)


def test_parquet_rows_with_broken_or_missing_images_are_skipped(tmp_path, caplog):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [{"bytes": image_bytes(0), "path": None}, {"bytes": b"not an image", "path": None}, None]
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"image": images, "text": ["a", "b", "c"]}), path)
    with caplog.at_level(logging.WARNING):
        assert [r.text for r in ParquetReader(path, RESOLUTION)] == ["a"]
    assert "skipped 2 of 3 images" in caplog.text and "x.parquet, row 1" in caplog.text


def test_a_file_that_is_not_parquet_is_named_with_the_fix(tmp_path):
    garbage = tmp_path / "train.parquet"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(
        DataError, match="train.parquet is not a readable parquet file .*replace it with an intact copy"
    ):
        ParquetReader(garbage, RESOLUTION)
