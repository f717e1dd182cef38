"""A small image–caption folder in memory: the split (the folder's train/ and test/, or a seeded share),
channels and size kept, classes read where every record has one, and every bad folder refused with a
message that names the file and the fix."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from apexgen.data.folder_splits import FolderLayout, load_folder_splits, split_records
from apexgen.data.image_text import DataError
from apexgen.data.text_images import caption_stream
from tests.data.test_text_images import RowEncoder


def write_folder(folder: Path, count: int, size=(16, 16), mode="RGB", labels=None, start: int = 0) -> Path:
    """``count`` random images of ``mode`` and ``size`` with captions "image i" (and class ``labels[i]``)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(start, start + count):
        channels = 3 if mode == "RGB" else 1
        pixels = np.random.default_rng(i).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(folder / f"{i:03d}.png")
        line = {"file_name": f"{i:03d}.png", "text": f"image {i}"}
        if labels is not None:
            line["label"] = labels[i - start]
        lines.append(json.dumps(line))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_a_folder_with_train_and_test_subfolders_keeps_its_own_split(tmp_path):
    write_folder(tmp_path / "train", 6)
    write_folder(tmp_path / "test", 3, start=100)
    splits = load_folder_splits(FolderLayout(tmp_path))
    assert splits.train.captions == tuple(f"image {i}" for i in range(6))
    assert splits.held_out.captions == ("image 100", "image 101", "image 102")
    assert splits.image_shape == (3, 16, 16) and splits.train.labels is None and splits.train.class_names == ()
    expected = torch.from_numpy(np.array(Image.open(tmp_path / "test" / "100.png"))).permute(2, 0, 1)
    torch.testing.assert_close(splits.held_out.images[0], expected.float() / 127.5 - 1, rtol=0, atol=0)


def test_one_folder_is_split_by_a_seeded_share_that_covers_every_record_once(tmp_path):
    write_folder(tmp_path, 20)
    train, held_out = split_records(FolderLayout(tmp_path, held_out=0.25, seed=3))
    names = [r.entry.file_name for r in train + held_out]
    assert len(held_out) == 5 and sorted(names) == [f"{i:03d}.png" for i in range(20)]
    again = split_records(FolderLayout(tmp_path, held_out=0.25, seed=3))[1]
    other = split_records(FolderLayout(tmp_path, held_out=0.25, seed=4))[1]
    assert [r.entry for r in again] == [r.entry for r in held_out] != [r.entry for r in other]


def test_grey_images_keep_one_channel_and_a_colour_image_makes_all_rgb(tmp_path):
    write_folder(tmp_path / "grey", 4, mode="L")
    assert load_folder_splits(FolderLayout(tmp_path / "grey", held_out=0.5)).image_shape == (1, 16, 16)
    mixed = write_folder(tmp_path / "mixed", 4, mode="L")
    Image.new("RGB", (16, 16), (255, 0, 0)).save(mixed / "001.png")
    splits = load_folder_splits(FolderLayout(mixed, held_out=0.5))
    assert splits.image_shape == (3, 16, 16)
    captions = splits.train.captions + splits.held_out.captions
    red = torch.cat([splits.train.images, splits.held_out.images])[captions.index("image 1")]
    assert red[0].eq(1).all() and red[1:].eq(-1).all()


def test_images_of_several_sizes_need_a_resolution_which_resizes_and_crops(tmp_path):
    folder = write_folder(tmp_path, 4)
    Image.new("RGB", (24, 20)).save(folder / "002.png")
    with pytest.raises(DataError, match=r"one square size .* found .*24×20 \(002.png\).*: set data.resolution=N"):
        load_folder_splits(FolderLayout(folder, held_out=0.5))
    assert load_folder_splits(FolderLayout(folder, held_out=0.5, resolution=8)).image_shape == (3, 8, 8)


def test_classes_are_read_where_every_record_has_one(tmp_path):
    write_folder(tmp_path / "train", 4, labels=["shoe", "bag", 7, "bag"])
    write_folder(tmp_path / "test", 2, labels=["bag", 7], start=10)
    splits = load_folder_splits(FolderLayout(tmp_path))
    assert splits.train.class_names == ("7", "bag", "shoe")
    assert splits.train.labels.tolist() == [2, 1, 0, 1] and splits.held_out.labels.tolist() == [1, 0]
    write_folder(tmp_path / "test", 2, labels=["bag", "hat"], start=10)
    with pytest.raises(DataError, match="of class 'hat', which no training record has"):
        load_folder_splits(FolderLayout(tmp_path))


def test_a_folder_where_only_some_records_have_a_class_is_refused(tmp_path):
    folder = write_folder(tmp_path, 4, labels=["a", "b", "a", "b"])
    lines = (folder / "metadata.jsonl").read_text().splitlines()
    lines[2] = json.dumps({"file_name": "002.png", "text": "image 2"})
    (folder / "metadata.jsonl").write_text("\n".join(lines))
    with pytest.raises(DataError, match="3 of 4 records have a class and .*002.png .* has none: give every record"):
        load_folder_splits(FolderLayout(folder, held_out=0.5))


@pytest.mark.parametrize(
    "problem, message",
    [
        ("no_metadata", "holds neither metadata.jsonl nor train/metadata.jsonl and test/metadata.jsonl"),
        ("all_held_out", "holds out 4: at least one must be held out and one kept"),
        ("corrupt", r"003.png \(line 4 of metadata.jsonl\) cannot be read as an image"),
    ],
)
def test_bad_folders_are_refused_with_the_file_and_the_fix(tmp_path, problem, message):
    folder = write_folder(tmp_path, 4)
    held_out = 0.99 if problem == "all_held_out" else 0.5
    if problem == "no_metadata":
        (folder / "metadata.jsonl").unlink()
    if problem == "corrupt":
        (folder / "003.png").write_bytes((folder / "003.png").read_bytes()[:40])
    with pytest.raises(DataError, match=message):
        load_folder_splits(FolderLayout(folder, held_out=held_out))


def test_the_caption_stream_pairs_each_image_with_its_own_caption_and_resumes(tmp_path):
    write_folder(tmp_path, 10)
    splits = load_folder_splits(FolderLayout(tmp_path, held_out=0.2))
    encoder = RowEncoder()
    stream = caption_stream(splits.train, encoder, batch_size=3, seed=0)
    assert encoder.seen[: len(splits.train)] == list(splits.train.captions)
    for _ in range(3):  # into the second epoch (8 images, batches of 3)
        batch = next(stream)
        for image, value in zip(batch.x0, batch.cond.pooled[:, 0].long(), strict=True):
            assert torch.equal(image, splits.train.images[value - 1])  # RowEncoder: caption i encodes as i + 1
    state = stream.state_dict()
    expected = [next(stream).x0 for _ in range(3)]
    resumed = caption_stream(splits.train, RowEncoder(), batch_size=3, seed=0)
    resumed.load_state_dict(state)
    assert all(torch.equal(next(resumed).x0, x) for x in expected)
