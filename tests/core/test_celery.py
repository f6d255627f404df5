"""A real Celery worker on Redis runs flagdash's periodic task against the test database."""

from __future__ import annotations

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings
from django.db import connections

from flagdash.audit.tasks import audit_verify_chain_task
from flagdash.celery import app as celery_app
from flagdash.flags import services

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _close_connections(**kwargs) -> None:
    connections.close_all()


@pytest.fixture
def worker():
    if not settings.REDIS_AVAILABLE:
        pytest.fail("Redis is needed for the worker test")  # never silently skipped
    previous = dict(celery_app.conf)
    suffix = settings.CACHES["default"]["KEY_PREFIX"]
    celery_app.conf.update(
        broker_url=settings.CELERY_BROKER_URL,
        result_backend=settings.CELERY_BROKER_URL,
        task_default_queue=f"flagdash-test-{suffix}",  # never steal another suite's messages
        task_ignore_result=False,
    )
    # The worker thread opens its own database connection; close it after each task, as
    # Celery's Django fix-up does in a real worker, so the test database can be dropped.
    task_postrun.connect(_close_connections)
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            yield
    finally:
        task_postrun.disconnect(_close_connections)
    celery_app.conf.update(
        {
            k: previous[k]
            for k in ("broker_url", "result_backend", "task_default_queue", "task_ignore_result")
        }
    )


def test_the_worker_verifies_the_audit_chain(worker, app, beta):
    services.flag_create(actor=None, application=app, key="from-the-worker", name="x")
    result = audit_verify_chain_task.apply_async(ignore_result=False)
    checked = result.get(timeout=20)
    assert checked >= 4  # application, environment + version 1, flag


def test_the_beat_schedule_names_a_registered_task():
    entry = settings.CELERY_BEAT_SCHEDULE["audit-verify-chain"]
    assert entry["task"] in celery_app.tasks
