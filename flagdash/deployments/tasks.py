"""Celery tasks of the deployment engine: thin wrappers that take ids and call the engine.

Messages are only nudges: the database says what is due, and the reconciler (beat) re-sends a
nudge for anything overdue, so a lost message delays a rollout by one reconcile period at most.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from flagdash.core import context
from flagdash.deployments import engine

logger = logging.getLogger(__name__)


# The hard limit stays below the lease a worker takes on the deployment, so a task that runs too
# long is killed before another worker may take the deployment over.
ADVANCE_TIME_LIMIT = max(2, int(settings.DEPLOYMENT_LEASE_SECONDS) - 10)


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),  # the database restarting
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
    soft_time_limit=max(1, ADVANCE_TIME_LIMIT - 5),
    time_limit=ADVANCE_TIME_LIMIT,
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


def _first_nudge(deployment_id: int, window: int) -> bool:
    """True unless this deployment was nudged within the window (nudge anyway if the cache is
    unreachable: a duplicate message is harmless, a missing one delays the rollout)."""
    try:
        return bool(cache.add(f"deployment-nudge:{deployment_id}", 1, timeout=window))
    except Exception as exc:
        logger.warning("reconciler: cache unavailable (%s); nudging anyway", exc)
        return True


@shared_task(acks_late=True, max_retries=0, soft_time_limit=30, time_limit=60)
def deployment_reconcile_task() -> int:
    """Nudge every deployment whose next step is overdue (its message was lost or delayed)."""
    due = engine.due_deployments(
        timezone.now(), grace_seconds=float(settings.DEPLOYMENT_RECONCILE_GRACE_SECONDS)
    )
    # One nudge per deployment per window: while workers are down, overdue deployments do not
    # pile a message per reconcile tick into the queue. A nudge lost with the broker is sent
    # again once the window has passed (the window never exceeds the lease).
    window = max(1, min(30, int(settings.DEPLOYMENT_LEASE_SECONDS)))
    nudged = [pk for pk in due if _first_nudge(pk, window)]
    for deployment_id in nudged:
        deployment_advance_task.delay(deployment_id)
    if nudged:
        logger.info("reconciler nudged %d deployment(s): %s", len(nudged), nudged)
    return len(nudged)
