"""After a rollback nothing brings the bad change back: not the switches (the working state
follows the rollback), not the next toggle (it builds on what is served), not a deployment that
was queued on top of the bad one (it is cancelled). And a rollback or a failure stops what the
backend started, even when the worker died before recording it."""

from __future__ import annotations

import json

import pytest

from flagdash.audit.models import AuditEvent
from flagdash.backends.base import PermanentBackendError, TransientBackendError
from flagdash.backends.local import LocalBackend
from flagdash.backends.models import LocalServedState
from flagdash.deployments import engine, services
from flagdash.deployments.models import Deployment, DeploymentState, EventType
from flagdash.flags import services as flag_services
from flagdash.flags.models import FlagSetting
from tests.deployments.conftest import reload, run_due
from tests.factories import make_flag

pytestmark = pytest.mark.django_db

S = DeploymentState


@pytest.fixture
def other(app, envs):
    return make_flag(app, "express-checkout", name="Express checkout")


def enabled(flag, env) -> bool:
    return FlagSetting.objects.get(flag=flag, environment=env).enabled


def served_flags(version) -> dict:
    return json.loads(version.document)["flags"]


def base_live(clock, env, strategy):
    """A first version live in ``env`` (every flag off)."""
    v = flag_services.config_version_create(actor=None, environment=env, message="base")
    d = services.deployment_create(actor=None, environment=env, version=v, strategy=strategy)
    for _ in range(6):
        run_due(clock)
        clock.tick(60)
    assert reload(d).state == S.COMPLETE
    return v


def toggle(flag, env, on=True):
    return flag_services.flag_set_enabled(actor=None, flag=flag, environment=env, enabled=on)


# --- the working state and the next toggle ---------------------------------------------------


def test_after_a_rollback_the_switch_is_off_and_the_next_toggle_leaves_the_bad_change_out(
    clock, editor, app, beta, flag, other, linear
):
    base_live(clock, beta, linear)
    bad = toggle(flag, beta).deployment
    run_due(clock)
    assert reload(bad).state == S.BAKING and enabled(flag, beta)
    services.deployment_rollback(actor=editor, deployment=bad, reason="errors")
    run_due(clock)
    assert reload(bad).state == S.ROLLED_BACK
    assert not enabled(flag, beta)  # the switch shows what is served

    nxt = toggle(other, beta)
    flags = served_flags(nxt.version)
    assert flags[other.key]["enabled"] is True
    assert flags[flag.key]["enabled"] is False  # not the rolled-back change again


def test_an_edit_made_after_the_bad_version_is_kept(clock, editor, app, beta, flag, linear):
    base_live(clock, beta, linear)
    bad = toggle(flag, beta).deployment
    run_due(clock)
    setting = FlagSetting.objects.get(flag=flag, environment=beta)
    flag_services.flag_setting_update(
        actor=editor,
        flag=flag,
        environment=beta,
        expected_revision=setting.revision,
        enabled=False,
    )  # someone turned it off again in the working state, unsaved
    flag_services.flag_setting_update(
        actor=editor,
        flag=flag,
        environment=beta,
        expected_revision=setting.revision + 1,
        enabled=True,
    )  # ... and on: same values as the bad version, so it still counts as "what bad deployed"
    services.deployment_rollback(actor=editor, deployment=bad, reason="errors")
    run_due(clock)
    assert not enabled(flag, beta)


def test_a_toggle_queued_on_top_of_a_rolled_back_rollout_ships_without_the_bad_change(
    clock, editor, app, beta, flag, other, linear
):
    base_live(clock, beta, linear)
    bad = services.deployment_create(
        actor=None,
        environment=beta,
        version=toggle(flag, beta, True).version,
        strategy=linear,
    )
    Deployment.objects.filter(environment=beta, state=S.QUEUED).exclude(pk=bad.pk).delete()
    run_due(clock)
    assert reload(bad).state == S.DEPLOYING
    queued = toggle(other, beta).deployment  # waits behind `bad`, built on its version
    built_on = queued.version
    assert served_flags(built_on)[flag.key]["enabled"] is True
    services.deployment_rollback(actor=editor, deployment=reload(bad), reason="errors")
    run_due(clock)

    queued = reload(queued)
    assert queued.state in (S.DEPLOYING, S.BAKING)  # it still ships its own change ...
    flags = served_flags(queued.version)
    assert flags[other.key]["enabled"] is True
    assert flags[flag.key]["enabled"] is False  # ... without the rolled-back one
    note = queued.events.get(type=EventType.NOTE).message
    assert f"#{bad.pk} rolled back" in note and f"v{built_on.number} without" in note
    assert flag.key in note
    audit = AuditEvent.objects.get(action="deployment.rebased", target_id=str(queued.pk))
    assert audit.before == {"version": built_on.number}
    assert not enabled(flag, beta) and enabled(other, beta)  # the switches tell the truth


def test_a_queued_deployment_with_nothing_of_its_own_left_is_cancelled(
    clock, editor, app, beta, flag, linear
):
    base_live(clock, beta, linear)
    v = toggle(flag, beta, True).version
    bad = services.deployment_create(actor=None, environment=beta, version=v, strategy=linear)
    Deployment.objects.filter(environment=beta, state=S.QUEUED).exclude(pk=bad.pk).delete()
    run_due(clock)
    again = services.deployment_create(actor=None, environment=beta, version=v, strategy=linear)
    services.deployment_rollback(actor=editor, deployment=reload(bad), reason="errors")
    run_due(clock)
    again = reload(again)
    assert again.state == S.CANCELLED
    assert "nothing of this deployment's own" in again.events.get(type=EventType.CANCELLED).message


def test_a_queued_deployment_that_does_not_carry_the_bad_change_still_runs(
    clock, editor, app, beta, flag, other, linear
):
    base_live(clock, beta, linear)  # v1: all off
    v2 = toggle(other, beta, True)  # other on, built on v1 ...
    Deployment.objects.filter(pk=v2.deployment.pk).delete()  # ... saved, not deployed
    v3 = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True, deploy=False
    ).version  # flag on, built on v1 (other off)
    bad = services.deployment_create(actor=None, environment=beta, version=v3, strategy=linear)
    run_due(clock)
    good = services.deployment_create(
        actor=None, environment=beta, version=v2.version, strategy=linear
    )
    services.deployment_rollback(actor=editor, deployment=reload(bad), reason="errors")
    run_due(clock)
    assert reload(bad).state == S.ROLLED_BACK
    assert reload(good).state == S.DEPLOYING  # it never had the bad change: it runs
    assert enabled(other, beta) and not enabled(flag, beta)


def test_rolling_back_a_completed_deployment_twice_queues_one_restore(
    clock, editor, admin_user, app, beta, flag, linear, admin_client
):
    from django.urls import reverse

    base_live(clock, beta, linear)
    d = services.deployment_create(
        actor=None, environment=beta, version=toggle(flag, beta).version, strategy=linear
    )
    Deployment.objects.filter(environment=beta, state=S.QUEUED).exclude(pk=d.pk).delete()
    for _ in range(6):
        run_due(clock)
        clock.tick(60)
    assert reload(d).state == S.COMPLETE
    restore = services.deployment_rollback(actor=editor, deployment=reload(d), reason="one")
    with pytest.raises(Exception, match=f"#{restore.pk} is already rolling back"):
        services.deployment_rollback(actor=admin_user, deployment=reload(d), reason="two")
    assert Deployment.objects.filter(restores=d).count() == 1
    page = admin_client.get(reverse("deployment_detail", args=[app.key, d.pk])).content.decode()
    assert "Roll back…" not in page


# --- stopping what the backend started ---------------------------------------------------------


def test_a_rollback_stops_a_rollout_started_by_a_worker_that_died_before_recording_it(
    clock, editor, app, beta, flag, linear
):
    base_live(clock, beta, linear)
    d = services.deployment_create(
        actor=None,
        environment=beta,
        version=toggle(flag, beta).version,
        strategy=linear,
    )
    Deployment.objects.filter(environment=beta, state=S.QUEUED).exclude(pk=d.pk).delete()
    claim = engine._claim(d.pk, clock.now)
    assert claim is not None
    LocalBackend(beta.backend).start(engine.build_spec(claim.deployment), clock.now)
    # the worker dies here: nothing recorded, the lease runs out
    Deployment.objects.filter(pk=d.pk).update(lease_until=clock.now)
    served = LocalServedState.objects.get(environment=beta)
    assert served.candidate_version_id == d.version_id and served.candidate_percentage == 25
    clock.tick(1)
    services.deployment_rollback(actor=editor, deployment=reload(d), reason="stop it")
    run_due(clock)
    assert reload(d).state == S.ROLLED_BACK
    served.refresh_from_db()
    assert served.candidate_version_id is None and served.candidate_percentage == 0


def test_a_failure_right_after_the_start_stops_the_rollout(
    clock, monkeypatch, app, beta, flag, linear
):
    base_live(clock, beta, linear)

    def broken_status(self, spec, now):
        raise PermanentBackendError("status unreadable")

    monkeypatch.setattr(LocalBackend, "status", broken_status)
    d = services.deployment_create(
        actor=None, environment=beta, version=toggle(flag, beta).version, strategy=linear
    )
    Deployment.objects.filter(environment=beta, state=S.QUEUED).exclude(pk=d.pk).delete()
    run_due(clock)
    d = reload(d)
    assert d.state == S.FAILED and d.backend_ref == f"local-{d.pk}"
    served = LocalServedState.objects.get(environment=beta)
    assert served.candidate_version_id is None  # the previous version is served to everyone


def test_a_rollback_keeps_retrying_transient_errors_and_never_releases_the_environment(
    clock, monkeypatch, editor, app, beta, flag, linear, settings
):
    base_live(clock, beta, linear)
    d = services.deployment_create(
        actor=None, environment=beta, version=toggle(flag, beta).version, strategy=linear
    )
    Deployment.objects.filter(environment=beta, state=S.QUEUED).exclude(pk=d.pk).delete()
    run_due(clock)
    queued = toggle(flag, beta, on=False).deployment  # would start if the rollback gave up
    calls = {"n": 0}
    real_stop = LocalBackend.stop

    def flaky_stop(self, spec, now):
        calls["n"] += 1
        if calls["n"] <= settings.DEPLOYMENT_MAX_ATTEMPTS + 4:
            raise TransientBackendError("503 from the store")
        return real_stop(self, spec, now)

    monkeypatch.setattr(LocalBackend, "stop", flaky_stop)
    services.deployment_rollback(actor=editor, deployment=reload(d), reason="errors")
    for _ in range(settings.DEPLOYMENT_MAX_ATTEMPTS + 4):
        run_due(clock)
        assert reload(d).state == S.ROLLING_BACK
        assert reload(queued).state == S.QUEUED
        clock.tick(settings.DEPLOYMENT_RETRY_MAX_SECONDS)
    run_due(clock)
    assert reload(d).state == S.ROLLED_BACK
    retries = d.events.filter(type=EventType.RETRY).values_list("message", flat=True)
    assert len(retries) == settings.DEPLOYMENT_MAX_ATTEMPTS + 4
    assert "attempt 12" in retries[len(retries) - 1] and " of " not in retries[0].split("(")[-1]


def test_the_advance_task_is_killed_before_its_lease_runs_out(settings):
    from flagdash.deployments.tasks import ADVANCE_TIME_LIMIT, deployment_advance_task

    assert deployment_advance_task.time_limit == ADVANCE_TIME_LIMIT
    assert deployment_advance_task.soft_time_limit < ADVANCE_TIME_LIMIT
    assert ADVANCE_TIME_LIMIT < settings.DEPLOYMENT_LEASE_SECONDS


def test_a_start_that_fails_half_way_is_stopped_too(clock, monkeypatch, app, beta, flag, linear):
    """A key-value backend may write some keys, then fail: the engine asks it to stop even
    though start never returned a reference."""
    base_live(clock, beta, linear)
    real_start = LocalBackend.start

    def half_start(self, spec, now):
        real_start(self, spec, now)  # something is served already ...
        raise PermanentBackendError("the store refused the second key")  # ... then it fails

    monkeypatch.setattr(LocalBackend, "start", half_start)
    d = services.deployment_create(
        actor=None, environment=beta, version=toggle(flag, beta).version, strategy=linear
    )
    Deployment.objects.filter(environment=beta, state=S.QUEUED).exclude(pk=d.pk).delete()
    run_due(clock)
    d = reload(d)
    assert d.state == S.FAILED and d.backend_ref == ""
    served = LocalServedState.objects.get(environment=beta)
    assert served.candidate_version_id is None and served.candidate_percentage == 0
    note = d.events.filter(type=EventType.BACKEND).last()
    assert (
        note is not None
        and note.message == "Stopped at the backend: v2 is served to everyone again"
    )


def test_a_started_rollout_never_gives_up_on_transient_errors(
    clock, monkeypatch, app, beta, flag, linear, settings
):
    """Once the backend has the rollout, giving up would not stop it (AWS drives its own):
    flagdash keeps polling, with backoff, and follows it to the end."""
    base_live(clock, beta, linear)
    d = services.deployment_create(
        actor=None, environment=beta, version=toggle(flag, beta).version, strategy=linear
    )
    Deployment.objects.filter(environment=beta, state=S.QUEUED).exclude(pk=d.pk).delete()
    run_due(clock)
    assert reload(d).backend_ref
    calls = {"n": 0}
    real_status = LocalBackend.status

    def flaky_status(self, spec, now):
        calls["n"] += 1
        if calls["n"] <= settings.DEPLOYMENT_MAX_ATTEMPTS + 3:
            raise TransientBackendError("503 from GetDeployment")
        return real_status(self, spec, now)

    monkeypatch.setattr(LocalBackend, "status", flaky_status)
    for _ in range(settings.DEPLOYMENT_MAX_ATTEMPTS + 3):
        clock.tick(settings.DEPLOYMENT_RETRY_MAX_SECONDS)
        run_due(clock)
        assert reload(d).state == S.DEPLOYING
    for _ in range(8):
        clock.tick(60)
        run_due(clock)
    assert reload(d).state == S.COMPLETE


def test_a_failed_rollout_is_stopped_before_the_next_deployment_starts(
    clock, monkeypatch, app, beta, flag, linear
):
    base_live(clock, beta, linear)
    d = services.deployment_create(
        actor=None, environment=beta, version=toggle(flag, beta).version, strategy=linear
    )
    Deployment.objects.filter(environment=beta, state=S.QUEUED).exclude(pk=d.pk).delete()
    run_due(clock)
    nxt = toggle(flag, beta, on=False).deployment
    stops = {"n": 0}
    real_stop = LocalBackend.stop

    def refuse_status(self, spec, now):
        raise PermanentBackendError("the store lost the rollout")

    def slow_stop(self, spec, now):
        stops["n"] += 1
        if stops["n"] <= 2:
            raise TransientBackendError("store unavailable")
        return real_stop(self, spec, now)

    monkeypatch.setattr(LocalBackend, "status", refuse_status)
    monkeypatch.setattr(LocalBackend, "stop", slow_stop)
    clock.tick(60)
    run_due(clock)
    d = reload(d)
    assert d.state == S.ROLLING_BACK and d.error == "the store lost the rollout"
    for _ in range(2):
        assert reload(nxt).state == S.QUEUED  # not while the failed rollout may still serve
        clock.tick(5)
        run_due(clock)
    assert reload(d).state == S.FAILED and stops["n"] >= 3
    events = list(reload(d).events.values_list("type", flat=True))
    assert events[-1] == EventType.BACKEND and events.count(EventType.RETRY) == 2
    assert reload(nxt).started_at is not None  # the next one started after the stop
