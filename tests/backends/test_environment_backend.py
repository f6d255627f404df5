"""An environment's backend page: who sees and changes it, the form's checks, "Test connection",
and what changing the backend does to the environment."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from flagdash.audit.models import AuditEvent
from flagdash.backends import services
from flagdash.backends.base import CheckResult
from flagdash.backends.models import BackendConnection, LocalServedState
from flagdash.deployments.models import Deployment
from flagdash.flags import services as flag_services
from flagdash.flags.models import Environment
from tests.deployments.conftest import Clock, run_due

pytestmark = pytest.mark.django_db

AZURE = {
    "kind": "azure_appconfig",
    "azure_endpoint": "https://flagdash-test.azconfig.io",
    "azure_label": "beta",
    "azure_connection_string_env": "FLAGDASH_TEST_AZURE_CS",
}
AWS = {
    "kind": "aws_appconfig",
    "aws_region": "eu-west-1",
    "aws_setup": "existing",
    "aws_application_id": "abc1234",
    "aws_configuration_profile_id": "def5678",
    "aws_environment_id": "ghi9012",
}


@pytest.fixture
def clock():
    return Clock()


def page_url(env):
    return reverse("environment_backend", args=[env.application.key, env.key])


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


class FakeBackend:
    """What backend_for returns in these tests: a check with a fixed answer, remembered."""

    def __init__(self, result):
        self.result = result
        self.checked = []

    def __call__(self, connection):
        self.checked.append((connection.kind, dict(connection.options)))
        return self

    def check(self):
        return self.result


@pytest.fixture
def check_passes(monkeypatch):
    fake = FakeBackend(CheckResult(True, "Reached the store.", ["3 flags with label beta"]))
    monkeypatch.setattr(services, "backend_for", fake)
    return fake


@pytest.fixture
def check_fails(monkeypatch):
    fake = FakeBackend(CheckResult(False, "401: the secret in $FLAGDASH_TEST_AZURE_CS is wrong."))
    monkeypatch.setattr(services, "backend_for", fake)
    return fake


def deployed(env, flag, clock):
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=env, enabled=True
    ).deployment
    run_due(clock)
    return d


def snapshot(env):
    env = Environment.objects.select_related("backend").get(pk=env.pk)
    return (env.backend.kind, dict(env.backend.options), env.live_version_id)


# --- who ---------------------------------------------------------------------------------------


def test_everyone_with_a_role_reads_the_page_only_admins_get_the_form(
    viewer, editor, admin_user, outsider, beta
):
    for user in (viewer, editor):
        html = logged_in(user).get(page_url(beta)).content.decode()
        assert "Where Beta deploys" in html and "Built-in" in html
        assert 'name="kind"' not in html and "Only admins can change" in html
    html = logged_in(admin_user).get(page_url(beta)).content.decode()
    assert 'name="kind"' in html and 'value="check"' in html
    assert logged_in(outsider).get(page_url(beta)).status_code == 403


def test_only_admins_change_or_test_a_backend(editor, viewer, outsider, beta, check_passes):
    before = snapshot(beta)
    for user in (viewer, editor, outsider):
        client = logged_in(user)
        assert client.post(page_url(beta), AZURE).status_code == 403
        assert client.post(page_url(beta), {**AZURE, "action": "check"}).status_code == 403
        response = client.post(page_url(beta), AZURE, headers={"HX-Request": "true"})
        assert response.status_code == 403 and response["HX-Reswap"] == "none"
    assert snapshot(beta) == before and check_passes.checked == []


def test_the_settings_page_links_each_environment_to_its_backend(admin_client, beta):
    html = admin_client.get(reverse("settings")).content.decode()
    assert f'href="{page_url(beta)}"' in html


# --- changing the backend ------------------------------------------------------------------------


def test_an_admin_points_beta_at_azure(admin_client, clock, beta, production, flag, check_passes):
    deployed(beta, flag, clock)
    clock.tick(3600)
    run_due(clock)
    assert Environment.objects.get(pk=beta.pk).live_version_id is not None
    assert LocalServedState.objects.get(environment=beta).stable_version_id is not None

    response = admin_client.post(page_url(beta), AZURE)

    assert response.status_code == 302 and response["Location"] == page_url(beta)
    env = Environment.objects.select_related("backend").get(pk=beta.pk)
    assert env.backend.kind == "azure_appconfig"
    assert env.backend.options == {
        "endpoint": "https://flagdash-test.azconfig.io",
        "label": "beta",
        "connection_string_env": "FLAGDASH_TEST_AZURE_CS",
    }
    assert env.live_version_id is None  # Azure serves nothing flagdash deployed yet
    assert LocalServedState.objects.get(environment=beta).stable_version_id is None
    prod = Environment.objects.select_related("backend").get(pk=production.pk)
    assert prod.backend.kind == "local"  # its own connection: production is untouched
    event = AuditEvent.objects.get(action="environment.backend_changed")
    assert event.actor_name == "admin" and event.before["kind"] == "local"
    assert event.after["kind"] == "azure_appconfig" and event.before["live_version"] is not None
    assert check_passes.checked == [("azure_appconfig", env.backend.options)]
    page = admin_client.get(page_url(beta)).content.decode()
    assert "Connection test passed: Reached the store." in page
    assert "https://flagdash-test.azconfig.io" in page


def test_a_failing_connection_is_saved_with_a_warning(admin_client, beta, check_fails):
    admin_client.post(page_url(beta), AZURE)
    page = admin_client.get(page_url(beta)).content.decode()
    assert "Saved, but the connection test failed" in page
    assert "the secret in $FLAGDASH_TEST_AZURE_CS is wrong" in page
    assert snapshot(beta)[0] == "azure_appconfig"


def test_test_connection_checks_the_form_without_saving(admin_client, beta, check_fails):
    before = snapshot(beta)
    response = admin_client.post(page_url(beta), {**AZURE, "action": "check"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Connection test failed." in html and "is wrong" in html
    assert check_fails.checked == [
        (
            "azure_appconfig",
            {
                "endpoint": "https://flagdash-test.azconfig.io",
                "label": "beta",
                "connection_string_env": "FLAGDASH_TEST_AZURE_CS",
            },
        )
    ]
    assert snapshot(beta) == before
    assert not AuditEvent.objects.filter(action="environment.backend_changed").exists()


def test_test_connection_over_htmx_swaps_the_panel(admin_client, beta, check_passes, htmx):
    response = admin_client.post(page_url(beta), {**AWS, "action": "check"}, headers=htmx)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert 'id="backend-panel"' in html and "Connection test passed." in html
    assert "3 flags with label beta" in html


def test_the_connection_string_variable_is_shown_by_name_never_its_value(
    admin_client, beta, check_passes, monkeypatch
):
    secret = "Endpoint=https://x.azconfig.io;Id=abc;Secret=c2VjcmV0LXZhbHVl"
    monkeypatch.setenv("FLAGDASH_TEST_AZURE_CS", secret)
    admin_client.post(page_url(beta), AZURE)
    page = admin_client.get(page_url(beta)).content.decode()
    assert "$FLAGDASH_TEST_AZURE_CS (set in this web process)" in page
    assert "c2VjcmV0LXZhbHVl" not in page
    assert "c2VjcmV0LXZhbHVl" not in str(AuditEvent.objects.values_list("after", flat=True))
    assert "c2VjcmV0" not in str(BackendConnection.objects.values_list("options", flat=True))


def test_aws_with_existing_ids(admin_client, beta, check_passes):
    admin_client.post(page_url(beta), {**AWS, "aws_endpoint_url": "http://127.0.0.1:9/"})
    kind, options, _ = snapshot(beta)
    assert kind == "aws_appconfig"
    assert options == {
        "region": "eu-west-1",
        "application_id": "abc1234",
        "configuration_profile_id": "def5678",
        "environment_id": "ghi9012",
        "endpoint_url": "http://127.0.0.1:9",
    }


def test_saving_the_same_settings_again_changes_nothing(admin_client, beta, check_passes):
    admin_client.post(page_url(beta), AZURE)
    admin_client.post(page_url(beta), AZURE)
    assert AuditEvent.objects.filter(action="environment.backend_changed").count() == 1
    assert BackendConnection.objects.filter(kind="azure_appconfig").count() == 1


def test_moving_back_to_the_built_in_store_removes_the_unused_connection(
    admin_client, beta, check_passes
):
    admin_client.post(page_url(beta), AZURE)
    admin_client.post(page_url(beta), {"kind": "local"})
    env = Environment.objects.select_related("backend").get(pk=beta.pk)
    assert env.backend.kind == "local" and env.backend.name == "Built-in"
    assert not BackendConnection.objects.filter(kind="azure_appconfig").exists()
    assert AuditEvent.objects.filter(action="environment.backend_changed").count() == 2


def test_the_backend_cannot_change_while_a_deployment_is_open(
    admin_client, clock, beta, flag, check_passes
):
    d = deployed(beta, flag, clock)  # AllAtOnce: baking for 10 minutes
    assert Deployment.objects.get(pk=d.pk).state == "baking"
    before = snapshot(beta)
    response = admin_client.post(page_url(beta), AZURE)
    assert response.status_code == 422
    assert f"Deployment #{d.pk} is baking in Beta" in response.content.decode()
    assert snapshot(beta) == before


# --- the form's checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({**AWS, "aws_region": ""}, "aws_region", "Region is required."),
        ({**AWS, "aws_region": "Europe"}, "aws_region", "A region looks like eu-west-1"),
        ({**AWS, "aws_environment_id": ""}, "aws_environment_id", "Environment id is required."),
        ({**AWS, "aws_application_id": "ABC_12"}, "aws_application_id", "4–7 lowercase"),
        (
            {**AWS, "aws_endpoint_url": "ftp://example.com"},
            "aws_endpoint_url",
            "Enter a valid URL.",
        ),
        (
            {**AWS, "aws_setup": "create", "aws_application_id": ""},
            "aws_application_name",
            "Application name is required.",
        ),
        ({**AZURE, "azure_endpoint": ""}, "azure_endpoint", "Store endpoint is required."),
        ({**AZURE, "azure_label": "beta,prod"}, "azure_label", "cannot contain *, a comma"),
        (
            {**AZURE, "azure_connection_string_env": "Endpoint=https://x;Secret=y"},
            "azure_connection_string_env",
            "not the secret itself",
        ),
        ({"kind": "s3"}, "kind", "Select a valid choice."),
    ],
)
def test_bad_settings_are_refused_at_the_field_and_change_nothing(
    admin_client, beta, check_passes, data, field, message
):
    before = snapshot(beta)
    response = admin_client.post(page_url(beta), data)
    html = response.content.decode()
    assert response.status_code == 422
    block = html[html.index(f'id="id_backend_{field}') :]
    assert message in block[:2500], block[:2500]
    assert snapshot(beta) == before and check_passes.checked == []
    assert not AuditEvent.objects.filter(action="environment.backend_changed").exists()


def test_an_unknown_kind_in_the_service_is_refused(admin_user, beta):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="Unknown backend kind"):
        services.environment_connect(actor=admin_user, environment=beta, kind="s3", options={})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**AWS, "aws_endpoint_url": "http://169.254.169.254/"}, "aws_endpoint_url"),
        ({**AZURE, "azure_endpoint": "https://attacker.example"}, "azure_endpoint"),
        ({**AWS, "aws_endpoint_url": "http://127.0.0.1:99999"}, "aws_endpoint_url"),
    ],
)
def test_endpoints_outside_the_clouds_are_refused_at_the_field_and_never_called(
    admin_client, beta, check_passes, settings, data, field
):
    settings.BACKEND_ENDPOINT_ALLOWLIST = []
    before = snapshot(beta)
    for action in ("check", "save"):
        response = admin_client.post(page_url(beta), {**data, "action": action})
        html = response.content.decode()
        assert response.status_code == 422
        block = html[html.index(f'id="id_backend_{field}') :][:2500]
        assert "BACKEND_ENDPOINT_ALLOWLIST" in block or "not a valid URL" in block
    assert snapshot(beta) == before and check_passes.checked == []
