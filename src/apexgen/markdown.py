"""Markdown tables, the one format of every table apexgen writes (reports, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]], right_from: int | None = None) -> str:
    """A pipe table; the columns from index ``right_from`` on are right-aligned (None: none are)."""
    alignment = ["---:" if right_from is not None and i >= right_from else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(alignment) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
