"""Bad input on the settings forms: 422, the message next to the field, nothing written."""

from __future__ import annotations

import pytest
from django.urls import reverse

from flagdash.accounts.models import Membership
from tests.accounts.helpers import attribute_of, state, text_of


def _refused(response, error_id: str, message: str) -> str:
    assert response.status_code == 422
    html = response.content.decode()
    errors = text_of(html, error_id)
    assert errors is not None, f"no #{error_id} in the response"
    assert message in errors
    return html


def test_duplicate_application_key_is_refused_at_the_key(admin_client, app):
    before = state()

    response = admin_client.post(
        reverse("settings_application_create"), {"key": "checkout", "name": "Another"}
    )

    html = _refused(response, "id_app_new_key_error", "already exists")
    assert "Nothing was saved" in html
    # the form keeps what was typed, and the control points at its error
    assert attribute_of(html, "id_app_new_name", "value") == "Another"
    assert "id_app_new_key_error" in attribute_of(html, "id_app_new_key", "aria-describedby")
    assert attribute_of(html, "id_app_new_key", "aria-invalid") == "true"
    assert state() == before


def test_malformed_application_key_is_refused_at_the_key(admin_client, db):
    before = state()

    response = admin_client.post(
        reverse("settings_application_create"), {"key": "Bad Key!", "name": "Bad"}
    )

    _refused(response, "id_app_new_key_error", "Lowercase letter first")
    assert state() == before


def test_missing_application_name_is_refused_at_the_name(admin_client, db):
    before = state()

    response = admin_client.post(reverse("settings_application_create"), {"key": "payments"})

    _refused(response, "id_app_new_name_error", "required")
    assert state() == before


def test_htmx_refusal_returns_the_section_with_the_error(admin_client, app, htmx):
    before = state()

    response = admin_client.post(
        reverse("settings_application_create"),
        {"key": "Bad Key!", "name": "Bad"},
        headers=htmx,
    )

    html = _refused(response, "id_app_new_key_error", "Lowercase letter first")
    assert "<html" not in html
    assert html.lstrip().startswith('<section id="settings-applications"')
    assert state() == before


def test_duplicate_environment_key_is_refused_at_the_key(admin_client, app, envs):
    before = state()

    response = admin_client.post(
        reverse("settings_environment_create", args=[app.key]), {"key": "beta", "name": "Beta 2"}
    )

    html = _refused(response, f"id_env_new_{app.pk}_key_error", "already has an environment")
    # the add form with the error is open, the others stay closed
    assert f"<details open>\n      <summary>Add an environment to {app.name}" in html
    assert state() == before


def test_malformed_environment_key_is_refused(admin_client, app, envs):
    before = state()

    response = admin_client.post(
        reverse("settings_environment_create", args=[app.key]), {"key": "Staging", "name": "S"}
    )

    _refused(response, f"id_env_new_{app.pk}_key_error", "Lowercase letter first")
    assert state() == before


def test_blank_environment_name_is_refused_at_the_name(admin_client, app, beta):
    before = state()

    response = admin_client.post(
        reverse("settings_environment_edit", args=[app.key, beta.key]), {"name": "  "}
    )

    _refused(response, f"id_env_{beta.pk}_name_error", "required")
    assert state() == before


def test_last_admin_cannot_be_demoted(admin_client, admin_user, viewer):
    before = state()

    response = admin_client.post(
        reverse("settings_user_role", args=[admin_user.pk]), {"role": "viewer"}
    )

    html = _refused(response, f"id_user_{admin_user.pk}_role_error", "at least one admin")
    assert text_of(html, f"id_user_{viewer.pk}_role_error") is None
    assert Membership.objects.get(user=admin_user).role == "admin"
    assert state() == before


def test_last_admin_cannot_remove_their_own_access(admin_client, admin_user, htmx):
    before = state()

    response = admin_client.post(
        reverse("settings_user_role", args=[admin_user.pk]), {"role": ""}, headers=htmx
    )

    html = _refused(response, f"id_user_{admin_user.pk}_role_error", "at least one admin")
    assert html.lstrip().startswith('<section id="settings-users"')
    assert state() == before


def test_unknown_role_is_refused(admin_client, viewer):
    before = state()

    response = admin_client.post(reverse("settings_user_role", args=[viewer.pk]), {"role": "owner"})

    _refused(response, f"id_user_{viewer.pk}_role_error", "Select a valid choice")
    assert state() == before


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("password", "too common"),
        ("x7", "too short"),
        ("83749261", "entirely numeric"),
        ("newcomer1", "too similar to the username"),
    ],
)
def test_weak_password_is_refused_at_the_password(admin_client, db, password, message):
    before = state()

    response = admin_client.post(
        reverse("settings_user_create"),
        {"username": "newcomer", "email": "", "password": password, "role": "viewer"},
    )

    html = _refused(response, "id_user_new_password_error", message)
    assert password not in (attribute_of(html, "id_user_new_password", "value") or "")
    assert attribute_of(html, "id_user_new_username", "value") == "newcomer"
    assert state() == before


def test_taken_username_is_refused_at_the_username(admin_client, viewer):
    before = state()

    response = admin_client.post(
        reverse("settings_user_create"),
        {"username": "viewer", "password": "quiet-lantern-harbour-42", "role": "viewer"},
    )

    _refused(response, "id_user_new_username_error", "is taken")
    assert state() == before


def test_malformed_username_and_email_are_refused(admin_client, db):
    before = state()

    response = admin_client.post(
        reverse("settings_user_create"),
        {"username": "no spaces", "email": "nope", "password": "quiet-lantern-harbour-42"},
    )

    html = _refused(response, "id_user_new_username_error", "Enter a valid username")
    assert "Enter a valid email address" in text_of(html, "id_user_new_email_error")
    assert state() == before
