"""The weekly digest: each owner's overdue and ready-to-remove flags, by e-mail and over JSON.

Celery beat runs ``digest_send_all`` once a week (``LIFECYCLE_DIGEST_WEEKDAY`` at
``LIFECYCLE_DIGEST_HOUR``). Each owner gets at most one digest per week: a ``DigestDelivery``
row (unique per owner and week) is written right after their mail went out, and checked under
a per-owner lock before sending, so a retried task or a second beat run in the same week never
mails twice. A failed send writes nothing: the task retries the owners it failed for (with
backoff), the others are not mailed again. Owners without an e-mail address (logged) or with
nothing to clean up get nothing. The same list is ``GET /api/v1/short-term/digest/``
(``digest_for``), a page at a time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from flagdash.flags.models import Application, Flag
from flagdash.lifecycle import selectors
from flagdash.lifecycle.charts import monday
from flagdash.lifecycle.models import DigestDelivery

logger = logging.getLogger(__name__)
User = get_user_model()
DIGEST_STATUSES = (selectors.OVERDUE, selectors.READY)


@dataclass(frozen=True)
class DigestItem:
    application: Application
    flag: Flag
    status: str
    reason: str

    @property
    def path(self) -> str:
        return reverse("flag_detail", args=[self.application.key, self.flag.key])

    def data(self) -> dict[str, Any]:
        return {
            "application": self.application.key,
            "flag": self.flag.key,
            "name": self.flag.name,
            "status": self.status,
            "status_label": selectors.STATUS_LABELS[self.status],
            "reason": self.reason,
            "remove_by": self.flag.remove_by,
            "created_at": self.flag.created_at,
            "url": absolute(self.path),
        }


def absolute(path: str) -> str:
    return settings.FLAGDASH_BASE_URL.rstrip("/") + path


def digest_for(owner: Any, *, now: dt.datetime | None = None) -> list[DigestItem]:
    """The owner's short-term flags that are overdue or ready to remove, in every application
    (a fixed number of queries per application they own flags in)."""
    now = now or timezone.now()
    owned = (
        Flag.objects.filter(owner=owner, short_term=True, archived_at=None)
        .select_related("owner", "application")
        .prefetch_related("tags")
        .order_by("application__name", "key")
    )
    by_app: dict[int, list[Flag]] = {}
    apps: dict[int, Application] = {}
    for flag in owned:
        by_app.setdefault(flag.application_id, []).append(flag)
        apps[flag.application_id] = flag.application
    items = []
    for app_id, flags in by_app.items():
        lifecycle = selectors.short_term_flags(apps[app_id], flags=flags, now=now)
        for row in lifecycle.rows:
            if row.status in DIGEST_STATUSES:
                items.append(
                    DigestItem(apps[app_id], row.flag, row.status, row.reasons[row.status])
                )
    order = {s: i for i, s in enumerate(DIGEST_STATUSES)}
    items.sort(key=lambda i: (order[i.status], i.application.name, i.flag.key))
    return items


def digest_text(owner: Any, items: list[DigestItem]) -> tuple[str, str]:
    """(subject, body) of one owner's digest."""
    overdue = [i for i in items if i.status == selectors.OVERDUE]
    ready = [i for i in items if i.status == selectors.READY]
    parts = []
    if overdue:
        parts.append(f"{len(overdue)} overdue")
    if ready:
        parts.append(f"{len(ready)} ready to remove")
    subject = f"flagdash: your short-term flags — {' and '.join(parts)}"
    lines = [f"Hello {owner.get_username()},", ""]
    lines.append(
        "These short-term flags you own should leave the code and every environment. Remove "
        "their uses from the code, then archive them on the short-term page."
    )
    for title, group in (("Overdue", overdue), ("Ready to remove", ready)):
        if not group:
            continue
        lines += ["", f"{title}:"]
        for item in group:
            lines.append(f"- {item.application.name} / {item.flag.key}: {item.reason}")
            lines.append(f"  {absolute(item.path)}")
    apps = sorted({i.application.key for i in items})
    lines += ["", "Short-term pages:"]
    lines += [f"- {absolute(reverse('short_term', args=[key]))}" for key in apps]
    lines += ["", "— flagdash (weekly digest; owners with nothing to clean up get none)"]
    return subject, "\n".join(lines) + "\n"


_DIGEST_LOCK_NAMESPACE = 0x64696765  # "dige": pg_try_advisory_lock(namespace, owner id)


@contextmanager
def _owner_lock(owner: Any) -> Iterator[bool]:
    """Whether this process holds the owner's digest lock (a PostgreSQL session advisory
    lock, so no transaction stays open while mailing; elsewhere always True: SQLite is the
    single-process local run). Two workers never mail one owner at the same time."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_DIGEST_LOCK_NAMESPACE, owner.pk])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(%s, %s)", [_DIGEST_LOCK_NAMESPACE, owner.pk]
                )


def digest_send(owner: Any, *, now: dt.datetime | None = None) -> bool:
    """Send this week's digest to one owner, at most once. True if a mail went out.

    The week's ``DigestDelivery`` marker is written only after the mail went out, under a
    per-owner lock: a retried or duplicated task finds it and mails nothing, and a send that
    failed (or a worker killed mid-send) leaves no marker, so the next attempt mails. Raises
    what sending raised."""
    now = now or timezone.now()
    name = owner.get_username()
    if not owner.is_active:
        return False
    if not owner.email:
        logger.info("digest for %s skipped: no e-mail address", name)
        return False
    week = monday(timezone.localdate(now))
    if DigestDelivery.objects.filter(owner=owner, week=week).exists():
        return False
    with _owner_lock(owner) as held:
        if not held:
            logger.info("digest for %s skipped: another worker is sending it", name)
            return False
        if DigestDelivery.objects.filter(owner=owner, week=week).exists():
            return False  # sent by the worker that held the lock just before
        items = digest_for(owner, now=now)
        if not items:
            return False
        subject, body = digest_text(owner, items)
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [owner.email])
        try:
            with transaction.atomic():
                DigestDelivery.objects.create(
                    owner=owner, week=week, sent_at=timezone.now(), flag_count=len(items)
                )
        except IntegrityError:  # only without the lock (SQLite): recorded by another run
            logger.warning("digest for %s was recorded twice for the week of %s", name, week)
    logger.info("digest sent to %s: %d flags", name, len(items))
    return True


@dataclass(frozen=True)
class DigestRun:
    sent: int
    failed: list[str]  # usernames whose mail could not be sent (to try again later)


def digest_send_all(*, now: dt.datetime | None = None) -> DigestRun:
    """This week's digest to every owner who has something to clean up. A failure for one
    owner is logged and does not stop the others; the owners it failed for are returned
    (the task tries them again later; the others are not mailed again)."""
    now = now or timezone.now()
    owners = User.objects.filter(
        is_active=True, owned_flags__short_term=True, owned_flags__archived_at=None
    ).distinct()
    sent = 0
    failed = []
    for owner in owners.order_by("pk"):
        try:
            sent += digest_send(owner, now=now)
        except Exception:
            logger.exception("digest to %s failed; it is tried again later", owner.get_username())
            failed.append(owner.get_username())
    return DigestRun(sent=sent, failed=failed)
