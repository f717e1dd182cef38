from apexgen.config import build
from apexgen.data.config import DataConfig
from apexgen.data.image_text import ImageFolderReader, PromptReader
from apexgen.data.readers import open_reader
from tests.data.files import image_folder


def test_open_reader_follows_the_config(tmp_path):
    folder = image_folder(tmp_path / "set")
    assert isinstance(open_reader(build(DataConfig, {"path": str(folder), "resolution": 8})), ImageFolderReader)
    (tmp_path / "p.txt").write_text("x\n")
    assert isinstance(
        open_reader(build(DataConfig, {"kind": "prompts", "path": str(tmp_path / "p.txt")})), PromptReader
    )
