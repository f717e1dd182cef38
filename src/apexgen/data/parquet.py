"""Parquet files in the Hugging Face datasets layout as image–caption records: the columns and captions
checked when the files are opened, the images decoded while iterating (``apexgen.data.image_text.Reader``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from apexgen.data.image_text import COLUMN_SETTINGS, TEXT_COLUMN_HINT, DataError, Reader, Record

PARQUET_ROWS_PER_READ = 64


class ParquetReader(Reader):
    """Parquet files with an image column (``{"bytes", "path"}`` structs as Hugging Face datasets writes
    them, or raw bytes) and a caption column."""

    def __init__(self, path: Path, resolution: int, image_column: str = "image", text_column: str = "text"):
        super().__init__(path, resolution)
        self.image_column, self.text_column = image_column, text_column
        self.files = parquet_files(path)
        self.row_counts = [self.check_file(file) for file in self.files]

    def check_file(self, file: Path) -> int:
        """Check the columns and captions of ``file``; return its row count."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(file)
        except (pa.ArrowException, OSError) as error:
            raise DataError(
                f"{file} is not a readable parquet file ({type(error).__name__}: {str(error)[:200]}); remove it "
                "or replace it with an intact copy"
            ) from None
        for role, column in (("image", self.image_column), ("text", self.text_column)):
            setting, holds = COLUMN_SETTINGS[role]
            if column not in schema.names:
                raise DataError(
                    f"{file} has no column '{column}'; its columns: {', '.join(schema.names)}; set {setting} to "
                    f"the column that holds the {holds}"
                )
        image_type = schema.field(self.image_column).type
        stores_bytes = pa.types.is_binary(image_type) or pa.types.is_large_binary(image_type)
        if not stores_bytes and not (pa.types.is_struct(image_type) and image_type.get_field_index("bytes") >= 0):
            raise DataError(
                f"{file}: column '{self.image_column}' holds {image_type}; expected image bytes or "
                "{'bytes', 'path'} structs as Hugging Face datasets writes them (another column holds the images: "
                "set data.image_column to it)"
            )
        try:
            texts = pq.read_table(file, columns=[self.text_column]).column(0)
        except (pa.ArrowException, OSError) as error:
            raise DataError(
                f"{file}: column '{self.text_column}' cannot be read ({type(error).__name__}: {str(error)[:200]}); "
                "the file is damaged: replace it with an intact copy"
            ) from None
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
            raise DataError(
                f"{file}: column '{self.text_column}' holds {texts.type}; expected captions (strings){TEXT_COLUMN_HINT}"
            )
        if texts.null_count:
            row = texts.to_pylist().index(None)
            raise DataError(f"{file}: {texts.null_count} rows have no caption in '{self.text_column}', e.g. row {row}")
        return len(texts)

    def __len__(self) -> int:
        return sum(self.row_counts)

    def records(self) -> Iterator[Record]:
        index = 0
        for file in self.files:
            columns = [self.image_column, self.text_column]
            row = 0
            for batch in record_batches(file, columns):
                for image, text in zip(*(batch.column(name).to_pylist() for name in columns), strict=True):
                    yield Record(index, text, image_source(image, file.parent), f"{file.name}, row {row}")
                    index, row = index + 1, row + 1

    def identity(self) -> dict:
        files = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in self.files]
        return {"kind": "parquet", "files": files, "columns": [self.image_column, self.text_column]}


def record_batches(file: Path, columns: list[str]) -> Iterator:
    """The file's record batches of ``columns``; a damaged page is a DataError naming the rows read before it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    batches, row = pq.ParquetFile(file).iter_batches(batch_size=PARQUET_ROWS_PER_READ, columns=columns), 0
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as error:
            raise DataError(
                f"{file} cannot be read past row {row} ({type(error).__name__}: {str(error)[:200]}); the file is "
                "damaged: replace it with an intact copy"
            ) from None
        if batch is None:
            return
        yield batch
        row += batch.num_rows


def parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else []
    if not files:
        raise DataError(f"{path} is neither a .parquet file nor a folder holding .parquet files")
    return files


def image_source(value: dict | bytes | None, folder: Path) -> Path | bytes | None:
    """The stored bytes; a struct with only a path points to a file next to the parquet file."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return value["bytes"]
        return None if value.get("path") is None else folder / value["path"]
    return value
