"""CSV and JSON exports of the audit log, written as streams.

Rows come from ``selectors.audit_iter`` in keyset batches and are encoded one batch at a time,
so an export of a million events holds one batch in memory, never the whole set. The JSON
export is a single array written incrementally: ``[``, the events separated by commas, ``]``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.utils import timezone

from flagdash.audit.models import AuditEvent

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


def event_record(event: AuditEvent) -> dict[str, Any]:
    """One event as a flat record; ``before``/``after`` stay JSON values."""
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "actor": event.actor_name,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target": event.target_repr,
        "application": event.application.key if event.application else None,
        "environment": event.environment.key if event.environment else None,
        "flag": event.flag.key if event.flag else None,
        "source": event.source,
        "request_id": event.request_id,
        "client_ip": event.client_ip,
        "before": event.before,
        "after": event.after,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


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


def _chunks(events: Iterable[AuditEvent], size: int = CHUNK_ROWS) -> Iterator[list[AuditEvent]]:
    chunk: list[AuditEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def csv_stream(events: Iterable[AuditEvent]) -> Iterator[str]:
    """The header, then the events' rows, a chunk of rows per yielded string."""
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for chunk in _chunks(events):
        parts = []
        for event in chunk:
            record = event_record(event)
            parts.append(writer.writerow([_csv_cell(name, record[name]) for name in COLUMNS]))
        yield "".join(parts)


def json_stream(events: Iterable[AuditEvent]) -> Iterator[str]:
    """One JSON array of event records, written incrementally."""
    yield "["
    first = True
    for chunk in _chunks(events):
        parts = []
        for event in chunk:
            parts.append(
                ("\n" if first else ",\n") + json.dumps(event_record(event), ensure_ascii=False)
            )
            first = False
        yield "".join(parts)
    yield "\n]\n"


def export_filename(extension: str) -> str:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    return f"flagdash-audit-{stamp}.{extension}"
