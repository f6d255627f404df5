"""Rollouts on real Celery workers on Redis, with faults: a worker SIGKILLed mid-rollout, Redis
restarted, transient and permanent backend errors, an alarm, two deployments to one environment.

The engine runs sped up (``FAST_ENGINE``: a strategy minute passes in half a second, leases
last 2 s), so each rollout takes seconds. Nothing here calls the engine: workers do, nudged by
the engine's own messages and by a reconciler thread standing in for beat.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from flagdash.audit.models import AuditEvent
from flagdash.backends.base import PermanentBackendError, TransientBackendError
from flagdash.backends.local import LocalBackend
from flagdash.backends.models import LocalRollout, LocalServedState
from flagdash.deployments import services
from flagdash.deployments.models import Deployment, DeploymentStrategy, EventType
from flagdash.flags import services as flag_services
from flagdash.flags.models import ConfigVersion, Environment, Flag, FlagSetting
from tests.deployments.workers import (
    FAST_ENGINE,
    REDIS_SERVER,
    Reconciler,
    RedisServer,
    Supervisor,
    celery_routed,
    in_process_worker,
    processes,
    require,
    unique_queue,
    wait_for,
    worker_process,
)
from tests.factories import make_strategy

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fast_engine(settings):
    require(settings.REDIS_AVAILABLE, "Redis")
    for name, value in FAST_ENGINE.items():
        setattr(settings, name, value)


@pytest.fixture
def worker(fast_engine):
    """A real worker (solo pool) in a thread of the test process, on a queue of this test's."""
    with in_process_worker(unique_queue("inproc")) as w:
        yield w


@pytest.fixture
def beat(worker):
    with Reconciler(every=0.5) as r:
        yield r


@pytest.fixture
def linear(db):
    """At speed 120: 25 % more every 0.5 s for 2 s, then a 1 s bake."""
    return make_strategy("test-linear", duration_minutes=4, growth_factor=25, final_bake_minutes=2)


@pytest.fixture
def slow_linear(db):
    """At speed 120: 25 % more every 2 s for 8 s, then a 1 s bake (time to break things)."""
    return make_strategy(
        "test-linear-16m", duration_minutes=16, growth_factor=25, final_bake_minutes=2
    )


# --- helpers ---------------------------------------------------------------------------------


def new_version(flag: Flag, env: Environment) -> ConfigVersion:
    """A new saved version (the flag flipped), not deployed."""
    setting = FlagSetting.objects.get(flag=flag, environment=env)
    return flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=env, enabled=not setting.enabled, deploy=False
    ).version


def deploy(flag: Flag, env: Environment, strategy: DeploymentStrategy) -> Deployment:
    version = new_version(flag, env)
    return services.deployment_create(
        actor=None, environment=env, version=version, strategy=strategy
    )


def reload(d: Deployment) -> Deployment:
    return Deployment.objects.get(pk=d.pk)


def wait_state(
    d: Deployment, *states: str, timeout: float, tick: Callable[[], None] | None = None
) -> Deployment:
    def reached() -> Deployment | None:
        if tick is not None:
            tick()
        fresh = reload(d)
        return fresh if fresh.state in states else None

    try:
        return wait_for(reached, timeout=timeout, interval=0.1, what=f"#{d.pk} to be {states}")
    except AssertionError:
        fresh = reload(d)
        events = list(fresh.events.order_by("id").values_list("type", "percentage", "message"))
        raise AssertionError(
            f"#{d.pk} is {fresh.state} at {fresh.percentage} %, not {states}, after {timeout} s;"
            f" events: {events}"
        ) from None


def wait_rolling(d: Deployment, timeout: float = 20) -> Deployment:
    """Until the rollout is under way (25 % or more) but not finished."""

    def rolling() -> Deployment | None:
        fresh = reload(d)
        return fresh if fresh.state == "deploying" and 25 <= fresh.percentage < 100 else None

    return wait_for(rolling, timeout=timeout, what=f"#{d.pk} to be rolling out")


def steps(d: Deployment) -> list[float]:
    return list(
        d.events.filter(type=EventType.PERCENTAGE)
        .order_by("id")
        .values_list("percentage", flat=True)
    )


def count(d: Deployment, type: str) -> int:
    return d.events.filter(type=type).count()


def actions(d: Deployment) -> list[str]:
    return list(
        AuditEvent.objects.filter(target_type="deployment", target_id=str(d.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


def assert_completed_once(d: Deployment) -> None:
    """Complete, started exactly once at the backend and in our log, never stepping back."""
    assert d.state == "complete" and d.percentage == 100
    assert LocalRollout.objects.filter(deployment_id=d.pk).count() == 1
    assert count(d, EventType.STARTED) == 1
    assert count(d, EventType.COMPLETED) == 1
    seen = steps(d)
    assert seen and seen == sorted(seen) and seen[-1] == 100, seen
    assert actions(d).count("deployment.started") == 1
    assert actions(d).count("deployment.completed") == 1


def assert_live(d: Deployment) -> None:
    """The environment serves the deployment's version to everyone."""
    served = LocalServedState.objects.get(environment_id=d.environment_id)
    assert served.stable_version_id == d.version_id and served.candidate_version_id is None
    assert Environment.objects.get(pk=d.environment_id).live_version_id == d.version_id


# --- the happy path --------------------------------------------------------------------------


def test_a_toggle_rolls_out_to_completion_on_a_real_worker(worker, app, beta, flag, linear):
    """No beat here: the engine's own follow-up messages carry the rollout to the end."""
    flag_services.environment_update(
        actor=None, environment=beta, name=beta.name, protected=False, default_strategy=linear
    )
    started = time.monotonic()
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True
    ).deployment
    assert d is not None and d.strategy_id == linear.pk
    d = wait_state(d, "complete", "failed", timeout=30)
    assert_completed_once(d)
    assert_live(d)
    assert steps(d)[0] == 25 and len(set(steps(d))) >= 3  # it went up step by step
    assert count(d, EventType.BAKE_STARTED) == 1
    assert actions(d) == [
        "deployment.queued",
        "deployment.started",
        "deployment.baking",
        "deployment.completed",
    ]
    assert time.monotonic() - started < 10  # 3 s of plan, polled within the poll bounds


# --- faults ----------------------------------------------------------------------------------


def test_a_worker_killed_mid_rollout_leaves_it_to_the_next_worker(
    fast_engine, app, beta, flag, slow_linear
):
    """SIGKILL twice, at the worst moments: after the backend acted, before the engine recorded.

    The first worker dies right after it started the rollout at the backend; the second repeats
    the start (idempotent) and is killed in the middle of a step; the third finishes.
    """
    queue = unique_queue("kill")
    broker = settings.CELERY_BROKER_URL
    with processes() as started, celery_routed(queue), Reconciler(every=0.5):
        # Each backend call pauses 0.4 s after acting, before the engine records the result.
        first = worker_process("worker-1", queue, broker, backend_delay=0.4).start()
        started.append(first)
        first.wait_output(" ready.", timeout=30)
        d = deploy(flag, beta, slow_linear)

        def started_not_recorded() -> bool:
            fresh = reload(d)
            return (
                fresh.backend_ref == "" and LocalRollout.objects.filter(deployment_id=d.pk).exists()
            )

        wait_for(started_not_recorded, timeout=20, interval=0.02, what="the backend start")
        first.kill(signal.SIGKILL)
        killed_at = timezone.now()
        d = reload(d)
        assert d.state == "deploying" and d.backend_ref == "" and d.lease_token != ""
        first_lease = d.lease_token

        second = worker_process("worker-2", queue, broker, backend_delay=0.4).start()
        started.append(second)
        wait_rolling(d)  # the second worker took over once the dead worker's lease expired

        def acting_mid_step() -> Deployment | None:
            fresh = reload(d)
            held = fresh.lease_token not in ("", first_lease)
            return fresh if held and fresh.state == "deploying" and fresh.percentage < 100 else None

        wait_for(acting_mid_step, timeout=20, interval=0.02, what="the second worker acting")
        second.kill(signal.SIGKILL)
        at_kill = reload(d)
        assert at_kill.state == "deploying" and 25 <= at_kill.percentage < 100

        third = worker_process("worker-3", queue, broker).start()
        started.append(third)
        d = wait_state(d, "complete", "failed", timeout=60)

    assert_completed_once(d)
    assert_live(d)
    rollout = LocalRollout.objects.get(deployment_id=d.pk)
    assert rollout.started_at < killed_at  # the rollout kept its first start: never restarted
    assert steps(d)[-1] == 100 and steps(d)[0] <= at_kill.percentage


def test_a_redis_restart_mid_rollout_delays_it_but_it_completes(
    fast_engine, app, beta, flag, slow_linear
):
    """Redis (without persistence) dies mid-rollout, taking every queued nudge with it.

    The worker runs supervised, as in production (compose restarts it): on a lost broker
    connection kombu sometimes crashes the worker outright instead of reconnecting (an
    AttributeError while it restores unacknowledged ETA messages on a dead connection).
    """
    require(os.access(REDIS_SERVER, os.X_OK), REDIS_SERVER)
    redis = RedisServer().start()
    queue = unique_queue("redis")
    try:
        with processes() as started, celery_routed(queue, redis.url), Reconciler(every=0.5):
            worker = Supervisor(
                lambda n: worker_process(f"worker-{n + 1}", queue, redis.url), started
            )
            worker.current.wait_output(" ready.", timeout=30)
            d = deploy(flag, beta, slow_linear)
            before = wait_rolling(d)

            redis.kill()
            time.sleep(1)
            redis.start()  # the same port, empty

            d = wait_state(d, "complete", "failed", timeout=60, tick=worker.check)
            assert "Connection to broker lost" in started[0].output()  # the outage reached it
            print(f"worker exits during the outage: {worker.exits}")
    finally:
        redis.close()
    assert_completed_once(d)
    assert_live(d)
    assert steps(d)[0] <= before.percentage


def test_transient_backend_errors_are_retried_then_it_succeeds(
    monkeypatch, worker, beat, app, beta, flag, linear
):
    calls = {"n": 0}
    real_start = LocalBackend.start

    def flaky_start(self, spec, now):
        calls["n"] += 1
        if calls["n"] <= 3:
            raise TransientBackendError("ThrottlingException: rate exceeded")
        return real_start(self, spec, now)

    monkeypatch.setattr(LocalBackend, "start", flaky_start)
    d = deploy(flag, beta, linear)
    d = wait_state(d, "complete", "failed", timeout=30)
    assert calls["n"] == 4
    assert_completed_once(d)
    assert_live(d)
    retries = list(d.events.filter(type=EventType.RETRY).order_by("id").values_list("message"))
    assert len(retries) == 3, retries
    assert "ThrottlingException" in retries[0][0] and "attempt 1 of" in retries[0][0]
    assert "attempt 3 of" in retries[2][0]
    assert d.attempts == 0 and d.error == ""


def test_an_alarm_during_a_rollout_rolls_it_back_within_one_poll_period(
    worker, beat, admin_client, app, beta, flag, slow_linear
):
    from django.test import Client

    from flagdash.deployments.alarms import alarm_secret_rotate
    from tests.deployments.test_alarms import encode, sign, url

    secret = alarm_secret_rotate(actor=None, environment=beta)
    body = encode(
        {
            "alarm": "checkout-5xx",
            "state": "firing",
            "message": "error rate",
        }
    )
    d = wait_rolling(deploy(flag, beta, slow_linear))
    asked = time.monotonic()
    response = Client().post(
        url(beta), data=body, content_type="application/json", headers=sign(secret, body)
    )
    assert response.status_code == 202, response.content
    d = wait_state(d, "rolled_back", "failed", "complete", timeout=15)
    elapsed = time.monotonic() - asked
    assert d.state == "rolled_back"
    assert elapsed < settings.DEPLOYMENT_POLL_MAX_SECONDS + 1.0, elapsed
    assert d.alarm_name == "checkout-5xx" and d.rollback_trigger == "alarm"
    assert d.percentage == 0
    served = LocalServedState.objects.get(environment=beta)
    assert served.candidate_version_id is None and served.deployment_id is None
    assert LocalRollout.objects.get(deployment_id=d.pk).stopped_at is not None

    audit = AuditEvent.objects.get(
        action="deployment.rolled_back", target_type="deployment", target_id=str(d.pk)
    )
    assert audit.after["alarm"] == "checkout-5xx" and audit.after["reason"] == "error rate"
    assert audit.actor_name == "alarm checkout-5xx"

    page = admin_client.get(reverse("rollbacks", args=[app.key]))
    assert page.status_code == 200
    assert "checkout-5xx" in page.content.decode()


def test_a_second_deployment_waits_for_the_first_and_both_complete(
    worker, beat, app, beta, flag, linear
):
    first = deploy(flag, beta, linear)
    second = deploy(flag, beta, linear)

    def waiting() -> Deployment | None:
        now_first, now_second = reload(first), reload(second)
        blocked = now_first.state == "deploying" and now_second.state == "queued"
        return now_second if blocked and f"#{first.pk}" in now_second.waiting_reason else None

    waited = wait_for(waiting, timeout=15, what="the second deployment to wait")
    assert waited.started_at is None

    first = wait_state(first, "complete", "failed", timeout=30)
    second = wait_state(second, "complete", "failed", timeout=30)
    assert_completed_once(first)
    assert_completed_once(second)
    assert_live(second)
    assert second.started_at >= first.finished_at
    assert second.previous_version_id == first.version_id
    assert count(second, EventType.WAITING) >= 1
    beta.refresh_from_db()
    assert beta.live_version_id == second.version_id


def test_a_permanent_error_fails_the_deployment_and_later_ones_still_work(
    monkeypatch, worker, beat, admin_client, app, beta, flag, linear
):
    message = "AccessDenied: flagdash may not write to this store"

    def refuse(self, spec, now):
        raise PermanentBackendError(message)

    monkeypatch.setattr(LocalBackend, "start", refuse)
    failed = wait_state(deploy(flag, beta, linear), "failed", "complete", timeout=20)
    assert failed.state == "failed" and failed.error == message
    assert failed.events.filter(type=EventType.FAILED, message=message).exists()
    assert "deployment.failed" in actions(failed)
    assert count(failed, EventType.RETRY) == 0  # permanent: not retried
    page = admin_client.get(reverse("deployment_detail", args=[app.key, failed.pk]))
    assert page.status_code == 200
    assert message in page.content.decode()

    monkeypatch.undo()
    later = wait_state(deploy(flag, beta, linear), "complete", "failed", timeout=30)
    assert_completed_once(later)
    assert_live(later)
