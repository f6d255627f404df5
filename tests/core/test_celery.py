"""A real Celery worker on Redis runs flagdash's periodic task against the test database."""

from __future__ import annotations

import threading

import pytest
from celery.signals import task_postrun
from django.conf import settings

from flagdash.audit.tasks import audit_verify_chain_task
from flagdash.celery import app as celery_app
from flagdash.flags import services
from tests.deployments.workers import in_process_worker, require, unique_queue

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker():
    require(settings.REDIS_AVAILABLE, "Redis")  # in CI a failure, never a silent skip
    with in_process_worker(unique_queue("core")) as w:
        yield w


def test_the_worker_verifies_the_audit_chain(worker, app, beta):
    services.flag_create(actor=None, application=app, key="from-the-worker", name="x")
    returned: list[int] = []
    done = threading.Event()

    def capture(sender=None, retval=None, **kwargs):
        if sender is audit_verify_chain_task or getattr(sender, "name", "") == (
            audit_verify_chain_task.name
        ):
            returned.append(retval)
            done.set()

    task_postrun.connect(capture, weak=False)
    try:
        audit_verify_chain_task.delay()
        assert done.wait(timeout=20), "the worker did not run the task"
    finally:
        task_postrun.disconnect(capture)
    assert returned[0] >= 4  # application, environment + version 1, flag


def test_the_beat_schedule_names_registered_tasks():
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in celery_app.tasks
