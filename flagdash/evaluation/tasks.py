"""Celery beat tasks: move evaluation counts from Redis into the database, prune old ones.

A flush that fails after renaming the Redis hashes leaves them for the next flush, which
stores them first (once: see ``counters.flush_redis``).
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from flagdash.evaluation import counters


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90, max_retries=0)
def evaluation_counts_flush_task() -> int:
    return counters.flush_redis()


@shared_task(acks_late=True, soft_time_limit=300, time_limit=360, max_retries=0)
def evaluation_counts_prune_task() -> int:
    return counters.prune(timezone.now())
