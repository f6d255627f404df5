"""The engine's fault tests again, on real Celery workers deploying to the AWS AppConfig fake:
a worker SIGKILLed mid-rollout and a Redis restart. AWS's minutes pass 120 times faster on the
fake's clock, as the engine's do (DEPLOYMENT_CLOCK_SPEED)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.conf import settings

from flagdash.backends.models import AwsAppConfigDeployment
from flagdash.deployments.models import Deployment, EventType
from tests.backends.conftest import REGION, aws_credentials, connect
from tests.deployments.test_worker import (
    actions,
    count,
    deploy,
    reload,
    steps,
    wait_rolling,
    wait_state,
)
from tests.deployments.workers import (
    FAST_ENGINE,
    REDIS_SERVER,
    Reconciler,
    RedisServer,
    Supervisor,
    celery_routed,
    processes,
    require,
    unique_queue,
    wait_for,
    worker_process,
)
from tests.factories import make_strategy
from tests.fakes.aws_appconfig import AppConfigFake, FakeClock

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fast_engine(settings):
    require(settings.REDIS_AVAILABLE, "Redis")
    for name, value in FAST_ENGINE.items():
        setattr(settings, name, value)


@pytest.fixture
def fast_fake(monkeypatch):
    """The fake with AWS's clock at 120×: a strategy minute passes in half a second."""
    aws_credentials(monkeypatch)  # inherited by the worker subprocesses
    with AppConfigFake(region=REGION, clock=FakeClock(speed=120)) as service:
        yield service


@pytest.fixture
def long_linear(db):
    """25 % more every 10 AWS minutes (5 s here), then a 2-minute bake (1 s)."""
    return make_strategy(
        "test-linear-40m", duration_minutes=40, growth_factor=25, final_bake_minutes=2
    )


def assert_completed_once_in_aws(d: Deployment, fake: AppConfigFake, setup) -> None:
    assert d.state == "complete" and d.percentage == 100, d.error
    assert count(d, EventType.STARTED) == 1 and count(d, EventType.COMPLETED) == 1
    seen = steps(d)
    assert seen and seen == sorted(seen) and seen[-1] == 100, seen
    assert actions(d).count("deployment.started") == 1
    assert actions(d).count("deployment.completed") == 1
    assert fake.calls["StartDeployment"] == 1
    assert fake.calls["CreateHostedConfigurationVersion"] == 1
    assert fake.calls["CreateDeploymentStrategy"] == 1
    assert len(fake.deployments[(setup.application_id, setup.environment_id)]) == 1
    assert len(fake.versions[(setup.application_id, setup.profile_id)]) == 1
    served = fake.served_version(setup.application_id, setup.environment_id, setup.profile_id)
    assert served == "1"
    assert d.environment.live_version_id == d.version_id


def test_a_worker_killed_mid_rollout_to_aws_starts_the_aws_deployment_once(
    fast_engine, fast_fake, app, beta, flag, long_linear
):
    """SIGKILL right after AWS started the deployment (before flagdash recorded it), and again in
    the middle of a step; the third worker finishes. AWS saw one version and one deployment."""
    setup = connect(fast_fake, beta)
    queue = unique_queue("aws-kill")
    broker = settings.CELERY_BROKER_URL
    with processes() as started, celery_routed(queue), Reconciler(every=0.5):
        first = worker_process("worker-1", queue, broker, backend_delay=0.5).start()
        started.append(first)
        first.wait_output(" ready.", timeout=30)
        d = deploy(flag, beta, long_linear)

        def started_in_aws_not_recorded() -> bool:
            record = AwsAppConfigDeployment.objects.filter(deployment_id=d.pk).first()
            return (
                record is not None
                and record.aws_deployment_number is not None
                and reload(d).backend_ref == ""
            )

        wait_for(started_in_aws_not_recorded, timeout=30, interval=0.02, what="the AWS start")
        first.kill(signal.SIGKILL)
        assert fast_fake.calls["StartDeployment"] == 1
        d = reload(d)
        assert d.state == "deploying" and d.backend_ref == "" and d.lease_token != ""
        first_lease = d.lease_token

        second = worker_process("worker-2", queue, broker, backend_delay=0.5).start()
        started.append(second)
        wait_rolling(d, timeout=30)

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
        d = wait_state(d, "complete", "failed", timeout=90)

    assert_completed_once_in_aws(d, fast_fake, setup)
    assert d.backend_ref.endswith("/1")


def test_a_redis_restart_mid_rollout_to_aws_delays_it_but_it_completes(
    fast_engine, fast_fake, app, beta, flag, long_linear
):
    require(os.access(REDIS_SERVER, os.X_OK), REDIS_SERVER)
    setup = connect(fast_fake, beta)
    redis = RedisServer().start()
    queue = unique_queue("aws-redis")
    try:
        with processes() as started, celery_routed(queue, redis.url), Reconciler(every=0.5):
            worker = Supervisor(
                lambda n: worker_process(f"worker-{n + 1}", queue, redis.url), started
            )
            worker.current.wait_output(" ready.", timeout=30)
            d = deploy(flag, beta, long_linear)
            before = wait_rolling(d, timeout=30)

            redis.kill()
            time.sleep(1)
            redis.start()

            d = wait_state(d, "complete", "failed", timeout=90, tick=worker.check)
            assert "Connection to broker lost" in started[0].output()
    finally:
        redis.close()
    assert_completed_once_in_aws(d, fast_fake, setup)
    assert steps(d)[0] <= before.percentage
