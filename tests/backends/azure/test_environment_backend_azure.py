"""The backend page with Azure App Configuration, against the wire-level fake: test, save,
and a wrong secret reported without saving."""

from __future__ import annotations

import pytest
from django.urls import reverse

from flagdash.flags.models import Environment
from tests.backends.azure.conftest import CONNECTION_ENV

pytestmark = pytest.mark.django_db


def page_url(env):
    return reverse("environment_backend", args=[env.application.key, env.key])


def form(fake, **changes):
    return {
        "kind": "azure_appconfig",
        "azure_endpoint": fake.endpoint,
        "azure_label": "beta",
        "azure_connection_string_env": CONNECTION_ENV,
        **changes,
    }


def test_testing_the_store_reports_the_label_and_write_permission(admin_client, azure, beta):
    response = admin_client.post(page_url(beta), {**form(azure), "action": "check"})
    html = response.content.decode()
    assert response.status_code == 200 and "Connection test passed." in html
    assert "beta" in html and CONNECTION_ENV in html
    assert Environment.objects.get(pk=beta.pk).backend.kind == "local"  # nothing saved


def test_a_wrong_secret_fails_the_test_with_a_clear_message(admin_client, azure, beta, monkeypatch):
    good = azure.connection_string()
    monkeypatch.setenv(CONNECTION_ENV, good.replace(good.split("Secret=")[1], "d3Jvbmc="))
    html = admin_client.post(page_url(beta), {**form(azure), "action": "check"}).content.decode()
    assert "Connection test failed." in html and "401" in html


def test_saving_points_beta_at_the_store_and_a_toggle_deploys_there(
    admin_client, azure, beta, flag, clock
):
    from flagdash.flags import services as flag_services
    from tests.deployments.conftest import run_due

    assert admin_client.post(page_url(beta), form(azure)).status_code == 302
    page = admin_client.get(page_url(beta)).content.decode()
    assert "Connection test passed" in page
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True
    ).deployment
    run_due(clock)
    stored = azure.get(f".appconfig.featureflag/{flag.key}", "beta")
    assert stored is not None and '"enabled": true' in stored.value.replace(":true", ": true")
    assert d.backend_kind == "azure_appconfig"
