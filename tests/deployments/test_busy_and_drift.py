"""A backend busy with someone else's deployment, drift found at the backend, and deploying a
failed deployment again (overwriting drift when a person says so)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from flagdash.audit.models import AuditEvent
from flagdash.backends.base import (
    BackendBusy,
    DriftError,
    PermanentBackendError,
    TransientBackendError,
    parse_retry_after,
)
from flagdash.backends.local import LocalBackend
from flagdash.backends.models import LocalRollout
from flagdash.deployments import engine
from flagdash.deployments.models import Deployment, DeploymentState, EventType
from flagdash.flags import services as flag_services
from tests.deployments.conftest import reload, run_due

pytestmark = pytest.mark.django_db


def toggle(flag, env, enabled=True):
    return flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=env, enabled=enabled
    ).deployment


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def url(name, d):
    return reverse(name, args=[d.environment.application.key, d.pk])


@pytest.fixture
def drifting(monkeypatch):
    """The backend finds two settings changed outside flagdash unless told to overwrite."""
    seen = []
    real_start = LocalBackend.start

    def start(self, spec, now):
        seen.append(spec.overwrite_drift)
        if not spec.overwrite_drift:
            raise DriftError(
                "2 settings were changed outside flagdash since the last deployment.",
                details=["promo-banner: enabled changed", "max-cart-items: deleted"],
            )
        return real_start(self, spec, now)

    monkeypatch.setattr(LocalBackend, "start", start)
    return seen


# --- busy ------------------------------------------------------------------------------------


def test_a_busy_backend_makes_the_deployment_wait_without_using_up_attempts(
    clock, monkeypatch, viewer_client, app, beta, flag
):
    calls = {"n": 0}
    real_start = LocalBackend.start

    def busy_start(self, spec, now):
        calls["n"] += 1
        if calls["n"] <= 12:  # more than DEPLOYMENT_MAX_ATTEMPTS (8): waiting is not failing
            raise BackendBusy("Waiting for deployment 7 in AWS to finish", retry_in=20)
        return real_start(self, spec, now)

    monkeypatch.setattr(LocalBackend, "start", busy_start)
    d = toggle(flag, beta)
    run_due(clock)
    d = reload(d)
    assert d.state == DeploymentState.DEPLOYING and d.attempts == 0
    assert d.waiting_reason == "Waiting for deployment 7 in AWS to finish"
    assert 19 <= (d.next_step_at - clock.now).total_seconds() <= 21
    html = viewer_client.get(url("deployment_detail", d)).content.decode()
    assert "Waiting: Waiting for deployment 7 in AWS to finish" in html

    for _ in range(11):
        clock.tick(20)
        run_due(clock)
    d = reload(d)
    assert calls["n"] == 12 and d.state == DeploymentState.DEPLOYING and d.attempts == 0
    # one event for the wait, not one per poll
    assert d.events.filter(type=EventType.WAITING).count() == 1

    clock.tick(20)
    run_due(clock)
    d = reload(d)
    assert d.state == DeploymentState.BAKING and d.waiting_reason == ""
    assert LocalRollout.objects.filter(deployment_id=d.pk).count() == 1


def test_stopping_a_deployment_that_waits_for_the_backend_touches_nothing_there(
    clock, monkeypatch, editor_client, app, beta, flag
):
    def busy(self, spec, now):
        raise BackendBusy("Waiting for deployment 7 in AWS to finish")

    monkeypatch.setattr(LocalBackend, "start", busy)
    d = toggle(flag, beta)
    run_due(clock)
    response = editor_client.post(url("deployment_rollback", d), {"reason": "not now"})
    assert response.status_code == 302
    clock.tick(1)
    run_due(clock)
    d = reload(d)
    assert d.state == DeploymentState.ROLLED_BACK and d.waiting_reason == ""
    assert not LocalRollout.objects.filter(deployment_id=d.pk).exists()


# --- a backend asking to wait (429 Retry-After) ----------------------------------------------


def test_a_transient_error_asking_for_a_long_wait_is_retried_no_sooner(
    clock, monkeypatch, app, beta, flag
):
    calls = []
    real_start = LocalBackend.start

    def throttled(self, spec, now):
        calls.append(now)
        if len(calls) == 1:
            raise TransientBackendError("The backend is throttling; it asked for 45 s", retry_in=45)
        return real_start(self, spec, now)

    monkeypatch.setattr(LocalBackend, "start", throttled)
    d = toggle(flag, beta)
    run_due(clock)
    d = reload(d)
    assert d.state == DeploymentState.DEPLOYING and d.attempts == 1
    # not the 1 s of the first backoff step: the 45 s the backend asked for
    assert 44 <= (d.next_step_at - clock.now).total_seconds() <= 45
    retry = d.events.get(type=EventType.RETRY)
    assert "retrying in 45 s" in retry.message
    clock.tick(30)
    run_due(clock)
    assert len(calls) == 1  # not due yet
    clock.tick(16)
    run_due(clock)
    d = reload(d)
    assert len(calls) == 2 and d.state != DeploymentState.DEPLOYING and d.attempts == 0


@pytest.mark.parametrize(
    ("attempts", "retry_in", "max_seconds", "expected"),
    [
        (1, None, 60, 1.0),  # the engine's own backoff
        (4, None, 60, 8.0),
        (8, None, 60, 60.0),
        (1, 0.5, 60, 1.0),  # a shorter wait than the backoff: the backoff
        (1, 45, 1, 45.0),  # longer than DEPLOYMENT_RETRY_MAX_SECONDS: still honoured
        (1, 3600, 60, engine.RETRY_AFTER_MAX_SECONDS),  # but never more than 5 minutes
    ],
)
def test_the_retry_delay_honours_the_backends_wait_within_bounds(
    settings, attempts, retry_in, max_seconds, expected
):
    settings.DEPLOYMENT_RETRY_MAX_SECONDS = max_seconds
    exc = TransientBackendError("throttled", retry_in=retry_in)
    assert engine.retry_delay(attempts, exc) == expected
    assert engine.retry_delay(attempts, PermanentBackendError("no")) == min(
        max_seconds, 2.0 ** (attempts - 1)
    )


def test_retry_after_headers_are_read_as_seconds_or_dates():
    import datetime as dt

    now = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert parse_retry_after("30", now) == 30
    assert parse_retry_after("1.5", now) == 1.5
    assert parse_retry_after("Fri, 01 May 2026 12:02:00 GMT", now) == 120
    assert parse_retry_after("Fri, 01 May 2026 11:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert BackendBusy("busy").retry_in == 15.0  # waiting keeps its own default


# --- permanent errors with details, and drift -----------------------------------------------


def test_a_refusal_lists_the_backends_details_on_the_page(
    clock, monkeypatch, viewer_client, app, beta, flag
):
    def refuse(self, spec, now):
        raise PermanentBackendError(
            "AWS refused the document (InvalidConfiguration).",
            details=["flags.promo-banner.attributes.color: does not match pattern ^#[0-9a-f]{6}$"],
        )

    monkeypatch.setattr(LocalBackend, "start", refuse)
    d = toggle(flag, beta)
    run_due(clock)
    html = viewer_client.get(url("deployment_detail", d)).content.decode()
    alert = re.search(r'<div class="alert alert-error" role="alert">.*?</div>', html, re.S)
    assert alert and "InvalidConfiguration" in alert.group(0)
    assert "does not match pattern ^#[0-9a-f]{6}$" in alert.group(0)


def test_drift_fails_the_deployment_without_overwriting_and_says_what_changed(
    clock, drifting, viewer_client, app, beta, flag
):
    d = toggle(flag, beta)
    run_due(clock)
    d = reload(d)
    assert d.state == DeploymentState.FAILED and d.drifted
    assert d.error_details == ["promo-banner: enabled changed", "max-cart-items: deleted"]
    assert not LocalRollout.objects.filter(deployment_id=d.pk).exists()
    html = viewer_client.get(url("deployment_detail", d)).content.decode()
    assert "changed outside flagdash" in html and "max-cart-items: deleted" in html


def test_an_editor_overwrites_the_drift_after_reviewing_it(
    clock, drifting, editor_client, app, beta, flag
):
    d = toggle(flag, beta)
    run_due(clock)
    page = editor_client.get(url("deployment_detail", reload(d))).content.decode()
    assert "Review and overwrite…" in page
    confirm = editor_client.get(url("deployment_retry", d)).content.decode()
    assert "promo-banner: enabled changed" in confirm
    assert 'name="overwrite_drift"' in confirm

    response = editor_client.post(url("deployment_retry", d), {"overwrite_drift": "on"})
    assert response.status_code == 302
    retry = Deployment.objects.exclude(pk=d.pk).get(environment=beta, version=d.version)
    assert response["Location"] == url("deployment_detail", retry)
    assert retry.overwrite_drift and retry.strategy_id == d.strategy_id
    assert "Retry of #" in retry.message and "overwriting" in retry.message
    run_due(clock)
    assert reload(retry).state == DeploymentState.BAKING
    assert drifting == [False, True]
    assert AuditEvent.objects.filter(
        action="deployment.queued", target_id=str(retry.pk), actor_name="editor"
    ).exists()


def test_deploying_again_without_overwriting_meets_the_same_drift(
    clock, drifting, editor_client, app, beta, flag
):
    d = toggle(flag, beta)
    run_due(clock)
    assert editor_client.post(url("deployment_retry", d), {}).status_code == 302
    run_due(clock)
    retry = Deployment.objects.exclude(pk=d.pk).get(environment=beta, version=d.version)
    assert not retry.overwrite_drift and reload(retry).drifted


def test_only_failed_deployments_are_tried_again(clock, editor_client, app, beta, flag):
    d = toggle(flag, beta)
    run_due(clock)
    assert reload(d).state == DeploymentState.BAKING
    count = Deployment.objects.count()
    response = editor_client.post(url("deployment_retry", d), {})
    assert response.status_code == 422
    assert "only a failed deployment" in response.content.decode()
    assert Deployment.objects.count() == count


def test_overwriting_needs_drift(clock, monkeypatch, editor_client, app, beta, flag):
    def refuse(self, spec, now):
        raise PermanentBackendError("AccessDenied")

    monkeypatch.setattr(LocalBackend, "start", refuse)
    d = toggle(flag, beta)
    run_due(clock)
    count = Deployment.objects.count()
    response = editor_client.post(url("deployment_retry", d), {"overwrite_drift": "on"})
    assert response.status_code == 422
    assert "did not fail because of changes made outside flagdash" in response.content.decode()
    assert Deployment.objects.count() == count


def test_who_may_deploy_again(
    clock, drifting, viewer, outsider, editor, admin_user, app, beta, production, flag
):
    viewer_client, outsider_client, editor_client, admin_client = (
        logged_in(user) for user in (viewer, outsider, editor, admin_user)
    )
    failed_beta = toggle(flag, beta)
    failed_prod = toggle(flag, production)
    run_due(clock)
    count = Deployment.objects.count()
    for client, d in (
        (viewer_client, failed_beta),
        (outsider_client, failed_beta),
        (editor_client, failed_prod),  # protected: admins only
    ):
        assert client.post(url("deployment_retry", d), {"overwrite_drift": "on"}).status_code == 403
        assert client.get(url("deployment_retry", d)).status_code == 403
    assert Deployment.objects.count() == count
    page = viewer_client.get(url("deployment_detail", failed_beta)).content.decode()
    assert "Deploy again…" not in page and "Review and overwrite…" not in page
    assert admin_client.post(url("deployment_retry", failed_prod), {}).status_code == 302
    assert Deployment.objects.count() == count + 1


def test_the_built_in_backend_always_passes_its_connection_check(beta):
    result = LocalBackend(beta.backend).check()
    assert result.ok and "built-in" in result.message
