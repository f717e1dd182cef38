"""The prompt sets of two text-to-image benchmarks, read as their scorers define them:

* GenEval (djghosh13/geneval): ``evaluation_metadata.jsonl``, one JSON object per line with at least a
  ``"prompt"``; the n-th object (from 0) is prompt ``n``, written to ``<n zero-padded to 5 digits>/``.
* DPG-Bench (ELLA's ``dpg_bench``): a folder of ``<item_id>.txt`` files, one prompt each, or the scorer's
  ``dpg_bench.csv`` (one row per question; the ``item_id`` and ``text`` columns give the prompts)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GENEVAL, DPG = "geneval", "dpg"
FORMATS = (GENEVAL, DPG)
GENEVAL_INDEX_DIGITS = 5  # the scorer's example names prompt folders 00000, 00001, ...
DPG_COLUMNS = ("item_id", "text")


class PromptFileError(ValueError):
    """A prompt file or folder that cannot be read as the benchmark's; the message names the problem and fix."""


@dataclass(frozen=True)
class BenchmarkPrompt:
    id: str  # GenEval: the zero-padded index; DPG-Bench: the item id (the .txt file's stem)
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)  # GenEval: the line's object, written back as is


@dataclass(frozen=True)
class PromptSet:
    format: str
    source: Path
    prompts: list[BenchmarkPrompt]


def prompt_format(path: Path, chosen: str | None) -> str:
    """``chosen`` when given (it must fit what ``path`` is), else inferred: .jsonl → geneval, a folder or .csv
    → dpg."""
    if not path.exists():
        raise PromptFileError(f"{path} does not exist; pass a GenEval .jsonl file or a DPG-Bench prompts folder")
    inferred = GENEVAL if path.suffix == ".jsonl" else DPG if path.is_dir() or path.suffix == ".csv" else None
    if chosen is None and inferred is None:
        raise PromptFileError(
            f"{path}: cannot tell the benchmark from the name; pass --format geneval (a .jsonl of objects with "
            "a 'prompt') or --format dpg (a folder of .txt files or a .csv with item_id and text columns)"
        )
    if chosen == GENEVAL and path.is_dir():
        raise PromptFileError(f"--format geneval needs a .jsonl file, and {path} is a folder; pass the .jsonl file")
    if chosen == DPG and not (path.is_dir() or path.suffix == ".csv"):
        raise PromptFileError(f"--format dpg needs a folder of .txt files or a .csv file, not {path}")
    return chosen or inferred


def read_prompts(path: Path, chosen: str | None = None) -> PromptSet:
    """The prompts of ``path`` in the benchmark's order; refuses an empty set."""
    kind = prompt_format(path, chosen)
    if kind == GENEVAL:
        prompts = read_geneval(path)
    else:
        prompts = read_dpg_csv(path) if path.is_file() else read_dpg_folder(path)
    if not prompts:
        raise PromptFileError(f"{path} holds no prompts; give a {kind} prompt set with at least one prompt")
    return PromptSet(kind, path, prompts)


def read_geneval(path: Path) -> list[BenchmarkPrompt]:
    """One prompt per non-blank line; a line that is not a JSON object with a text ``prompt`` is named."""
    prompts = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise PromptFileError(
                f"{path} line {number} is not valid JSON ({error.msg}); each line must be one JSON object"
            ) from None
        if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str) or not entry["prompt"].strip():
            raise PromptFileError(f'{path} line {number} has no "prompt" text; each line needs {{"prompt": "..."}}')
        index = f"{len(prompts):0{GENEVAL_INDEX_DIGITS}d}"
        prompts.append(BenchmarkPrompt(index, entry["prompt"], entry))
    return prompts


def read_dpg_folder(path: Path) -> list[BenchmarkPrompt]:
    """Each ``<item_id>.txt`` of the folder, sorted by item id."""
    files = sorted(path.glob("*.txt"))
    if not files:
        raise PromptFileError(f"{path} has no .txt files; DPG-Bench prompts are one <item_id>.txt per prompt")
    prompts = []
    for file in files:
        text = read_text(file).strip()
        if not text:
            raise PromptFileError(f"{file} is empty; write the prompt in it or remove the file")
        prompts.append(BenchmarkPrompt(check_item_id(file.stem, file), text))
    return prompts


def read_dpg_csv(path: Path) -> list[BenchmarkPrompt]:
    """The scorer's CSV: the first ``text`` of each ``item_id``, in the order of first appearance."""
    rows = csv.DictReader(read_text(path).splitlines(keepends=True))
    missing = [name for name in DPG_COLUMNS if name not in (rows.fieldnames or [])]
    if missing:
        raise PromptFileError(f"{path} has no {', '.join(missing)} column(s); the DPG-Bench CSV has item_id, text")
    texts: dict[str, str] = {}
    for row in rows:
        item, text = (row["item_id"] or "").strip(), (row["text"] or "").strip()
        if not item or not text:
            raise PromptFileError(f"{path} line {rows.line_num} has an empty item_id or text; fill it in or remove it")
        texts.setdefault(check_item_id(item, path), text)
    return [BenchmarkPrompt(item, text) for item, text in texts.items()]


def check_item_id(item: str, source: Path) -> str:
    """The scorer finds a prompt's questions by the image name up to its first dot: an id must be a plain name."""
    if any(character in item for character in "./\\"):
        raise PromptFileError(
            f"{source}: item id {item!r} has a '.', '/' or '\\', which the DPG-Bench scorer cannot match to its "
            "image; rename it"
        )
    return item


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PromptFileError(f"{path} is not UTF-8 text; save it as UTF-8") from None
