"""Reads of the audit log: filtering, keyset pages for the page, keyset batches for exports.

Every read here runs a fixed number of queries whatever the number of rows: the related
application, environment and flag come in the same query (``select_related``), and a page or a
batch is one query bounded by ``id`` (newest first), never an OFFSET.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.utils import timezone

from flagdash.audit.models import AuditEvent
from flagdash.core.diff import Change, diff
from flagdash.flags.models import Application, Environment, Flag

PAGE_SIZE = 50
EXPORT_BATCH_SIZE = 1000
RELATED = ("application", "environment", "flag")


@dataclass(frozen=True)
class AuditFilters:
    """What the audit log is narrowed to. Empty values mean "any"."""

    actor: str = ""
    action: str = ""
    application: str = ""  # application key
    environment: str = ""  # environment key (in any application unless narrowed)
    flag: str = ""  # flag key (in any application unless narrowed)
    date_from: dt.date | None = None  # inclusive, in the site time zone
    date_to: dt.date | None = None  # inclusive, in the site time zone
    source: str = ""

    @property
    def active(self) -> bool:
        return any(
            (
                self.actor,
                self.action,
                self.application,
                self.environment,
                self.flag,
                self.date_from,
                self.date_to,
                self.source,
            )
        )


def start_of_day(day: dt.date) -> dt.datetime:
    """Midnight at the start of ``day`` in the site's (current) time zone."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_current_timezone())


def audit_events(filters: AuditFilters) -> QuerySet[AuditEvent]:
    """The filtered events, newest first, with their application, environment and flag."""
    qs = AuditEvent.objects.select_related(*RELATED).order_by("-id")
    if filters.actor:
        qs = qs.filter(actor_name__iexact=filters.actor)
    if filters.action:
        qs = qs.filter(action=filters.action)
    if filters.source:
        qs = qs.filter(source=filters.source)
    # Keys resolve through a subquery so the filter hits the indexed foreign-key columns.
    if filters.application:
        qs = qs.filter(
            application_id__in=Application.objects.filter(key=filters.application).values("id")
        )
    if filters.environment:
        envs = Environment.objects.filter(key=filters.environment)
        if filters.application:
            envs = envs.filter(application__key=filters.application)
        qs = qs.filter(environment_id__in=envs.values("id"))
    if filters.flag:
        flags = Flag.objects.filter(key=filters.flag)
        if filters.application:
            flags = flags.filter(application__key=filters.application)
        qs = qs.filter(flag_id__in=flags.values("id"))
    if filters.date_from:
        qs = qs.filter(occurred_at__gte=start_of_day(filters.date_from))
    if filters.date_to and filters.date_to < dt.date.max:
        qs = qs.filter(occurred_at__lt=start_of_day(filters.date_to + dt.timedelta(days=1)))
    return qs


def _display(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class DiffLine:
    path: str
    kind: str  # "added" | "removed" | "changed"
    old: str  # "" when added
    new: str  # "" when removed


@dataclass(frozen=True)
class AuditRow:
    """One event as the page shows it, with its before/after as readable lines."""

    event: AuditEvent
    changes: list[DiffLine] = field(default_factory=list)


def diff_lines(before: Any, after: Any) -> list[DiffLine]:
    """A readable before/after: one line per changed leaf (``settings.enabled``: false → true)."""
    return [_line(change) for change in diff(before, after)]


def _line(change: Change) -> DiffLine:
    return DiffLine(
        path=change.path or "(value)",
        kind=change.kind,
        old="" if change.kind == "added" else _display(change.old),
        new="" if change.kind == "removed" else _display(change.new),
    )


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]
    next_before: int | None  # pass as ?before= for the next (older) page; None at the end


def audit_page(
    filters: AuditFilters, *, before: int | None = None, size: int = PAGE_SIZE
) -> AuditPage:
    """One page of events older than ``before`` (keyset pagination): exactly one query."""
    qs = audit_events(filters)
    if before is not None:
        qs = qs.filter(id__lt=before)
    events = list(qs[: size + 1])
    more = len(events) > size
    events = events[:size]
    rows = [AuditRow(event=e, changes=diff_lines(e.before, e.after)) for e in events]
    return AuditPage(rows=rows, next_before=events[-1].id if more else None)


# Export column -> the value path it is read from (related keys come through a join, so an
# export row costs no model instances, only one dict).
EXPORT_FIELDS = {
    "id": "id",
    "occurred_at": "occurred_at",
    "actor": "actor_name",
    "action": "action",
    "target_type": "target_type",
    "target_id": "target_id",
    "target": "target_repr",
    "application": "application__key",
    "environment": "environment__key",
    "flag": "flag__key",
    "source": "source",
    "request_id": "request_id",
    "client_ip": "client_ip",
    "before": "before",
    "after": "after",
    "prev_hash": "prev_hash",
    "hash": "hash",
}


def audit_records(
    filters: AuditFilters, *, batch_size: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every filtered event as an export record, newest first, in keyset batches.

    Memory stays one batch. Events appended while the export runs have higher ids than the
    first batch and are left out, so an export is a consistent slice of the chain.
    """
    size = batch_size or EXPORT_BATCH_SIZE
    paths = list(EXPORT_FIELDS.values())
    qs = audit_events(filters).select_related(None).values_list(*paths)
    last_id: int | None = None
    while True:
        batch_qs = qs if last_id is None else qs.filter(id__lt=last_id)
        batch = list(batch_qs[:size])
        if not batch:
            return
        for row in batch:
            record = dict(zip(EXPORT_FIELDS, row, strict=True))
            record["occurred_at"] = record["occurred_at"].isoformat()
            yield record
        if len(batch) < size:
            return
        last_id = batch[-1][0]


@dataclass(frozen=True)
class FilterChoices:
    applications: list[tuple[str, str]]  # (key, name)
    environments: list[tuple[str, str]]  # (key, label)
    actors: list[str]  # usernames, for the actor suggestions


def filter_choices() -> FilterChoices:
    """Options for the filter form: three small queries (applications, environments, users)."""
    applications = list(Application.objects.order_by("name", "id").values_list("key", "name"))
    names: dict[str, set[str]] = {}
    for key, name in Environment.objects.order_by("position", "key").values_list("key", "name"):
        names.setdefault(key, set()).add(name)
    environments = [
        (key, key if len(labels) > 1 else next(iter(labels))) for key, labels in names.items()
    ]
    user_model = get_user_model()
    actors = list(
        user_model.objects.order_by(user_model.USERNAME_FIELD).values_list(
            user_model.USERNAME_FIELD, flat=True
        )[:500]
    )
    return FilterChoices(applications=applications, environments=environments, actors=actors)
