"""Celery tasks of the deployment engine: thin wrappers that take ids and call the engine.

Messages are only nudges: the database says what is due, and the reconciler (beat) re-sends a
nudge for anything overdue, so a lost message delays a rollout by one reconcile period at most.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from flagdash.core import context
from flagdash.deployments import engine

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),  # the database restarting
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
    soft_time_limit=90,
    time_limit=120,
)
def deployment_advance_task(deployment_id: int) -> str:
    with context.bind(source="worker"):
        outcome = engine.deployment_advance(int(deployment_id))
    logger.info("deployment %s: %s", deployment_id, outcome)
    return outcome


@shared_task(acks_late=True, max_retries=0, soft_time_limit=300, time_limit=360)
def alarm_deliveries_prune_task() -> int:
    """Forget alarm deliveries older than the replay window needs (hourly, beat)."""
    from flagdash.deployments.alarms import alarm_deliveries_prune

    return alarm_deliveries_prune()


@shared_task(acks_late=True, max_retries=0, soft_time_limit=30, time_limit=60)
def deployment_reconcile_task() -> int:
    """Nudge every deployment whose next step is overdue (its message was lost or delayed)."""
    due = engine.due_deployments(
        timezone.now(), grace_seconds=float(settings.DEPLOYMENT_RECONCILE_GRACE_SECONDS)
    )
    for deployment_id in due:
        deployment_advance_task.delay(deployment_id)
    if due:
        logger.info("reconciler nudged %d deployment(s): %s", len(due), due)
    return len(due)
