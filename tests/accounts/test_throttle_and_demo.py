"""The login throttle's window and audit, and the demo seeder's care with real accounts."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.management import call_command
from django.urls import reverse

from flagdash.accounts import throttle
from flagdash.audit.models import Action, AuditEvent
from flagdash.flags.models import Application

pytestmark = pytest.mark.django_db


def test_the_window_runs_from_the_first_failure_and_is_not_extended(settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 100
    with mock.patch("flagdash.accounts.throttle.time.time", return_value=1000.0):
        throttle.record_failure("mallory", "192.0.2.1")
    with (
        mock.patch("flagdash.accounts.throttle.time.time", return_value=1090.0),
        mock.patch("flagdash.accounts.throttle.cache.set") as cache_set,
    ):
        throttle.record_failure("mallory", "192.0.2.1")
    (_key, (count, first), timeout) = cache_set.call_args_list[0].args
    assert (count, first) == (2, 1000.0)
    assert timeout == 10  # what is left of the window, not a fresh one


def test_a_locked_login_is_audited_once_not_per_attempt(client, settings, viewer, password):
    settings.LOGIN_FAILURE_LIMIT = 2
    for _ in range(2):
        client.post(reverse("login"), {"username": "viewer", "password": "wrong"})
    for _ in range(5):
        response = client.post(reverse("login"), {"username": "viewer", "password": password})
        assert "Too many failed attempts" in response.content.decode()
    throttled = AuditEvent.objects.filter(action=Action.LOGIN_FAILED, after__reason="throttled")
    assert throttled.count() == 1


def test_seeding_again_never_changes_an_existing_password(settings, tmp_path, capsys):
    settings.VAR_DIR = tmp_path
    settings.FLAGDASH_DEMO_PASSWORD = "first-demo-password"
    call_command("seed_demo")
    assert Application.objects.filter(key__in=["checkout", "storefront"]).count() == 2
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.get(username="admin")
    admin.set_password("the-admins-own-password")
    admin.save()
    settings.FLAGDASH_DEMO_PASSWORD = "second-demo-password"
    call_command("seed_demo")
    admin.refresh_from_db()
    assert admin.check_password("the-admins-own-password")
    assert "kept: not the demo password" in capsys.readouterr().out

    call_command("seed_demo", "--reset-passwords")
    admin.refresh_from_db()
    assert admin.check_password("second-demo-password")
    event = AuditEvent.objects.get(action=Action.USER_PASSWORD_SET, target_repr="admin")
    assert "second-demo-password" not in str(event.after)
