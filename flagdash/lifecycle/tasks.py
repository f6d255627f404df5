"""Celery tasks of the short-term lifecycle: thin wrappers that call the services.

Both are safe to run twice: a snapshot overwrites this week's row, and the digest records one
delivery per owner and week once mailed and skips owners already recorded.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from flagdash.core import context
from flagdash.flags.models import Application
from flagdash.lifecycle import digest, snapshots

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=600,
    time_limit=660,
)
def lifecycle_snapshots_task() -> int:
    """Record this week's status counts of every application (and estimate missing weeks)."""
    with context.bind(source="worker"):
        done = 0
        for application in Application.objects.all():
            snapshots.snapshot_record(application)
            snapshots.snapshots_backfill(application)
            done += 1
    return done


class DigestNotSent(Exception):
    """Some owners' digests could not be sent (the task retries them)."""


DIGEST_RETRY_SECONDS = 300


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=4,
    soft_time_limit=600,
    time_limit=660,
)
def lifecycle_digest_task(self: Task) -> int:  # type: ignore[type-arg]
    """Mail this week's digest to every owner with overdue or ready-to-remove flags; if some
    sends failed, retry later (5, 10, 20, 40 minutes): owners already mailed are skipped."""
    with context.bind(source="worker"):
        run = digest.digest_send_all()
    logger.info("short-term digest: %d mail(s) sent, %d failed", run.sent, len(run.failed))
    if run.failed:
        raise self.retry(
            exc=DigestNotSent(f"digest not sent to {', '.join(run.failed[:20])}"),
            countdown=DIGEST_RETRY_SECONDS * 2**self.request.retries,
        )
    return run.sent
