"""The backend page with AWS AppConfig, against the wire-level fake: test an existing setup,
create one in AWS, list the environment's CloudWatch alarms."""

from __future__ import annotations

import pytest
from django.urls import reverse

from flagdash.audit.models import AuditEvent
from flagdash.flags.models import Environment
from tests.backends.conftest import ALARM, REGION

pytestmark = pytest.mark.django_db


def page_url(env):
    return reverse("environment_backend", args=[env.application.key, env.key])


def existing(fake, app_id, profile_id, env_id):
    return {
        "kind": "aws_appconfig",
        "aws_region": REGION,
        "aws_setup": "existing",
        "aws_application_id": app_id,
        "aws_configuration_profile_id": profile_id,
        "aws_environment_id": env_id,
        "aws_endpoint_url": fake.url,
    }


@pytest.fixture
def resources(fake):
    app_id = fake.create_application("checkout")
    profile_id = fake.create_profile(app_id, "flags")
    env_id = fake.create_environment(app_id, "beta", monitors=[ALARM])
    return app_id, profile_id, env_id


def test_testing_existing_resources_reports_what_was_verified_and_the_alarms(
    admin_client, fake, beta, resources
):
    response = admin_client.post(page_url(beta), {**existing(fake, *resources), "action": "check"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Connection test passed." in html
    assert resources[0] in html and ALARM in html
    assert Environment.objects.get(pk=beta.pk).backend.kind == "local"  # nothing saved


def test_a_wrong_environment_id_fails_the_test_naming_it(admin_client, fake, beta, resources):
    data = {**existing(fake, *resources), "aws_environment_id": "zzz9999", "action": "check"}
    html = admin_client.post(page_url(beta), data).content.decode()
    assert "Connection test failed." in html and "zzz9999" in html


def test_saving_existing_resources_points_beta_at_them_and_lists_its_alarms(
    admin_client, fake, beta, resources
):
    response = admin_client.post(page_url(beta), existing(fake, *resources))
    assert response.status_code == 302
    page = admin_client.get(page_url(beta)).content.decode()
    assert "Connection test passed" in page and "CloudWatch alarms" in page
    assert 'hx-trigger="load"' in page  # the alarms load after the page: it asks AWS
    part = admin_client.get(page_url(beta) + "?part=monitors", headers={"HX-Request": "true"})
    assert part.status_code == 200 and ALARM in part.content.decode()
    assert "<html" not in part.content.decode()


def test_create_in_aws_makes_the_resources_and_reuses_them_the_second_time(
    admin_client, fake, beta, production
):
    data = {
        "kind": "aws_appconfig",
        "aws_region": REGION,
        "aws_setup": "create",
        "aws_application_name": "checkout",
        "aws_profile_name": "checkout-flags",
        "aws_environment_name": "beta",
        "aws_endpoint_url": fake.url,
    }
    assert admin_client.post(page_url(beta), data).status_code == 302
    options = Environment.objects.get(pk=beta.pk).backend.options
    assert options["region"] == REGION and options["endpoint_url"] == fake.url
    assert all(options[k] for k in ("application_id", "configuration_profile_id", "environment_id"))
    page = admin_client.get(page_url(beta)).content.decode()
    assert "Connection test passed" in page

    # production, into the same application and profile: found by name, not created again
    data["aws_environment_name"] = "production"
    assert admin_client.post(page_url(production), data).status_code == 302
    prod = Environment.objects.get(pk=production.pk).backend.options
    assert prod["application_id"] == options["application_id"]
    assert prod["configuration_profile_id"] == options["configuration_profile_id"]
    assert prod["environment_id"] != options["environment_id"]
    assert fake.calls["CreateApplication"] == 1 and fake.calls["CreateConfigurationProfile"] == 1
    assert AuditEvent.objects.filter(action="environment.backend_changed").count() == 2


def test_creating_without_credentials_fails_at_the_top_of_the_form_and_saves_nothing(
    admin_client, fake, beta, monkeypatch
):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    data = {
        "kind": "aws_appconfig",
        "aws_region": REGION,
        "aws_setup": "create",
        "aws_application_name": "checkout",
        "aws_profile_name": "flags",
        "aws_environment_name": "beta",
        "aws_endpoint_url": fake.url,
    }
    response = admin_client.post(page_url(beta), data)
    assert response.status_code == 422
    assert "credentials" in response.content.decode().lower()
    assert Environment.objects.get(pk=beta.pk).backend.kind == "local"
    assert fake.calls["CreateApplication"] == 0
