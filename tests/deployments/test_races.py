"""Two workers racing for one deployment on PostgreSQL: threads, each with its own connection.

The claim (``SELECT ... FOR UPDATE SKIP LOCKED`` plus a lease) must let exactly one of them act,
and a worker whose lease ran out while it acted must not record over the one that took over.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading

import pytest
from django.utils import timezone

from flagdash.audit.models import AuditEvent
from flagdash.backends.local import LocalBackend
from flagdash.backends.models import LocalRollout
from flagdash.deployments import engine
from flagdash.deployments.models import Deployment, EventType
from flagdash.flags import services as flag_services
from tests.deployments.workers import celery_routed, run_together, unique_queue

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_worker():
    """The services' nudges go to a queue of this test's own, deleted afterwards (no worker)."""
    with celery_routed(unique_queue("races")):
        yield


@pytest.fixture
def deployment(on_postgres, app, beta, flag) -> Deployment:
    """A queued deployment (AllAtOnce), due now."""
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True
    ).deployment
    assert d is not None
    return d


def reload(d: Deployment) -> Deployment:
    return Deployment.objects.get(pk=d.pk)


def started_events(d: Deployment) -> int:
    return d.events.filter(type=EventType.STARTED).count()


def audit_actions(d: Deployment) -> list[str]:
    return list(
        AuditEvent.objects.filter(target_type="deployment", target_id=str(d.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


@pytest.mark.parametrize("stage", ["queued", "started"])
def test_two_workers_claiming_one_deployment_exactly_one_wins(deployment, stage):
    d = deployment
    expected = "deploying"  # the winner's claim starts a queued deployment
    if stage == "started":
        expected = engine.deployment_advance(d.pk)  # baking; its next poll is made due below
    for _ in range(5):
        now = timezone.now()
        Deployment.objects.filter(pk=d.pk).update(
            next_step_at=now, lease_token="", lease_until=None
        )
        claim = functools.partial(engine._claim, d.pk, now)
        results = run_together(claim, claim)
        assert not [r for r in results if isinstance(r, Exception)], results
        claims = [r for r in results if isinstance(r, engine.Claim)]
        assert len(claims) == 1 and results.count(None) == 1, results
        fresh = reload(d)
        assert fresh.lease_token == claims[0].token
        assert fresh.lease_until == now + dt.timedelta(seconds=engine.lease_seconds())
        assert fresh.state == expected
    assert started_events(d) == 1
    assert audit_actions(d).count("deployment.started") == 1


def test_two_workers_advancing_one_deployment_start_the_backend_once(monkeypatch, deployment):
    """Both advance at the same moment; the winner's backend call is held open until the loser
    has given up, so the two really overlap."""
    d = deployment
    entered, release = threading.Event(), threading.Event()
    callers: list[str] = []
    real_start = LocalBackend.start

    def held_start(self, spec, now):
        callers.append(threading.current_thread().name)
        entered.set()
        assert release.wait(timeout=20), "never released"
        return real_start(self, spec, now)

    monkeypatch.setattr(LocalBackend, "start", held_start)
    now = timezone.now()
    loser_done = threading.Event()

    def advance() -> str:
        outcome = engine.deployment_advance(d.pk, now=now)
        if outcome == "skipped":
            loser_done.set()
        return outcome

    def release_when_loser_is_done() -> None:
        # Runs beside the two racers: the winner holds the backend until the loser returned.
        assert entered.wait(timeout=10)
        assert loser_done.wait(timeout=10)
        release.set()

    results = run_together(advance, advance, release_when_loser_is_done)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(results[:2]) == ["baking", "skipped"], results
    assert len(callers) == 1  # only the winner reached the backend
    assert LocalRollout.objects.filter(deployment_id=d.pk).count() == 1
    d = reload(d)
    assert d.state == "baking" and d.percentage == 100 and d.lease_token == ""
    assert started_events(d) == 1
    assert d.events.filter(type=EventType.PERCENTAGE).count() == 1
    assert audit_actions(d) == ["deployment.queued", "deployment.started", "deployment.baking"]


def test_a_worker_whose_lease_ran_out_records_nothing(monkeypatch, settings, deployment):
    """A stalls inside the backend past its lease; B takes over and finishes the step; when A
    wakes up it finds the lease gone and records nothing."""
    d = deployment
    stalled, release = threading.Event(), threading.Event()
    real_start = LocalBackend.start
    calls = {"n": 0}

    def first_call_stalls(self, spec, now):
        calls["n"] += 1
        if calls["n"] == 1:
            stalled.set()
            assert release.wait(timeout=20), "never released"
        return real_start(self, spec, now)

    monkeypatch.setattr(LocalBackend, "start", first_call_stalls)
    start = timezone.now()
    later = start + dt.timedelta(seconds=engine.lease_seconds() + 1)
    outcome: dict[str, object] = {}

    def slow_worker() -> None:
        from django.db import connections

        try:
            outcome["a"] = engine.deployment_advance(d.pk, now=start)
        except Exception as exc:  # handed to the assertions below
            outcome["a"] = exc
        finally:
            connections.close_all()

    a = threading.Thread(target=slow_worker, daemon=True)
    a.start()
    try:
        assert stalled.wait(timeout=10)
        assert engine.deployment_advance(d.pk, now=start) == "skipped"  # A's lease holds
        assert engine.deployment_advance(d.pk, now=later) == "baking"  # expired: B takes over
    finally:
        release.set()
        a.join(timeout=20)
    assert outcome["a"] == "lease-lost"
    assert LocalRollout.objects.filter(deployment_id=d.pk).count() == 1
    d = reload(d)
    assert d.state == "baking" and d.lease_token == ""
    assert started_events(d) == 1
    assert d.events.filter(type=EventType.PERCENTAGE).count() == 1
    assert audit_actions(d) == ["deployment.queued", "deployment.started", "deployment.baking"]


def test_an_alarm_while_the_worker_completes_the_rollout_still_rolls_it_back(
    monkeypatch, deployment, flag, beta
):
    """The alarm arrives while the worker is at the backend for the poll that completes the
    rollout. The rollback was accepted (a deploying rollout is stopped), so it must happen:
    completing the deployment would leave the bad version live with the alarm ignored."""
    from flagdash.backends.models import LocalServedState
    from flagdash.deployments import services

    clock = timezone.now()
    base = deployment  # AllAtOnce: 100 % at once, then a 10-minute bake
    engine.deployment_advance(base.pk, now=clock)
    clock += dt.timedelta(minutes=11)
    assert engine.deployment_advance(base.pk, now=clock) == "complete"
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=False
    ).deployment
    assert d is not None
    clock += dt.timedelta(seconds=1)
    assert engine.deployment_advance(d.pk, now=clock) == "baking"
    real_status = LocalBackend.status

    def alarm_during_the_last_poll(self, spec, now):
        status = real_status(self, spec, now)
        if status.state == "complete":
            services.deployment_rollback(
                actor=None, deployment=reload(d), reason="5xx", trigger="alarm", alarm_name="late"
            )
        return status

    monkeypatch.setattr(LocalBackend, "status", alarm_during_the_last_poll)
    clock += dt.timedelta(minutes=11)
    engine.deployment_advance(d.pk, now=clock)
    assert engine.deployment_advance(d.pk, now=clock) == "rolled_back"
    d = reload(d)
    types = list(d.events.order_by("id").values_list("type", flat=True))
    assert "completed" not in types
    assert types[-4:] == ["rollback_requested", "rollback_started", "rolled_back", "note"]
    assert "deployment.completed" not in audit_actions(d)
    assert audit_actions(d)[-1] == "deployment.rolled_back"
    served = LocalServedState.objects.get(environment=beta)
    assert served.stable_version_id == base.version_id and served.candidate_version_id is None
    beta.refresh_from_db()
    assert beta.live_version_id == base.version_id


def test_a_rollback_racing_the_completion_waits_for_it_instead_of_deadlocking(
    monkeypatch, deployment
):
    """The worker records completion (deployment row, then the environment's live version)
    while a person rolls back (environment, then deployment). Both take the environment first,
    so the person waits for the completion and then rolls back the completed deployment."""
    from flagdash.deployments import services

    d = deployment
    start = timezone.now()
    assert engine.deployment_advance(d.pk, now=start) == "baking"
    in_record, go = threading.Event(), threading.Event()
    real_apply = engine._apply_state

    def slow_apply(dep, status, now):
        in_record.set()  # the worker's record transaction holds its locks now
        assert go.wait(10)
        return real_apply(dep, status, now)

    monkeypatch.setattr(engine, "_apply_state", slow_apply)

    def worker() -> str:
        return engine.deployment_advance(d.pk, now=start + dt.timedelta(minutes=11))

    def person() -> object:
        assert in_record.wait(10)
        threading.Timer(0.5, go.set).start()  # the worker goes on while we wait for the lock
        return services.deployment_rollback(actor=None, deployment=reload(d), reason="errors")

    done, answer = run_together(worker, person)
    assert done == "complete", done
    # Not "deadlock detected": the person saw the completed deployment, the first one in Beta,
    # which has nothing before it to restore.
    from django.core.exceptions import ValidationError

    assert isinstance(answer, ValidationError), answer
    assert "was the first in Beta" in str(answer)
    assert reload(d).state == "complete"
