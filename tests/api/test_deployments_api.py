"""Deployments over the JSON API: a toggle reports its deployment, a version is deployed with a
strategy (202), and a deployment is read with its state, percentage, versions and events."""

from __future__ import annotations

import pytest

from flagdash.audit.models import AuditEvent
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import Deployment
from flagdash.flags import services
from tests.api.conftest import error_of
from tests.deployments.conftest import Clock, run_due
from tests.factories import make_strategy

pytestmark = pytest.mark.django_db

FLAG = "apps/checkout/flags/allow-bitcoin-at-checkout/"
BETA_VERSIONS = "apps/checkout/environments/beta/versions/"
PROD_VERSIONS = "apps/checkout/environments/production/versions/"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def v2(beta, flag):
    """Beta's version 2 (with the flag), saved and not deployed."""
    return services.config_version_create(actor=None, environment=beta, message="with the flag")


def counts():
    return (Deployment.objects.count(), AuditEvent.objects.count())


# --- the toggle reports its deployment -------------------------------------------------------


def test_a_toggle_answers_the_deployment_it_queued(editor_api, flag):
    response = editor_api.post(FLAG + "environments/beta/toggle/", {"enabled": True})

    assert response.status_code == 200
    d = Deployment.objects.get()
    assert response.json()["deployment"] == {
        "id": d.pk,
        "state": "queued",
        "strategy": "AppConfig.AllAtOnce",
    }


# --- deploying a version ---------------------------------------------------------------------


def test_deploying_a_version_answers_202_with_the_queued_deployment(editor_api, v2):
    strategy = make_strategy("linear-4m", duration_minutes=4, growth_factor=25)

    response = editor_api.post(
        BETA_VERSIONS + "2/deploy/", {"strategy": "linear-4m", "message": "slowly"}
    )

    assert response.status_code == 202, response.content
    d = Deployment.objects.get()
    body = response.json()
    assert response["Location"] == f"/api/v1/deployments/{d.pk}/"
    assert (d.strategy, d.version, d.message) == (strategy, v2, "slowly")
    assert body["id"] == d.pk and body["state"] == "queued" and body["percentage"] == 0
    assert (body["application"], body["environment"], body["kind"]) == (
        "checkout",
        "beta",
        "deploy",
    )
    assert body["version"] == 2 and body["previous_version"] is None
    assert body["strategy"] == "linear-4m"
    assert body["plan"] == {
        "name": "linear-4m",
        "duration_minutes": 4,
        "growth_type": "linear",
        "growth_factor": 25.0,
        "final_bake_minutes": 0,
    }
    assert body["created_by"] == "editor" and body["message"] == "slowly"
    assert [e["type"] for e in body["events"]] == ["queued"]
    assert AuditEvent.objects.filter(action="deployment.queued", target_id=str(d.pk)).count() == 1


def test_without_a_strategy_the_environments_default_is_used(editor_api, beta, v2):
    services.environment_update(
        actor=None,
        environment=beta,
        name=beta.name,
        protected=False,
        default_strategy=deployment_services.strategy_by_name(
            "AppConfig.Linear50PercentEvery30Seconds"
        ),
    )
    response = editor_api.post(BETA_VERSIONS + "2/deploy/")
    assert response.status_code == 202
    assert response.json()["strategy"] == "AppConfig.Linear50PercentEvery30Seconds"
    assert response.json()["message"] == "with the flag"  # the version's message


def test_an_unknown_strategy_is_422_at_the_field(editor_api, v2):
    before = counts()
    response = editor_api.post(BETA_VERSIONS + "2/deploy/", {"strategy": "Nope"})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert error["fields"]["strategy"][0]["code"] == "unknown_strategy"
    assert counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"strategy": 5}, "strategy"),
        ({"message": ["x"]}, "message"),
        ({"percentage": 50}, "percentage"),
    ],
)
def test_a_wrongly_typed_body_is_400(editor_api, v2, body, field):
    before = counts()
    response = editor_api.post(BETA_VERSIONS + "2/deploy/", body)
    assert response.status_code == 400
    assert field in error_of(response)["fields"]
    assert counts() == before


def test_a_message_that_is_too_long_is_422(editor_api, v2):
    response = editor_api.post(BETA_VERSIONS + "2/deploy/", {"message": "x" * 501})
    assert response.status_code == 422
    assert error_of(response)["fields"]["message"][0]["code"] == "too_long"
    assert not Deployment.objects.exists()


def test_deploying_the_live_version_is_422(editor_api, beta, v2, clock):
    deployment_services.deployment_create(
        actor=None,
        environment=beta,
        version=v2,
        strategy=deployment_services.strategy_by_name("flagdash.Immediate"),
    )
    run_due(clock)
    before = counts()
    response = editor_api.post(BETA_VERSIONS + "2/deploy/")
    assert response.status_code == 422
    assert error_of(response)["fields"]["version"][0]["code"] == "already_live"
    assert counts() == before


def test_an_unknown_version_is_404(editor_api, v2):
    response = editor_api.post(BETA_VERSIONS + "99/deploy/")
    assert response.status_code == 404
    assert error_of(response)["message"] == "Beta has no version 99."


def test_deploy_only_accepts_post(editor_api, v2):
    response = editor_api.get(BETA_VERSIONS + "2/deploy/")
    assert response.status_code == 405 and response["Allow"] == "POST"


@pytest.mark.parametrize(
    ("who", "versions", "status"),
    [
        ("viewer_api", BETA_VERSIONS, 403),
        ("outsider_api", BETA_VERSIONS, 403),
        ("editor_api", PROD_VERSIONS, 403),
        ("editor_api", BETA_VERSIONS, 202),
        ("admin_api", PROD_VERSIONS, 202),
    ],
)
def test_who_may_deploy(request, who, versions, status, production, flag):
    for env in production.application.environments.all():
        services.config_version_create(actor=None, environment=env, message="m")
    api = request.getfixturevalue(who)
    before = counts()
    response = api.post(versions + "2/deploy/")
    assert response.status_code == status, response.content
    if status == 403:
        assert error_of(response)["code"] == "forbidden"
        assert counts() == before
    else:
        assert Deployment.objects.count() == 1


def test_deploying_needs_credentials(client, v2):
    response = client.post(
        "/api/v1/" + BETA_VERSIONS + "2/deploy/", "{}", content_type="application/json"
    )
    assert response.status_code == 401
    assert not Deployment.objects.exists()


# --- reading a deployment --------------------------------------------------------------------


def test_a_deployment_reads_its_progress_and_events(viewer_api, beta, v2, clock):
    linear = make_strategy("linear-4m", duration_minutes=4, growth_factor=25)
    d = deployment_services.deployment_create(
        actor=None, environment=beta, version=v2, strategy=linear
    )
    run_due(clock)
    clock.tick(60)
    run_due(clock)

    response = viewer_api.get(f"deployments/{d.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "deploying" and body["percentage"] == 50
    assert body["version"] == 2 and body["previous_version"] is None
    assert body["strategy"] == "linear-4m"
    assert body["started_at"] and body["finished_at"] is None and body["rollback"] is None
    types = [e["type"] for e in body["events"]]
    assert types[:2] == ["queued", "started"]
    assert [e["percentage"] for e in body["events"] if e["type"] == "percentage"][-1] == 50

    for _ in range(4):
        clock.tick(60)
        run_due(clock)
    done = viewer_api.get(f"deployments/{d.pk}/").json()
    assert done["state"] == "complete" and done["percentage"] == 100
    assert done["finished_at"] and done["events"][-1]["type"] == "completed"


def test_a_rollback_to_an_earlier_version_reads_as_one(viewer_api, beta, v2, editor, clock):
    immediate = deployment_services.strategy_by_name("flagdash.Immediate")
    deployment_services.deployment_create(
        actor=None, environment=beta, version=v2, strategy=immediate
    )
    run_due(clock)
    v1 = beta.versions.get(number=1)
    restore = deployment_services.version_restore(
        actor=editor, environment=beta, version=v1, reason="errors"
    )
    body = viewer_api.get(f"deployments/{restore.pk}/").json()
    assert body["kind"] == "restore" and body["version"] == 1
    assert body["rollback"]["reason"] == "errors" and body["rollback"]["by"] == "editor"


def test_an_unknown_deployment_is_404(viewer_api, db):
    response = viewer_api.get("deployments/999999/")
    assert response.status_code == 404
    assert error_of(response)["message"] == "No deployment #999999."


def test_outsiders_cannot_read_deployments(outsider_api, editor, beta, flag):
    d = services.flag_set_enabled(actor=editor, flag=flag, environment=beta, enabled=True)
    response = outsider_api.get(f"deployments/{d.deployment.pk}/")
    assert response.status_code == 403


# --- stopping, rolling back, cancelling, deploying again -------------------------------------


def rolling(clock, beta, v2):
    d = deployment_services.deployment_create(
        actor=None,
        environment=beta,
        version=v2,
        strategy=make_strategy("linear-4m", duration_minutes=4, growth_factor=25),
    )
    run_due(clock)
    return Deployment.objects.get(pk=d.pk)


def test_an_editor_stops_a_rollout_with_a_reason(clock, editor_api, beta, v2):
    d = rolling(clock, beta, v2)
    response = editor_api.post(f"deployments/{d.pk}/rollback/", {"reason": "5xx up"})
    assert response.status_code == 202
    body = response.json()
    assert body["id"] == d.pk and body["rollback"]["reason"] == "5xx up"
    assert body["rollback"]["by"] == "editor"
    run_due(clock)
    assert Deployment.objects.get(pk=d.pk).state == "rolled_back"


def test_a_rollback_needs_a_reason_and_changes_nothing_without_one(clock, editor_api, beta, v2):
    d = rolling(clock, beta, v2)
    before = counts()
    response = editor_api.post(f"deployments/{d.pk}/rollback/", {})
    assert response.status_code == 422
    assert error_of(response)["fields"]["reason"][0]["code"] == "required"
    wrong = editor_api.post(f"deployments/{d.pk}/rollback/", {"reason": 5})
    assert wrong.status_code == 400
    assert counts() == before and Deployment.objects.get(pk=d.pk).rollback_requested_at is None


def test_rolling_back_the_live_deployment_answers_the_restore(clock, editor_api, beta, v2):
    first = deployment_services.deployment_create(
        actor=None, environment=beta, version=v2, strategy=None
    )
    run_due(clock)
    clock.tick(3600)
    run_due(clock)
    v3 = services.flag_set_enabled(
        actor=None, flag=beta.flag_settings.first().flag, environment=beta, enabled=True
    ).deployment
    run_due(clock)
    clock.tick(3600)
    run_due(clock)
    assert Deployment.objects.get(pk=v3.pk).state == "complete" and first.pk != v3.pk
    response = editor_api.post(f"deployments/{v3.pk}/rollback/", {"reason": "bad"})
    assert response.status_code == 202
    body = response.json()
    assert body["kind"] == "restore" and body["restores"] == v3.pk and body["version"] == 2
    again = editor_api.post(f"deployments/{v3.pk}/rollback/", {"reason": "bad"})
    assert again.status_code == 422  # one restore is enough


def test_rolling_back_to_a_version(clock, editor_api, beta, v2):
    rolling(clock, beta, v2)
    response = editor_api.post(BETA_VERSIONS + "1/rollback/", {"reason": "go back"})
    assert response.status_code == 202
    assert response.json()["kind"] == "restore" and response.json()["version"] == 1


def test_cancelling_a_queued_deployment(clock, editor_api, beta, v2):
    d = rolling(clock, beta, v2)
    waiting = services.flag_set_enabled(
        actor=None, flag=beta.flag_settings.first().flag, environment=beta, enabled=True
    ).deployment
    response = editor_api.post(f"deployments/{waiting.pk}/cancel/", {})
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    running = editor_api.post(f"deployments/{d.pk}/cancel/", {})
    assert running.status_code == 422
    assert Deployment.objects.get(pk=d.pk).state == "deploying"


def test_deploying_a_failed_deployment_again(clock, editor_api, beta, v2, monkeypatch):
    from flagdash.backends.base import PermanentBackendError
    from flagdash.backends.local import LocalBackend

    def refuse(self, spec, now):
        raise PermanentBackendError("AccessDenied")

    monkeypatch.setattr(LocalBackend, "start", refuse)
    d = rolling(clock, beta, v2)
    assert d.state == "failed"
    monkeypatch.undo()
    response = editor_api.post(f"deployments/{d.pk}/retry/", {"overwrite_drift": True})
    assert response.status_code == 422  # it did not fail because of drift
    response = editor_api.post(f"deployments/{d.pk}/retry/", {})
    assert response.status_code == 202 and response.json()["version"] == 2
    assert response.json()["id"] != d.pk


def test_who_may_stop_roll_back_cancel_and_retry(
    clock, viewer_api, editor_api, beta, production, v2
):
    d = rolling(clock, beta, v2)
    before = counts()
    for path, body in (
        (f"deployments/{d.pk}/rollback/", {"reason": "x"}),
        (f"deployments/{d.pk}/cancel/", {}),
        (f"deployments/{d.pk}/retry/", {}),
        (BETA_VERSIONS + "1/rollback/", {"reason": "x"}),
    ):
        assert viewer_api.post(path, body).status_code == 403
    prod_v = services.config_version_create(actor=None, environment=production, message="p")
    prod = deployment_services.deployment_create(actor=None, environment=production, version=prod_v)
    assert editor_api.post(f"deployments/{prod.pk}/cancel/", {}).status_code == 403
    assert counts()[0] == before[0] + 1  # only the production deployment created above
    assert editor_api.post("deployments/99999/rollback/", {"reason": "x"}).status_code == 404
