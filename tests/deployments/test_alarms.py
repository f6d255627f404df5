"""The signed alarm webhook: a firing alarm rolls back; anything unsigned or malformed changes
nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from flagdash.audit.models import AuditEvent
from flagdash.deployments import engine, services
from flagdash.deployments.alarms import (
    alarm_deliveries_prune,
    alarm_fire,
    alarm_secret_rotate,
    alarm_signature,
)
from flagdash.deployments.models import AlarmDelivery, Deployment
from flagdash.flags import services as flag_services
from tests.deployments.conftest import reload, run_due

pytestmark = pytest.mark.django_db

ALARM_RECEIVED = "alarm.received"


# --- helpers ---------------------------------------------------------------------------------


def url(env, app_key: str | None = None, env_key: str | None = None) -> str:
    return reverse("alarm_webhook", args=[app_key or env.application.key, env_key or env.key])


def encode(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def sign(secret: str, body: bytes, *, timestamp: int | str | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Flagdash-Timestamp": ts, "X-Flagdash-Signature": f"sha256={digest}"}


def deliver(client, env, payload: Any, secret: str, *, content_type="application/json", **kw):
    body = encode(payload)
    return client.post(
        url(env), data=body, content_type=content_type, headers=sign(secret, body, **kw)
    )


def alertmanager(*alerts: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4), as it sends it."""
    if status is None:
        status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    common = {"service": "checkout"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "flagdash",
        "groupLabels": {"service": "checkout"},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def alert(name="HighErrorRate", status="firing", severity="critical", summary="5xx above 5 %"):
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, "service": "checkout"},
        "annotations": {"summary": summary},
        "startsAt": "2025-01-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "c0ffee" + name.lower()[:10],
    }


def state_of_deployments() -> list[tuple]:
    return list(
        Deployment.objects.order_by("id").values_list(
            "id", "state", "percentage", "rollback_requested_at", "rollback_trigger", "next_step_at"
        )
    )


@pytest.fixture
def secret(beta):
    return alarm_secret_rotate(actor=None, environment=beta)


@pytest.fixture
def base(clock, app, beta, flag, linear):
    """v2 is live in beta, deployed with the linear strategy (no bake)."""
    v2 = flag_services.config_version_create(actor=None, environment=beta, message="base")
    d = services.deployment_create(actor=None, environment=beta, version=v2, strategy=linear)
    for _ in range(5):
        run_due(clock)
        clock.tick(60)
    assert reload(d).state == "complete"
    return v2


@pytest.fixture
def rollout(clock, base, beta, flag, linear):
    """v3 rolling out in beta: at 25 %, deploying."""
    flag_services.flag_setting_update(
        actor=None, flag=flag, environment=beta, expected_revision=1, enabled=True
    )
    v3 = flag_services.config_version_create(actor=None, environment=beta, message="new")
    d = services.deployment_create(actor=None, environment=beta, version=v3, strategy=linear)
    run_due(clock)
    d = reload(d)
    assert (d.state, d.percentage) == ("deploying", 25)
    return d


@pytest.fixture
def completed(clock, base, editor, beta, flag):
    """A toggle deployed with AllAtOnce (10-minute bake) that has just completed."""
    d = flag_services.flag_set_enabled(
        actor=editor, flag=flag, environment=beta, enabled=True
    ).deployment
    run_due(clock)
    clock.tick(601)
    run_due(clock)
    d = reload(d)
    assert d.state == "complete"
    beta.refresh_from_db()
    assert beta.live_version_id == d.version_id
    return d


# --- a firing alarm rolls back -----------------------------------------------------------------


def test_alertmanager_firing_during_a_rollout_rolls_it_back(
    client, clock, beta, base, rollout, secret, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = deliver(client, beta, alertmanager(alert()), secret)
    assert response.status_code == 202, response.content
    assert response.json() == {
        "outcome": "rolling_back",
        "deployment": rollout.pk,
        "alarm": "HighErrorRate",
        "alarms": ["HighErrorRate"],
        "environment": "checkout/beta",
        "message": f"Deployment #{rollout.pk} (v{rollout.version.number}) is rolling back.",
    }
    assert callbacks, "the worker is nudged once the rollback commits"
    d = reload(rollout)
    assert d.rollback_trigger == "alarm" and d.alarm_name == "HighErrorRate"
    assert d.rollback_reason == "HighErrorRate (critical): 5xx above 5 %"
    assert d.next_step_at is not None and d.next_step_at <= timezone.now()

    # within one poll: the next advance of this deployment rolls it back
    assert engine.deployment_advance(d.pk, now=clock.now) != "skipped"
    d = reload(d)
    assert d.state == "rolled_back"
    beta.refresh_from_db()
    assert beta.live_version_id == base.pk
    by_type = dict(d.events.values_list("type", "triggered_by"))
    for step in ("rollback_requested", "rollback_started", "rolled_back"):
        assert by_type[step] == "alarm HighErrorRate"
    received = AuditEvent.objects.get(action=ALARM_RECEIVED)
    assert received.source == "alarm" and received.environment_id == beta.pk
    assert received.actor_name == "alarm HighErrorRate"
    assert received.after["outcome"] == "rolling_back"
    assert received.after["deployment"] == d.pk
    assert received.after["format"] == "alertmanager"
    assert AuditEvent.objects.filter(action="deployment.rolled_back", target_id=str(d.pk)).exists()
    requested = AuditEvent.objects.get(action="deployment.rollback_requested", target_id=str(d.pk))
    assert requested.source == "alarm" and requested.after["alarm"] == "HighErrorRate"
    delivery = AlarmDelivery.objects.get()
    assert delivery.outcome == "rolling_back" and delivery.deployment_id == d.pk
    assert delivery.alarm_names == ["HighErrorRate"]


def test_a_generic_alarm_rolls_back_a_baking_deployment(client, clock, beta, base, editor, secret):
    d = flag_services.flag_set_enabled(
        actor=editor, flag=beta.application.flags.get(), environment=beta, enabled=True
    ).deployment
    run_due(clock)
    assert reload(d).state == "baking"
    response = deliver(
        client,
        beta,
        {
            "alarm": "checkout-5xx",
            "state": "firing",
            "message": "Error rate 7 %",
            "environment": "beta",
        },
        secret,
    )
    assert response.status_code == 202, response.content
    assert response.json()["outcome"] == "rolling_back"
    run_due(clock)
    d = reload(d)
    assert d.state == "rolled_back"
    assert (d.rollback_trigger, d.alarm_name, d.rollback_reason) == (
        "alarm",
        "checkout-5xx",
        "Error rate 7 %",
    )
    assert AuditEvent.objects.filter(action=ALARM_RECEIVED, source="alarm").count() == 1


def test_several_firing_alerts_roll_back_once_and_are_all_named(
    client, clock, beta, rollout, secret
):
    payload = alertmanager(
        alert("HighErrorRate"),
        alert("HighLatency", severity="warning", summary="p99 above 2 s"),
        alert("HighErrorRate"),  # another instance of the same alert
    )
    response = deliver(client, beta, payload, secret)
    assert response.status_code == 202
    assert response.json()["alarms"] == ["HighErrorRate", "HighLatency"]
    d = reload(rollout)
    assert d.alarm_name == "HighErrorRate"
    assert d.rollback_reason == (
        "HighErrorRate (critical): 5xx above 5 %; HighLatency (warning): p99 above 2 s"
    )


def test_an_alarm_just_after_completion_restores_the_version_before(
    client, clock, beta, base, completed, secret
):
    response = deliver(client, beta, alertmanager(alert()), secret)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["outcome"] == "restoring"
    restore = Deployment.objects.get(pk=body["deployment"])
    assert restore.kind == "restore" and restore.restores_id == completed.pk
    assert restore.version_id == base.pk
    assert (restore.rollback_trigger, restore.alarm_name) == ("alarm", "HighErrorRate")
    run_due(clock)
    assert reload(restore).state == "complete"
    beta.refresh_from_db()
    assert beta.live_version_id == base.pk
    assert AuditEvent.objects.get(action=ALARM_RECEIVED).after["outcome"] == "restoring"


def test_an_alarm_after_the_bake_window_changes_nothing_but_is_recorded(
    client, beta, completed, secret
):
    # as if it had completed 11 minutes ago (AllAtOnce bakes for 10)
    Deployment.objects.filter(pk=completed.pk).update(
        finished_at=timezone.now() - dt.timedelta(minutes=11)
    )
    before = state_of_deployments()
    response = deliver(client, beta, alertmanager(alert()), secret)
    assert response.status_code == 202
    assert response.json()["outcome"] == "no_active_deployment"
    assert response.json()["deployment"] is None
    assert state_of_deployments() == before
    event = AuditEvent.objects.get(action=ALARM_RECEIVED)
    assert event.after["outcome"] == "no_active_deployment" and event.source == "alarm"


def test_the_bake_window_is_the_deployments_final_bake_time(beta, base, completed):
    finished = completed.finished_at
    late = alarm_fire(
        environment=beta,
        alarm_name="late",
        reason="x",
        now=finished + dt.timedelta(minutes=10, seconds=1),
    )
    assert late.outcome == "no_active_deployment"
    in_time = alarm_fire(
        environment=beta,
        alarm_name="in-time",
        reason="x",
        now=finished + dt.timedelta(minutes=9, seconds=59),
    )
    assert in_time.outcome == "restoring"


def test_a_repeated_alarm_does_not_roll_back_twice(client, clock, beta, base, completed, secret):
    first = deliver(client, beta, alertmanager(alert()), secret, timestamp=int(time.time()) - 5)
    again = deliver(client, beta, alertmanager(alert()), secret)  # Alertmanager repeats
    assert first.json()["outcome"] == "restoring"
    assert again.status_code == 202
    assert again.json()["outcome"] == "already_rolling_back"
    assert again.json()["deployment"] == first.json()["deployment"]
    assert Deployment.objects.filter(kind="restore").count() == 1
    run_due(clock)  # the restore runs, and is itself never rolled back by the alarm
    after = deliver(client, beta, alertmanager(alert()), secret, timestamp=int(time.time()) + 5)
    assert after.json()["outcome"] == "no_active_deployment"
    assert Deployment.objects.filter(kind="restore").count() == 1


def test_an_alarm_on_a_rollout_already_rolling_back_is_only_recorded(
    client, beta, rollout, editor, secret
):
    services.deployment_rollback(actor=editor, deployment=rollout, reason="by hand")
    before = state_of_deployments()
    response = deliver(client, beta, {"alarm": "x", "state": "firing"}, secret)
    assert response.json()["outcome"] == "already_rolling_back"
    assert state_of_deployments() == before
    assert reload(rollout).rollback_trigger == "user"


def test_resolved_alarms_are_ignored_and_recorded(client, beta, rollout, secret):
    before = state_of_deployments()
    response = deliver(client, beta, alertmanager(alert(status="resolved")), secret)
    assert response.status_code == 202
    assert response.json()["outcome"] == "ignored"
    generic = deliver(client, beta, {"alarm": "checkout-5xx", "state": "resolved"}, secret)
    assert generic.status_code == 202 and generic.json()["outcome"] == "ignored"
    assert state_of_deployments() == before
    events = AuditEvent.objects.filter(action=ALARM_RECEIVED).order_by("id")
    assert [(e.after["alarm"], e.after["state"], e.after["outcome"]) for e in events] == [
        ("HighErrorRate", "resolved", "ignored"),
        ("checkout-5xx", "resolved", "ignored"),
    ]


def test_control_characters_in_an_alarm_are_cleaned(client, beta, rollout, secret):
    payload = {"alarm": "bad\u0000name\n", "state": "firing", "message": "line\u0000one\ntwo"}
    response = deliver(client, beta, payload, secret)
    assert response.status_code == 202
    d = reload(rollout)
    assert (d.alarm_name, d.rollback_reason) == ("bad name", "line one two")


# --- refusals change nothing -------------------------------------------------------------------


FIRING = {"alarm": "checkout-5xx", "state": "firing"}


def _now() -> int:
    return int(time.time())


def _unsigned(client, beta, secret, production):
    return client.post(url(beta), data=encode(FIRING), content_type="application/json")


def _wrong_signature(client, beta, secret, production):
    return deliver(client, beta, FIRING, "0" * 64)


def _other_environments_secret(client, beta, secret, production):
    return deliver(client, beta, FIRING, alarm_secret_rotate(actor=None, environment=production))


def _tampered_body(client, beta, secret, production):
    headers = sign(secret, encode(FIRING))
    body = encode({**FIRING, "message": "changed"})
    return client.post(url(beta), data=body, content_type="application/json", headers=headers)


def _signature_without_prefix(client, beta, secret, production):
    body = encode(FIRING)
    headers = sign(secret, body)
    headers["X-Flagdash-Signature"] = headers["X-Flagdash-Signature"].removeprefix("sha256=")
    return client.post(url(beta), data=body, content_type="application/json", headers=headers)


def _stale_timestamp(client, beta, secret, production):
    return deliver(client, beta, FIRING, secret, timestamp=_now() - 301)


def _future_timestamp(client, beta, secret, production):
    return deliver(client, beta, FIRING, secret, timestamp=_now() + 301)


def _non_numeric_timestamp(client, beta, secret, production):
    return deliver(client, beta, FIRING, secret, timestamp="yesterday")


def _malformed_json(client, beta, secret, production):
    return deliver(client, beta, b'{"alarm": "x", "state": "firing"', secret)


def _not_an_object(client, beta, secret, production):
    return deliver(client, beta, [FIRING], secret)


def _neither_format(client, beta, secret, production):
    return deliver(client, beta, {"name": "x", "status": "firing"}, secret)


def _generic_without_state(client, beta, secret, production):
    return deliver(client, beta, {"alarm": "x"}, secret)


def _generic_with_unknown_field(client, beta, secret, production):
    return deliver(client, beta, {**FIRING, "severity": "page"}, secret)


def _generic_for_another_environment(client, beta, secret, production):
    return deliver(client, beta, {**FIRING, "environment": "production"}, secret)


def _alertmanager_wrong_version(client, beta, secret, production):
    return deliver(client, beta, {**alertmanager(alert()), "version": "3"}, secret)


def _alertmanager_without_alerts(client, beta, secret, production):
    return deliver(client, beta, {**alertmanager(alert()), "alerts": []}, secret)


def _alertmanager_bad_alert(client, beta, secret, production):
    return deliver(client, beta, alertmanager({**alert(), "labels": ["HighErrorRate"]}), secret)


def _not_json(client, beta, secret, production):
    return deliver(client, beta, b"alarm=x&state=firing", secret, content_type="text/plain")


def _too_big(client, beta, secret, production):
    payload = {**FIRING, "message": "x" * (256 * 1024)}
    return deliver(client, beta, payload, secret)


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        (_unsigned, 401, "unsigned"),
        (_wrong_signature, 401, "bad_signature"),
        (_other_environments_secret, 401, "bad_signature"),
        (_tampered_body, 401, "bad_signature"),
        (_signature_without_prefix, 401, "bad_signature"),
        (_stale_timestamp, 401, "stale_timestamp"),
        (_future_timestamp, 401, "stale_timestamp"),
        (_non_numeric_timestamp, 401, "bad_timestamp"),
        (_malformed_json, 400, "parse_error"),
        (_not_an_object, 400, "bad_payload"),
        (_neither_format, 400, "bad_payload"),
        (_generic_without_state, 400, "bad_payload"),
        (_generic_with_unknown_field, 400, "bad_payload"),
        (_generic_for_another_environment, 400, "bad_payload"),
        (_alertmanager_wrong_version, 400, "bad_payload"),
        (_alertmanager_without_alerts, 400, "bad_payload"),
        (_alertmanager_bad_alert, 400, "bad_payload"),
        (_not_json, 415, "unsupported_media_type"),
        (_too_big, 413, "payload_too_large"),
    ],
)
def test_a_refused_alarm_changes_nothing(
    client, beta, production, rollout, secret, send: Callable[..., Any], status, code
):
    before = state_of_deployments()
    response = send(client, beta, secret, production)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    if status == 401:
        assert "WWW-Authenticate" in response
    assert state_of_deployments() == before
    assert reload(rollout).rollback_requested_at is None
    assert not AuditEvent.objects.filter(action=ALARM_RECEIVED).exists()
    assert not AuditEvent.objects.filter(action="deployment.rollback_requested").exists()
    assert not AlarmDelivery.objects.exists()


def test_a_replayed_delivery_is_refused(client, beta, rollout, secret):
    body = encode(alertmanager(alert()))
    headers = sign(secret, body)
    first = client.post(url(beta), data=body, content_type="application/json", headers=headers)
    assert first.status_code == 202
    before = state_of_deployments()
    events = AuditEvent.objects.count()
    again = client.post(url(beta), data=body, content_type="application/json", headers=headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "replayed"
    assert state_of_deployments() == before
    assert AuditEvent.objects.count() == events
    assert AlarmDelivery.objects.count() == 1


def test_unknown_places_and_missing_secrets_look_like_a_bad_signature(
    client, beta, production, rollout, secret
):
    body = encode(FIRING)
    wrong = client.post(
        url(beta), data=body, content_type="application/json", headers=sign("0" * 64, body)
    )
    answers = [
        client.post(
            url(beta, app_key=app_key, env_key=env_key),
            data=body,
            content_type="application/json",
            headers=sign(secret, body),
        )
        for app_key, env_key in [("checkout", "nowhere"), ("nothing", "beta")]
    ]
    # production exists but never had a secret issued
    answers.append(
        client.post(
            url(production),
            data=body,
            content_type="application/json",
            headers=sign(secret, body),
        )
    )
    for answer in answers:
        assert answer.status_code == wrong.status_code == 401
        assert answer.json() == wrong.json()
    assert reload(rollout).rollback_requested_at is None


def test_only_post_is_allowed(client, beta, secret):
    response = client.get(url(beta))
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_the_webhook_needs_no_session_or_csrf_token(beta, rollout, secret):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    body = encode(FIRING)
    response = strict.post(
        url(beta), data=body, content_type="application/json", headers=sign(secret, body)
    )
    assert response.status_code == 202


def test_rotating_the_secret_invalidates_the_old_one(client, beta, rollout, secret):
    new = alarm_secret_rotate(actor=None, environment=beta)
    assert new != secret
    old = deliver(client, beta, FIRING, secret)
    assert old.status_code == 401
    assert reload(rollout).rollback_requested_at is None
    assert deliver(client, beta, FIRING, new).status_code == 202


def test_the_signing_recipe_matches_the_documented_one():
    body = b'{"alarm": "x", "state": "firing"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert alarm_signature("s3cret", "1700000000", body) == expected


def test_old_deliveries_are_pruned_after_a_day(beta):
    now = timezone.now()
    old = AlarmDelivery.objects.create(
        digest="a" * 64, environment=beta, received_at=now - dt.timedelta(days=1, seconds=1)
    )
    recent = AlarmDelivery.objects.create(
        digest="b" * 64, environment=beta, received_at=now - dt.timedelta(hours=23)
    )
    assert alarm_deliveries_prune(now) == 1
    assert list(AlarmDelivery.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not AlarmDelivery.objects.filter(pk=old.pk).exists()


# --- two alarms at once (PostgreSQL) -------------------------------------------------------------


def _run_together(*calls: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(i: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = call()
        except Exception as exc:  # asserted on by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_alert_groups_at_once_queue_one_restore(beta, base, completed):
    results = _run_together(
        *[
            (
                lambda name=name: alarm_fire(
                    environment=beta, alarm_name=name, reason=f"{name} firing"
                )
            )
            for name in ("HighErrorRate", "HighLatency", "Saturation")
        ]
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.outcome for r in results) == [
        "already_rolling_back",
        "already_rolling_back",
        "restoring",
    ]
    assert Deployment.objects.filter(kind="restore").count() == 1
    assert AuditEvent.objects.filter(action=ALARM_RECEIVED).count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_request_twice_at_once_is_accepted_once(beta, rollout):
    from django.test import Client

    secret = alarm_secret_rotate(actor=None, environment=beta)
    body = encode(alertmanager(alert()))
    headers = sign(secret, body)

    def post() -> int:
        return (
            Client()
            .post(url(beta), data=body, content_type="application/json", headers=headers)
            .status_code
        )

    assert sorted(_run_together(post, post)) == [202, 409]
    assert AuditEvent.objects.filter(action=ALARM_RECEIVED).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_alarm_that_cannot_get_its_turn_answers_503_and_can_be_sent_again(
    monkeypatch, beta, rollout
):
    """Another alarm of the environment holds the lock too long: 503 with Retry-After, nothing
    changed, and the same signed request is accepted once the lock is free (not a replay)."""
    import psycopg
    from django.conf import settings as django_settings
    from django.db import connection
    from django.test import Client

    from flagdash.deployments import alarms

    monkeypatch.setattr(alarms, "ALARM_LOCK_WAIT_SECONDS", 0.3)
    secret = alarm_secret_rotate(actor=None, environment=beta)
    body = encode(alertmanager(alert()))
    headers = sign(secret, body)
    db = django_settings.DATABASES["default"]
    other = psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname=connection.settings_dict["NAME"],
        autocommit=True,
    )
    other.execute("SELECT pg_advisory_lock(%s, %s)", [alarms._ALARM_LOCK_KEY, beta.pk])
    before = state_of_deployments()
    try:
        busy = Client().post(url(beta), data=body, content_type="application/json", headers=headers)
        assert busy.status_code == 503 and busy["Retry-After"] == "5"
        assert busy.json()["error"]["code"] == "busy"
        assert state_of_deployments() == before
    finally:
        other.execute("SELECT pg_advisory_unlock(%s, %s)", [alarms._ALARM_LOCK_KEY, beta.pk])
        other.close()
    again = Client().post(url(beta), data=body, content_type="application/json", headers=headers)
    assert again.status_code == 202, again.content
    assert reload(rollout).rollback_requested_at is not None
