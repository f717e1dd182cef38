import io
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from apexgen.config import ConfigError, build
from apexgen.data.config import DataConfig
from apexgen.data.image_text import DataError, ImageFolderReader, PromptReader, load_image
from apexgen.data.parquet import ParquetReader
from tests.data.files import CAPTIONS, image_bytes, image_folder, parquet_file

RESOLUTION = 16


def test_image_folder_yields_square_images_in_minus_one_to_one_with_their_captions(tmp_path):
    reader = ImageFolderReader(image_folder(tmp_path / "set"), RESOLUTION)
    records = list(reader)
    assert [record.text for record in records] == CAPTIONS
    assert [record.index for record in records] == list(range(len(CAPTIONS)))
    for record in records:
        assert record.image.shape == (3, RESOLUTION, RESOLUTION) and record.image.dtype == torch.float32
        assert -1 <= record.image.min() and record.image.max() <= 1
    assert reader.skipped == 0 and len(reader) == len(CAPTIONS)


def test_images_are_resized_on_the_shorter_side_and_centre_cropped():
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)  # 60 wide, 20 high: red | green | blue thirds
    pixels[:, :20, 0] = pixels[:, 20:40, 1] = pixels[:, 40:, 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    image = load_image(buffer.getvalue(), 10)
    assert image.shape == (3, 10, 10)
    assert torch.allclose(image[:, :, 2:8].mean((1, 2)), torch.tensor([-1.0, 1.0, -1.0]), atol=0.05)


def test_grey_and_transparent_images_become_rgb(tmp_path):
    for mode in ("L", "RGBA", "P"):
        buffer = io.BytesIO()
        Image.new(mode, (12, 12)).save(buffer, format="PNG")
        assert load_image(buffer.getvalue(), 8).shape == (3, 8, 8)


def test_corrupt_images_are_skipped_and_counted_in_the_log_of_each_pass(tmp_path, caplog):
    reader = ImageFolderReader(image_folder(tmp_path / "set", corrupt=(1, 4)), RESOLUTION)
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="apexgen.data.image_text"):
            texts = [record.text for record in reader]
        assert texts == [c for i, c in enumerate(CAPTIONS) if i not in (1, 4)]
        assert reader.skipped == 2
        assert "skipped 2 of 6 images" in caplog.text and "0001.png (line 2" in caplog.text


def test_a_folder_of_only_unreadable_images_is_an_error(tmp_path):
    reader = ImageFolderReader(image_folder(tmp_path / "set", corrupt=range(len(CAPTIONS))), RESOLUTION)
    with pytest.raises(DataError, match="none of the 6 images could be decoded"):
        list(reader)


def test_a_folder_without_metadata_fails_naming_the_file_and_the_format(tmp_path):
    folder = image_folder(tmp_path / "set")
    (folder / "metadata.jsonl").unlink()
    with pytest.raises(DataError) as error:
        ImageFolderReader(folder, RESOLUTION)
    assert "has no metadata.jsonl" in str(error.value) and '"file_name": "0001.png"' in str(error.value)
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderReader(tmp_path / "nowhere", RESOLUTION)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"file_name": "0000.png"}', r"line 2 has \['file_name'\]; expected one JSON object per line like"),
        ('{"file_name": "0000.png", "text": 3}', "line 2: 'file_name' and 'text' must be strings"),
        ("not json", "line 2 is not valid JSON"),
        ('{"file_name": "missing.png", "text": "x"}', r"lists 1 files that do not exist .*: missing.png \(line 2\)"),
    ],
)
def test_bad_metadata_lines_fail_before_reading_any_image_naming_the_line(tmp_path, line, message):
    folder = image_folder(tmp_path / "set", CAPTIONS[:1])
    with (folder / "metadata.jsonl").open("a") as file:
        file.write(line + "\n")
    with pytest.raises(DataError, match=message):
        ImageFolderReader(folder, RESOLUTION)


def test_the_caption_key_is_configurable(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(image_bytes(0, fmt="JPEG"))
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.jpg", "caption": "a jpeg"}) + "\n")
    assert [r.text for r in ImageFolderReader(folder, RESOLUTION, text_column="caption")] == ["a jpeg"]


def test_prompt_files_txt_and_jsonl(tmp_path):
    (tmp_path / "p.txt").write_text("a red cat\n\n  a blue dog  \n")
    (tmp_path / "p.jsonl").write_text('{"text": "a red cat"}\n{"text": "a blue dog", "id": 2}\n')
    for name in ("p.txt", "p.jsonl"):
        reader = PromptReader(tmp_path / name)
        records = list(reader)
        assert [r.text for r in records] == ["a red cat", "a blue dog"] and all(r.image is None for r in records)
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n')
    with pytest.raises(DataError, match=r'bad.jsonl, line 1: expected an object like \{"text"'):
        PromptReader(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="must be .txt"):
        PromptReader(tmp_path / "p.csv")


@pytest.mark.parametrize(
    ("values", "key", "hint"),
    [
        ({"kind": "folder", "path": "x"}, "data.kind", "allowed values: 'imagefolder', 'parquet', 'prompts'"),
        ({}, "data.path", "required: where the imagefolder data is"),
        ({"path": "x", "resolution": 0}, "data.resolution", "must be > 0"),
        ({"path": "x", "max_sequence_length": 0}, "data.max_sequence_length", "must be > 0 or null"),
        ({"path": "x", "latent_sample": "mean"}, "data.latent_sample", "allowed values: 'sample', 'mode'"),
        ({"path": "x", "colour": 1}, "data.colour", "unknown key"),
    ],
)
def test_bad_data_config_names_the_key(values, key, hint):
    with pytest.raises(ConfigError) as error:
        build(DataConfig, values, "data")
    assert error.value.key == key and hint in str(error.value)


LATIN1_CAPTION = "un café crème".encode("latin-1")


def test_captions_and_prompts_that_are_not_utf8_name_the_file_line_and_fix(tmp_path):
    folder = image_folder(tmp_path / "set")
    with (folder / "metadata.jsonl").open("ab") as metadata:
        metadata.write(b'{"file_name": "0000.png", "text": "' + LATIN1_CAPTION + b'"}\n')
    with pytest.raises(
        DataError, match=r"metadata.jsonl is not UTF-8 text \(byte 0xe9 at offset \d+, line 7\); convert"
    ):
        ImageFolderReader(folder, RESOLUTION)
    for name in ("p.txt", "p.jsonl"):
        (tmp_path / name).write_bytes(b"a red cat\n" + LATIN1_CAPTION + b"\n")
        with pytest.raises(DataError, match=rf"{name} is not UTF-8 text \(byte 0xe9 at offset 16, line 2\)"):
            PromptReader(tmp_path / name)


def test_other_column_or_key_names_point_to_the_column_settings(tmp_path):
    path = parquet_file(tmp_path / "train.parquet", columns=("picture", "caption"))
    with pytest.raises(DataError, match="no column 'image'; its columns: picture, caption; set data.image_column"):
        ParquetReader(path, RESOLUTION)
    with pytest.raises(DataError, match="no column 'text'; its columns: picture, caption; set data.text_column"):
        ParquetReader(path, RESOLUTION, image_column="picture")
    assert len(ParquetReader(path, RESOLUTION, image_column="picture", text_column="caption")) == len(CAPTIONS)
    folder = image_folder(tmp_path / "set")
    lines = (folder / "metadata.jsonl").read_text().replace('"text"', '"caption"')
    (folder / "metadata.jsonl").write_text(lines)
    with pytest.raises(DataError, match="set data.text_column to it"):
        ImageFolderReader(folder, RESOLUTION)
    (tmp_path / "p.jsonl").write_text('{"prompt": "a red cat"}\n')
    with pytest.raises(DataError, match="set data.text_column to it"):
        PromptReader(tmp_path / "p.jsonl")
