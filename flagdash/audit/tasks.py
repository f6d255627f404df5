"""Periodic check of the audit chain (Celery beat)."""

from __future__ import annotations

import logging

from celery import shared_task

from flagdash.audit.services import audit_verify_chain, chain_head

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, soft_time_limit=1800, time_limit=1900, max_retries=0)
def audit_verify_chain_task() -> int:
    checked, broken = audit_verify_chain()
    if broken is not None:
        logger.error("%s (checked %d events before it)", broken, checked)
        return -broken.event_id
    head = chain_head()
    logger.info("audit chain intact: %d events, head #%s %s", checked, *(head or ("-", "-")))
    return checked
