"""Writing and verifying the audit log.

``audit_record`` is the only writer. It must run inside the transaction of the change it
describes, so a change and its event commit or roll back together. Each event carries the hash
of the one before it; appends are serialised (a PostgreSQL advisory lock; SQLite serialises
writers itself) so the chain has exactly one order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from flagdash.audit.models import Action, AuditEvent
from flagdash.core import context
from flagdash.core.canonical import canonical_json, normalize_numbers, sha256_hex

GENESIS = "0" * 64
_ADVISORY_LOCK_KEY = 0x666C6167  # "flag": one app-wide lock for appending to the chain
BULK_BATCH = 500


def _actor_fields(actor: Any) -> tuple[int | None, str]:
    if actor is None or not getattr(actor, "is_authenticated", False):
        return None, ""
    return actor.pk, actor.get_username()


def event_digest(event: AuditEvent) -> str:
    """The hash of an event's content and its predecessor's hash."""
    payload = {
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target_repr": event.target_repr,
        "application_id": event.application_id,
        "environment_id": event.environment_id,
        "flag_id": event.flag_id,
        "before": normalize_numbers(event.before),
        "after": normalize_numbers(event.after),
        "request_id": event.request_id,
        "source": event.source,
        "client_ip": event.client_ip,
        "prev_hash": event.prev_hash,
    }
    return sha256_hex(canonical_json(payload))


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])


def audit_record(
    *,
    actor: Any,
    action: Action | str,
    target_type: str,
    target_id: object = "",
    target_repr: str = "",
    application: Any = None,
    environment: Any = None,
    flag: Any = None,
    before: Any = None,
    after: Any = None,
    actor_name: str | None = None,
) -> AuditEvent:
    """Append one event to the chain. Call it inside the transaction of the change."""
    if not connection.in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    entry = AuditEntry(
        action, target_type, target_id, target_repr, application, environment, flag, before, after
    )
    _lock_chain()
    event = _chained_event(entry, actor, actor_name, _chain_head(), timezone.now())
    event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class AuditEntry:
    """One event for ``audit_record_many`` (the fields ``audit_record`` takes per event)."""

    action: Action | str
    target_type: str
    target_id: object = ""
    target_repr: str = ""
    application: Any = None
    environment: Any = None
    flag: Any = None
    before: Any = None
    after: Any = None


def _chain_head() -> str:
    """The hash of the chain's last event (call with the chain locked)."""
    return AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first() or GENESIS


def _chained_event(
    entry: AuditEntry, actor: Any, actor_name: str | None, prev: str, now: Any
) -> AuditEvent:
    """The unsaved event for ``entry``, following ``prev`` in the chain, hash computed."""
    ctx = context.current()
    actor_id, name = _actor_fields(actor)
    event = AuditEvent(
        occurred_at=now,
        actor_id=actor_id,
        actor_name=(actor_name if actor_name is not None else name)[:150],
        action=str(entry.action),
        target_type=entry.target_type,
        target_id=str(entry.target_id)[:64],
        target_repr=entry.target_repr[:200],
        application_id=getattr(entry.application, "pk", entry.application),
        environment_id=getattr(entry.environment, "pk", entry.environment),
        flag_id=getattr(entry.flag, "pk", entry.flag),
        before=entry.before,
        after=entry.after,
        request_id=ctx.request_id,
        source=ctx.source,
        client_ip=ctx.client_ip,
        prev_hash=prev,
    )
    event.hash = event_digest(event)
    return event


def audit_record_many(
    *, actor: Any, entries: Sequence[AuditEntry], actor_name: str | None = None
) -> list[AuditEvent]:
    """Append several events of one change, chained in order, in a fixed number of queries
    (one lock, one read of the chain's head, one INSERT per ``BULK_BATCH`` events) however
    many there are. Call it inside the transaction of the change, as ``audit_record``."""
    if not connection.in_atomic_block:
        raise RuntimeError("audit_record_many must run inside the transaction of the change")
    if not entries:
        return []
    _lock_chain()
    prev = _chain_head()
    now = timezone.now()
    events = []
    for entry in entries:
        event = _chained_event(entry, actor, actor_name, prev, now)
        prev = event.hash
        events.append(event)
    # bulk_create inserts in list order, so ids follow the chain (iter_chain walks by id).
    return AuditEvent.objects.bulk_create(events, batch_size=BULK_BATCH)


def audit_record_standalone(**kwargs: Any) -> AuditEvent:
    """Record an event that is not part of a data change (logins, failed logins)."""
    with transaction.atomic():
        return audit_record(**kwargs)


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str

    def __str__(self) -> str:
        return f"audit chain broken at event #{self.event_id}: {self.reason}"


def iter_chain(batch_size: int = 2000) -> Iterator[AuditEvent]:
    """Every event, oldest first, in keyset batches (constant memory)."""
    last_id = 0
    while True:
        batch = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")[:batch_size])
        if not batch:
            return
        yield from batch
        last_id = batch[-1].id


def chain_head() -> tuple[int, str] | None:
    """(id, hash) of the newest event: an anchor to keep outside the database."""
    return AuditEvent.objects.order_by("-id").values_list("id", "hash").first()


def audit_verify_chain(batch_size: int = 2000) -> tuple[int, ChainBreak | None]:
    """Walk the whole chain. Returns (events checked, first break or None)."""
    expected_prev = GENESIS
    checked = 0
    for event in iter_chain(batch_size):
        if event.prev_hash != expected_prev:
            return checked, ChainBreak(
                event.id,
                "its link to the previous event does not match "
                "(an event before it was deleted, inserted or edited)",
            )
        if event_digest(event) != event.hash:
            return checked, ChainBreak(event.id, "its content does not match its hash (edited)")
        expected_prev = event.hash
        checked += 1
    return checked, None
