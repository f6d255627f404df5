"""Settings for deployments: an environment's default strategy, its alarm webhook secret (shown
once, rotatable after a confirmation) and the deployment strategies (admins add and edit their
own; AWS's predefined ones are read-only)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from flagdash.audit.models import AuditEvent
from flagdash.deployments import alarms
from flagdash.deployments.models import DeploymentStrategy
from flagdash.flags.models import Environment
from tests.accounts.helpers import text_of
from tests.factories import make_strategy

pytestmark = pytest.mark.django_db

LINEAR50 = "AppConfig.Linear50PercentEvery30Seconds"


def edit_url(env):
    return reverse("settings_environment_edit", args=[env.application.key, env.key])


def secret_url(env):
    return reverse("settings_alarm_secret", args=[env.application.key, env.key])


def strategies_state():
    return list(
        DeploymentStrategy.objects.order_by("pk").values_list(
            "name", "description", "duration_minutes", "growth_type", "growth_factor",
            "final_bake_minutes",
        )
    )  # fmt: skip


def env_state():
    return list(
        Environment.objects.order_by("pk").values_list(
            "name", "protected", "default_strategy__name", "alarm_secret_salt",
            "alarm_secret_rotated_at",
        )
    )  # fmt: skip


def world():
    return (strategies_state(), env_state(), AuditEvent.objects.count())


def selected(html, select_id):
    select = re.search(rf'<select[^>]*id="{select_id}"[^>]*>.*?</select>', html, re.S).group(0)
    return re.search(r'<option value="([^"]*)"[^>]*selected', select).group(1)


# --- the default strategy --------------------------------------------------------------------


def test_admins_see_the_default_strategy_selected_with_its_schedule(admin_client, beta):
    html = admin_client.get(reverse("settings")).content.decode()
    assert selected(html, f"id_env_{beta.pk}_default_strategy") == "AppConfig.AllAtOnce"
    assert f"{LINEAR50} — 50 % every 30 s, 1 min bake" in html


def test_viewers_see_the_default_strategy_without_a_form(viewer_client, beta):
    html = viewer_client.get(reverse("settings")).content.decode()
    assert '<td class="mono small">AppConfig.AllAtOnce</td>' in html
    assert "default_strategy" not in html


def test_changing_the_default_strategy_is_audited(admin_client, beta):
    response = admin_client.post(edit_url(beta), {"name": "Beta", "default_strategy": LINEAR50})

    assert response.status_code == 302
    beta.refresh_from_db()
    assert beta.default_strategy.name == LINEAR50
    event = AuditEvent.objects.filter(action="environment.updated").get()
    assert event.before["default_strategy"] == "AppConfig.AllAtOnce"
    assert event.after["default_strategy"] == LINEAR50
    page = admin_client.get(reverse("settings")).content.decode()
    assert f"Saved Checkout / Beta (not protected, deploys with {LINEAR50})." in page


def test_an_unknown_default_strategy_is_refused_at_the_field(admin_client, beta):
    before = world()
    response = admin_client.post(edit_url(beta), {"name": "Beta", "default_strategy": "Nope"})
    assert response.status_code == 422
    assert "There is no strategy “Nope”." in text_of(
        response.content.decode(), f"id_env_{beta.pk}_default_strategy_error"
    )
    assert world() == before


def test_leaving_out_the_default_strategy_keeps_it(admin_client, beta):
    admin_client.post(edit_url(beta), {"name": "Beta", "default_strategy": LINEAR50})
    admin_client.post(edit_url(beta), {"name": "Beta testers"})
    beta.refresh_from_db()
    assert (beta.name, beta.default_strategy.name) == ("Beta testers", LINEAR50)


def test_removing_protection_carries_the_strategy_through_the_confirmation(
    admin_client, production, htmx
):
    asked = admin_client.post(
        edit_url(production), {"name": "Production", "default_strategy": LINEAR50}, headers=htmx
    )
    html = asked.content.decode()
    assert asked["HX-Retarget"] == "#modal"
    assert f'<input type="hidden" name="default_strategy" value="{LINEAR50}">' in html
    assert f"Its default strategy also changes to <strong>{LINEAR50}</strong>" in html
    production.refresh_from_db()
    assert production.protected and production.default_strategy.name == "AppConfig.AllAtOnce"

    admin_client.post(
        edit_url(production),
        {"name": "Production", "default_strategy": LINEAR50, "confirm": "yes"},
        headers=htmx,
    )
    production.refresh_from_db()
    assert not production.protected and production.default_strategy.name == LINEAR50


@pytest.mark.parametrize("who", ["viewer_client", "editor_client", "outsider_client"])
def test_only_admins_change_the_default_strategy(request, who, beta):
    client = request.getfixturevalue(who)
    before = world()
    response = client.post(edit_url(beta), {"name": "Beta", "default_strategy": LINEAR50})
    assert response.status_code == 403
    assert world() == before


# --- the alarm webhook secret ----------------------------------------------------------------


def test_the_alarm_section_shows_the_webhook_url_and_whether_a_secret_exists(admin_client, beta):
    html = admin_client.get(reverse("settings")).content.decode()
    row = text_of(html, f"alarm-webhook-checkout-{beta.key}")
    assert "http://testserver/hooks/alarms/checkout/beta/" in row
    assert "none: the webhook refuses every request" in row and "Generate secret" in row
    assert "docs/alarms.md" in html


def test_a_generated_secret_is_shown_once(admin_client, beta):
    response = admin_client.post(secret_url(beta))

    html = response.content.decode()
    beta.refresh_from_db()
    secret = alarms.alarm_secret(beta)
    assert response.status_code == 200 and secret
    assert f'value="{secret}"' in html
    assert "http://testserver/hooks/alarms/checkout/beta/" in html and "docs/alarms.md" in html
    assert "no-store" in response["Cache-Control"]
    assert AuditEvent.objects.filter(action="environment.alarm_secret_rotated").count() == 1

    again = admin_client.get(reverse("settings")).content.decode()
    assert secret not in again
    row = text_of(again, f"alarm-webhook-checkout-{beta.key}")
    assert "set, rotated" in row and "Rotate secret…" in row
    assert secret not in str(dict(admin_client.session))


def test_rotating_asks_first_then_invalidates_the_old_secret(admin_client, beta):
    admin_client.post(secret_url(beta))
    beta.refresh_from_db()
    old = alarms.alarm_secret(beta)
    audited = AuditEvent.objects.count()

    asked = admin_client.post(secret_url(beta))

    beta.refresh_from_db()
    assert asked.status_code == 200
    assert "stops working at once" in asked.content.decode()
    assert 'name="confirm" value="yes"' in asked.content.decode()
    assert alarms.alarm_secret(beta) == old and AuditEvent.objects.count() == audited

    rotated = admin_client.post(secret_url(beta), {"confirm": "yes"})

    beta.refresh_from_db()
    new = alarms.alarm_secret(beta)
    assert new != old
    html = rotated.content.decode()
    assert f'value="{new}"' in html and old not in html
    assert "The previous secret no longer works." in html
    assert AuditEvent.objects.count() == audited + 1


def test_over_htmx_the_secret_opens_in_the_modal_and_the_section_refreshes(
    admin_client, beta, htmx
):
    response = admin_client.post(secret_url(beta), headers=htmx)
    html = response.content.decode()
    beta.refresh_from_db()
    secret = alarms.alarm_secret(beta)
    assert response["HX-Retarget"] == "#modal" and "<html" not in html
    assert html.count(secret) == 1  # in the dialog, not in the refreshed section
    assert '<div id="settings-environments" hx-swap-oob="true">' in html
    assert "Rotate secret…" in html

    asked = admin_client.post(secret_url(beta), headers=htmx)
    assert asked["HX-Retarget"] == "#modal" and "Rotate the secret" in asked.content.decode()


@pytest.mark.parametrize("who", ["viewer_client", "editor_client", "outsider_client"])
def test_only_admins_issue_secrets(request, who, beta):
    client = request.getfixturevalue(who)
    before = world()
    response = client.post(secret_url(beta), {"confirm": "yes"})
    assert response.status_code == 403
    assert world() == before


def test_getting_the_secret_url_is_not_allowed(admin_client, beta):
    assert admin_client.get(secret_url(beta)).status_code == 405


# --- strategies ------------------------------------------------------------------------------

VALID = {
    "name": "Careful",
    "description": "10 % a step over an hour",
    "duration_minutes": "60",
    "growth_type": "linear",
    "growth_factor": "10",
    "final_bake_minutes": "30",
}


def test_the_strategies_section_lists_predefined_ones_read_only(admin_client, db):
    html = admin_client.get(reverse("settings")).content.decode()
    section = text_of(html, "settings-strategies")
    assert "AppConfig.Canary10Percent20Minutes read-only" in section
    assert "10 % doubling every 4 min, 10 min bake" in section
    predefined = DeploymentStrategy.objects.get(name="AppConfig.AllAtOnce")
    assert reverse("settings_strategy_edit", args=[predefined.pk]) not in html
    assert reverse("settings_strategy_create") in html


def test_an_admin_adds_a_strategy(admin_client, beta):
    response = admin_client.post(reverse("settings_strategy_create"), VALID)

    assert response.status_code == 302
    s = DeploymentStrategy.objects.get(name="Careful")
    assert (s.duration_minutes, s.growth_type, s.growth_factor, s.final_bake_minutes) == (
        60, "linear", 10.0, 30,
    )  # fmt: skip
    assert not s.predefined
    assert AuditEvent.objects.filter(action="strategy.created", target_id=str(s.pk)).exists()
    page = admin_client.get(reverse("settings")).content.decode()
    assert "Added strategy Careful: 10 % every 6 min, 30 min bake." in page
    assert "Careful — 10 % every 6 min, 30 min bake" in page  # now a default-strategy choice


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("duration_minutes", "1441", "A whole number of minutes from 0 to 1440."),
        ("duration_minutes", "-1", "A whole number of minutes from 0 to 1440."),
        ("duration_minutes", "soon", "Enter a whole number."),
        ("growth_type", "sideways", "Select a valid choice."),
        ("growth_factor", "0.5", "A number from 1 to 100."),
        ("growth_factor", "101", "A number from 1 to 100."),
        ("final_bake_minutes", "2000", "A whole number of minutes from 0 to 1440."),
        ("name", "", "This field is required."),
        ("name", "AppConfig.Mine", "are reserved"),
        ("name", "AppConfig.AllAtOnce", "are reserved"),
    ],
)
def test_invalid_strategies_are_refused_at_the_field(admin_client, field, value, message):
    before = world()
    response = admin_client.post(reverse("settings_strategy_create"), {**VALID, field: value})
    assert response.status_code == 422
    errors = text_of(response.content.decode(), f"id_strategy_new_{field}_error")
    assert errors is not None and message in errors
    assert world() == before


def test_every_wrong_field_gets_its_own_error(admin_client, htmx):
    bad = {
        **VALID,
        "duration_minutes": "5000",
        "growth_factor": "0",
        "final_bake_minutes": "-3",
        "growth_type": "linear",
    }
    response = admin_client.post(reverse("settings_strategy_create"), bad, headers=htmx)
    html = response.content.decode()
    assert response.status_code == 422 and "<html" not in html
    assert html.strip().startswith('<section id="settings-strategies"')
    for field in ("duration_minutes", "growth_factor", "final_bake_minutes"):
        assert text_of(html, f"id_strategy_new_{field}_error"), field


def test_a_duplicate_name_is_refused(admin_client):
    make_strategy("Careful")
    response = admin_client.post(reverse("settings_strategy_create"), VALID)
    assert response.status_code == 422
    assert "exists" in text_of(response.content.decode(), "id_strategy_new_name_error")


def test_an_admin_edits_a_custom_strategy(admin_client, htmx):
    s = make_strategy("Careful", duration_minutes=60, growth_factor=10)
    url = reverse("settings_strategy_edit", args=[s.pk])
    form = admin_client.get(reverse("settings")).content.decode()
    assert f'action="{url}"' in form and f'id="id_strategy_{s.pk}_duration_minutes"' in form

    response = admin_client.post(
        url, {**VALID, "growth_type": "exponential", "growth_factor": "5"}, headers=htmx
    )

    s.refresh_from_db()
    assert response.status_code == 200
    assert (s.growth_type, s.growth_factor) == ("exponential", 5.0)
    event = AuditEvent.objects.filter(action="strategy.updated").get()
    assert event.before["growth_type"] == "linear" and event.after["growth_type"] == "exponential"
    assert "Saved strategy Careful: 5 % doubling every" in response.content.decode()


def test_editing_with_errors_shows_them_in_that_strategys_form(admin_client):
    s = make_strategy("Careful")
    before = world()
    response = admin_client.post(
        reverse("settings_strategy_edit", args=[s.pk]), {**VALID, "final_bake_minutes": "9999"}
    )
    assert response.status_code == 422
    errors = text_of(response.content.decode(), f"id_strategy_{s.pk}_final_bake_minutes_error")
    assert "from 0 to 1440" in errors
    assert world() == before


def test_predefined_strategies_cannot_be_edited(admin_client):
    s = DeploymentStrategy.objects.get(name="AppConfig.AllAtOnce")
    before = world()
    response = admin_client.post(
        reverse("settings_strategy_edit", args=[s.pk]),
        {**VALID, "name": "AppConfig.AllAtOnce", "final_bake_minutes": "0"},
    )
    assert response.status_code == 422
    assert "predefined strategies: read-only" in response.content.decode()
    assert world() == before


@pytest.mark.parametrize("who", ["viewer_client", "editor_client", "outsider_client"])
def test_only_admins_add_or_edit_strategies(request, who):
    s = make_strategy("Careful")
    client = request.getfixturevalue(who)
    before = world()
    created = client.post(reverse("settings_strategy_create"), VALID)
    edited = client.post(reverse("settings_strategy_edit", args=[s.pk]), {**VALID, "name": "X"})
    assert (created.status_code, edited.status_code) == (403, 403)
    assert world() == before


def test_viewers_see_strategies_without_forms(viewer_client):
    make_strategy("Careful")
    html = viewer_client.get(reverse("settings")).content.decode()
    assert "Careful" in text_of(html, "settings-strategies")
    assert reverse("settings_strategy_create") not in html
