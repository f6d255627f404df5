"""Celery tasks of the short-term lifecycle: thin wrappers that call the services.

Both are safe to run twice: a snapshot overwrites this week's row, and the digest claims one
delivery per owner and week before mailing.
"""

from __future__ import annotations

import logging

from celery import shared_task
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


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=600,
    time_limit=660,
)
def lifecycle_digest_task() -> int:
    """Mail this week's digest to every owner with overdue or ready-to-remove flags."""
    with context.bind(source="worker"):
        sent = digest.digest_send_all()
    logger.info("short-term digest: %d mail(s) sent", sent)
    return sent
