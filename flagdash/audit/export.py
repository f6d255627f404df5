"""CSV and JSON exports of the audit log, written as streams.

Records come from ``selectors.audit_records`` in keyset batches and are encoded one batch at a time,
so an export of a million events holds one batch in memory, never the whole set. The JSON
export is a single array written incrementally: ``[``, the events separated by commas, ``]``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.utils import timezone

COLUMNS = (
    "id",
    "occurred_at",
    "actor",
    "action",
    "target_type",
    "target_id",
    "target",
    "application",
    "environment",
    "flag",
    "source",
    "request_id",
    "client_ip",
    "before",
    "after",
    "prev_hash",
    "hash",
)
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 500


def neutralise(cell: str) -> str:
    """Prefix an apostrophe to a cell a spreadsheet would otherwise evaluate as a formula."""
    return "'" + cell if cell.startswith(FORMULA_TRIGGERS) else cell


def _csv_cell(name: str, value: Any) -> Any:
    if name in ("before", "after"):
        value = "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    return value


class _Echo:
    """A file-like object whose ``write`` hands back what it is given (for csv.writer)."""

    def write(self, value: str) -> str:
        return value


def _chunks(
    records: Iterable[dict[str, Any]], size: int = CHUNK_ROWS
) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def csv_stream(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The header, then the events' rows, a chunk of rows per yielded string."""
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for chunk in _chunks(records):
        yield "".join(
            writer.writerow([_csv_cell(name, record[name]) for name in COLUMNS]) for record in chunk
        )


def json_stream(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One JSON array of event records, written incrementally."""
    yield "["
    first = True
    for chunk in _chunks(records):
        parts = []
        for record in chunk:
            parts.append(("\n" if first else ",\n") + json.dumps(record, ensure_ascii=False))
            first = False
        yield "".join(parts)
    yield "\n]\n"


def export_filename(extension: str) -> str:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    return f"flagdash-audit-{stamp}.{extension}"
