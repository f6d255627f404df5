"""The deployment state machine on the built-in backend, with a clock the test moves."""

from __future__ import annotations

import pytest

from flagdash.audit.models import AuditEvent
from flagdash.backends.base import RolloutPlan, TransientBackendError
from flagdash.backends.local import LocalBackend, sticky_bucket
from flagdash.backends.models import LocalRollout, LocalServedState
from flagdash.deployments import services
from flagdash.deployments.models import Deployment, DeploymentStrategy, EventType
from flagdash.flags import services as flag_services
from flagdash.flags.models import FlagSetting
from tests.deployments.conftest import reload, run_due

pytestmark = pytest.mark.django_db


# --- plans -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "percentages", "interval", "bake"),
    [
        ("AppConfig.AllAtOnce", [100], 0, 600),
        ("AppConfig.Linear50PercentEvery30Seconds", [50, 100], 30, 60),
        ("AppConfig.Canary10Percent20Minutes", [10, 20, 40, 80, 100], 240, 600),
        ("AppConfig.Linear20PercentEvery6Minutes", [20, 40, 60, 80, 100], 360, 1800),
    ],
)
def test_predefined_strategies_follow_aws_schedules(name, percentages, interval, bake):
    plan = DeploymentStrategy.objects.get(name=name, predefined=True).plan()
    assert plan.percentages() == percentages
    assert plan.step_interval() == interval
    assert plan.final_bake_seconds == bake


def test_a_plan_steps_then_bakes_then_completes():
    plan = RolloutPlan(60, "linear", 50, 60)
    assert plan.at(0).percentage == 50 and plan.at(0).state == "deploying"
    assert plan.at(0).next_change_in == 30
    assert plan.at(31).percentage == 100 and plan.at(31).state == "deploying"
    assert plan.at(60).state == "baking" and plan.at(60).next_change_in == 60
    assert plan.at(120).state == "complete" and plan.at(120).next_change_in is None


def test_sticky_buckets_are_stable_and_independent_per_flag():
    assert sticky_bucket("user-1", "a") == sticky_bucket("user-1", "a")
    keys = [f"user-{n}" for n in range(10_000)]
    at_20 = {k for k in keys if sticky_bucket(k, "a") < 20}
    at_30 = {k for k in keys if sticky_bucket(k, "a") < 30}
    assert at_20 <= at_30  # raising a rollout only adds keys
    assert 1800 < len(at_20) < 2200
    other = {k for k in keys if sticky_bucket(k, "b") < 20}
    assert len(at_20 & other) < 600  # another flag picks other keys (about 4 % overlap)


def test_pages_poll_soon_when_a_step_is_due_and_rarely_in_a_long_bake():
    import datetime as dt

    from django.utils import timezone

    now = timezone.now()
    d = Deployment(state="queued", next_step_at=now)
    assert d.ui_poll_ms(now) == 500  # the worker is about to act: look again soon
    d.next_step_at = now + dt.timedelta(seconds=2)
    assert d.ui_poll_ms(now) == 2300  # just after the next step, with room for the worker
    d.state, d.next_step_at = "baking", now + dt.timedelta(minutes=10)
    assert d.ui_poll_ms(now) == 5000  # a long bake: every 5 s, so an alarm still shows soon
    d.next_step_at = now - dt.timedelta(seconds=30)
    assert d.ui_poll_ms(now) == 500  # overdue
    d.next_step_at = None
    assert d.ui_poll_ms(now) == 5000


# --- a toggle deploys --------------------------------------------------------------------------


def test_a_toggle_queues_a_deployment_with_the_default_strategy(editor, app, beta, flag):
    result = flag_services.flag_set_enabled(actor=editor, flag=flag, environment=beta, enabled=True)
    d = result.deployment
    assert d.state == "queued" and d.version == result.version
    assert d.strategy.name == "AppConfig.AllAtOnce"
    assert d.created_by_name == "editor"
    assert AuditEvent.objects.filter(action="deployment.queued", target_id=str(d.pk)).exists()


def test_all_at_once_serves_everyone_then_bakes_then_completes(clock, app, beta, flag):
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True
    ).deployment
    run_due(clock)
    d = reload(d)
    assert (d.state, d.percentage) == ("baking", 100)
    served = LocalServedState.objects.get(environment=beta)
    assert served.candidate_version_id == d.version_id and served.candidate_percentage == 100
    clock.tick(599)
    run_due(clock)
    assert reload(d).state == "baking"
    clock.tick(2)
    run_due(clock)
    d = reload(d)
    assert d.state == "complete" and d.finished_at is not None
    beta.refresh_from_db()
    assert beta.live_version_id == d.version_id
    served.refresh_from_db()
    assert served.stable_version_id == d.version_id and served.candidate_version_id is None
    actions = list(
        AuditEvent.objects.filter(target_type="deployment", target_id=str(d.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "deployment.queued",
        "deployment.started",
        "deployment.baking",
        "deployment.completed",
    ]


def test_a_linear_rollout_raises_the_share_step_by_step(clock, app, beta, flag, linear):
    version = flag_services.config_version_create(actor=None, environment=beta, message="x")
    d = services.deployment_create(actor=None, environment=beta, version=version, strategy=linear)
    seen = []
    for _ in range(5):
        run_due(clock)
        d = reload(d)
        seen.append((d.state, d.percentage))
        clock.tick(60)
    assert seen == [
        ("deploying", 25),
        ("deploying", 50),
        ("deploying", 75),
        ("deploying", 100),
        ("complete", 100),
    ]
    steps = list(d.events.filter(type=EventType.PERCENTAGE).values_list("percentage", flat=True))
    assert steps == [25, 50, 75, 100]
    # the next step is polled when it is due, not before
    assert d.next_step_at is None


def test_a_second_deployment_waits_for_the_first(clock, app, beta, flag, linear):
    v2 = flag_services.config_version_create(actor=None, environment=beta, message="two")
    first = services.deployment_create(actor=None, environment=beta, version=v2, strategy=linear)
    flag_services.flag_setting_update(
        actor=None, flag=flag, environment=beta, expected_revision=1, enabled=True
    )
    v3 = flag_services.config_version_create(actor=None, environment=beta, message="three")
    second = services.deployment_create(actor=None, environment=beta, version=v3, strategy=linear)
    run_due(clock)
    assert reload(first).state == "deploying"
    second = reload(second)
    assert second.state == "queued"
    assert second.waiting_reason == f"Waiting for deployment #{first.pk} (deploying)"
    for _ in range(10):
        clock.tick(60)
        run_due(clock)
    assert reload(first).state == "complete"
    second = reload(second)
    assert second.state == "complete"
    assert second.previous_version_id == v2.pk
    beta.refresh_from_db()
    assert beta.live_version_id == v3.pk


def test_rolling_back_a_rollout_serves_the_previous_version_again(
    clock, editor, app, beta, flag, linear
):
    v2 = flag_services.config_version_create(actor=None, environment=beta, message="base")
    base = services.deployment_create(actor=None, environment=beta, version=v2, strategy=linear)
    for _ in range(5):
        run_due(clock)
        clock.tick(60)
    assert reload(base).state == "complete"
    toggle = flag_services.flag_set_enabled(actor=editor, flag=flag, environment=beta, enabled=True)
    DeploymentStrategy.objects.filter(pk=beta.default_strategy_id)  # AllAtOnce, 10 min bake
    run_due(clock)
    d = reload(toggle.deployment)
    assert d.state == "baking"
    services.deployment_rollback(actor=editor, deployment=d, reason="checkout errors")
    run_due(clock)
    d = reload(d)
    assert d.state == "rolled_back" and d.rollback_by_name == "editor"
    assert d.rollback_reason == "checkout errors"
    served = LocalServedState.objects.get(environment=beta)
    assert served.stable_version_id == v2.pk and served.candidate_version_id is None
    beta.refresh_from_db()
    assert beta.live_version_id == v2.pk
    types = list(d.events.order_by("id").values_list("type", flat=True))
    assert types[-4:] == ["rollback_requested", "rollback_started", "rolled_back", "note"]
    # the switch tells the truth: the flag is off again in the working state
    assert not FlagSetting.objects.get(flag=flag, environment=beta).enabled
    assert d.events.get(type="note").message == (
        "Working state of allow-bitcoin-at-checkout set back to what v2 serves"
    )


def test_a_rollback_needs_a_reason_and_an_allowed_role(clock, editor, viewer, app, beta, flag):
    d = flag_services.flag_set_enabled(
        actor=editor, flag=flag, environment=beta, enabled=True
    ).deployment
    run_due(clock)
    with pytest.raises(Exception, match="Say why"):
        services.deployment_rollback(actor=editor, deployment=reload(d), reason="  ")
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        services.deployment_rollback(actor=viewer, deployment=reload(d), reason="no")
    assert reload(d).rollback_requested_at is None


def test_rolling_back_a_completed_deployment_restores_the_version_before(
    clock, editor, app, beta, flag, linear
):
    v2 = flag_services.config_version_create(actor=None, environment=beta, message="base")
    services.deployment_create(actor=None, environment=beta, version=v2, strategy=linear)
    for _ in range(5):
        run_due(clock)
        clock.tick(60)
    bad = flag_services.flag_set_enabled(actor=editor, flag=flag, environment=beta, enabled=True)
    run_due(clock)
    clock.tick(601)
    run_due(clock)
    assert reload(bad.deployment).state == "complete"
    restore = services.deployment_rollback(
        actor=editor, deployment=reload(bad.deployment), reason="wrong price"
    )
    assert restore.kind == "restore" and restore.version_id == v2.pk
    assert restore.restores_id == bad.deployment.pk
    run_due(clock)
    assert reload(restore).state == "complete"
    beta.refresh_from_db()
    assert beta.live_version_id == v2.pk


def test_roll_back_to_version_n_stops_a_running_rollout_first(
    clock, editor, app, beta, flag, linear
):
    v2 = flag_services.config_version_create(actor=None, environment=beta, message="base")
    services.deployment_create(actor=None, environment=beta, version=v2, strategy=linear)
    for _ in range(5):
        run_due(clock)
        clock.tick(60)
    flag_services.flag_setting_update(
        actor=None, flag=flag, environment=beta, expected_revision=1, enabled=True
    )
    v3 = flag_services.config_version_create(actor=None, environment=beta, message="new")
    running = services.deployment_create(actor=None, environment=beta, version=v3, strategy=linear)
    run_due(clock)
    restore = services.version_restore(actor=editor, environment=beta, version=v2, reason="bad")
    run_due(clock)
    assert reload(running).state == "rolled_back"
    assert reload(restore).state == "complete"
    beta.refresh_from_db()
    assert beta.live_version_id == v2.pk


# --- faults ----------------------------------------------------------------------------------


def test_transient_backend_errors_are_retried_then_it_succeeds(clock, monkeypatch, app, beta, flag):
    calls = {"n": 0}
    real_start = LocalBackend.start

    def flaky_start(self, spec, now):
        calls["n"] += 1
        if calls["n"] <= 3:
            raise TransientBackendError("throttled")
        return real_start(self, spec, now)

    monkeypatch.setattr(LocalBackend, "start", flaky_start)
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True
    ).deployment
    for wait in (0, 1, 2, 4):
        clock.tick(wait)
        run_due(clock)
    d = reload(d)
    assert calls["n"] == 4
    assert d.state == "baking" and d.attempts == 0
    retries = list(d.events.filter(type=EventType.RETRY).values_list("message", flat=True))
    assert len(retries) == 3 and "throttled" in retries[0] and "attempt 1 of 8" in retries[0]
    assert LocalRollout.objects.filter(deployment_id=d.pk).count() == 1


def test_a_permanent_error_fails_the_deployment_and_the_next_one_still_runs(
    clock, monkeypatch, app, beta, flag
):
    from flagdash.backends.base import PermanentBackendError

    def refuse(self, spec, now):
        raise PermanentBackendError("AccessDenied: not allowed to StartDeployment")

    monkeypatch.setattr(LocalBackend, "start", refuse)
    first = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True
    ).deployment
    second = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=False
    ).deployment
    from flagdash.deployments.engine import deployment_advance

    deployment_advance(first.pk, now=clock.now)
    assert reload(first).state == "rolling_back"  # first the backend serves v1 to everyone ...
    assert reload(second).state == "queued"  # ... and nothing else starts meanwhile
    deployment_advance(first.pk, now=clock.now)
    first = reload(first)
    assert first.state == "failed"  # ... then it is over
    assert first.error == "AccessDenied: not allowed to StartDeployment"
    assert AuditEvent.objects.filter(action="deployment.failed", target_id=str(first.pk)).exists()
    monkeypatch.undo()
    run_due(clock)
    assert reload(second).state == "baking"


def test_starting_twice_starts_one_rollout(clock, app, beta, flag):
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True
    ).deployment
    run_due(clock)
    d = reload(d)
    from flagdash.deployments.engine import build_spec

    backend = LocalBackend(beta.backend)
    first = backend.start(build_spec(d), clock.now)
    again = backend.start(build_spec(d), clock.tick(5))
    assert first.backend_ref == again.backend_ref == d.backend_ref
    assert LocalRollout.objects.filter(deployment_id=d.pk).count() == 1


def test_a_deployment_held_by_a_live_lease_is_left_alone(clock, app, beta, flag):
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True
    ).deployment
    Deployment.objects.filter(pk=d.pk).update(
        lease_token="someone-else", lease_until=clock.now.replace(year=clock.now.year + 1)
    )
    assert run_due(clock) == []
    assert reload(d).state == "queued"


def test_an_expired_lease_is_taken_over(clock, app, beta, flag):
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True
    ).deployment
    Deployment.objects.filter(pk=d.pk).update(lease_token="dead-worker", lease_until=clock.now)
    clock.tick(1)
    run_due(clock)
    assert reload(d).state == "baking"


def test_a_rollout_that_fails_half_way_serves_the_previous_version_again(
    clock, monkeypatch, app, beta, flag, linear
):
    from flagdash.backends.base import PermanentBackendError

    v2 = flag_services.config_version_create(actor=None, environment=beta, message="x")
    d = services.deployment_create(actor=None, environment=beta, version=v2, strategy=linear)
    run_due(clock)
    served = LocalServedState.objects.get(environment=beta)
    assert served.candidate_version_id == v2.pk and served.candidate_percentage == 25

    def broken(self, spec, now):
        raise PermanentBackendError("store unreadable")

    monkeypatch.setattr(LocalBackend, "status", broken)
    clock.tick(60)
    run_due(clock)
    d = reload(d)
    assert d.state == "failed" and d.error == "store unreadable"
    served.refresh_from_db()
    assert served.candidate_version_id is None
    assert d.events.filter(message__startswith="Stopped at the backend").exists()


def test_the_reconciler_nudges_an_overdue_deployment_once_per_window(
    monkeypatch, app, beta, flag, settings
):
    from flagdash.deployments import tasks

    sent = []
    monkeypatch.setattr(tasks.deployment_advance_task, "delay", lambda pk: sent.append(pk))
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True
    ).deployment
    settings.DEPLOYMENT_RECONCILE_GRACE_SECONDS = 0
    Deployment.objects.filter(pk=d.pk).update(next_step_at=d.created_at)
    assert tasks.deployment_reconcile_task() == 1
    assert tasks.deployment_reconcile_task() == 0  # workers are down: no pile of messages
    assert sent == [d.pk]
    from django.core.cache import cache

    cache.delete(f"deployment-nudge:{d.pk}")  # the window has passed
    assert tasks.deployment_reconcile_task() == 1 and sent == [d.pk, d.pk]
