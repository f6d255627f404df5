"""Logging in and out: every attempt is audited, and repeated failures pause logins."""

from __future__ import annotations

import pytest
from django.urls import reverse

from flagdash.audit.models import AuditEvent


@pytest.fixture
def limit(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    return 3


def _log_in(client, username: str, password: str, **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_login_page_needs_no_login(client, db):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    assert 'name="username"' in response.content.decode()


def test_login_is_audited(client, admin_user, password):
    response = _log_in(client, "admin", password)

    assert response.status_code == 302
    assert _logged_in(client)
    event = AuditEvent.objects.order_by("-id").first()
    assert event.action == "auth.login"
    assert event.actor_id == admin_user.pk
    assert event.actor_name == "admin"
    assert event.source == "web"
    assert event.client_ip == "127.0.0.1"


def test_logout_is_a_post_and_is_audited(client, viewer, password):
    _log_in(client, "viewer", password)
    count = AuditEvent.objects.count()

    assert client.get(reverse("logout")).status_code == 405
    assert AuditEvent.objects.count() == count
    assert _logged_in(client)

    response = client.post(reverse("logout"))

    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert not _logged_in(client)
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.actor_id, event.actor_name) == ("auth.logout", viewer.pk, "viewer")
    assert AuditEvent.objects.count() == count + 1


@pytest.mark.parametrize("username", ["viewer", "nobody-by-that-name"])
def test_failed_login_is_audited_with_the_attempted_username(client, viewer, username):
    response = _log_in(client, username, "wrong password")

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert not _logged_in(client)
    event = AuditEvent.objects.order_by("-id").first()
    assert event.action == "auth.login_failed"
    assert event.actor_id is None
    assert event.actor_name == username
    assert event.target_repr == username


def test_repeated_failures_pause_logins_even_with_the_right_password(
    client, viewer, password, limit
):
    for _ in range(limit):
        _log_in(client, "viewer", "wrong password")
    assert AuditEvent.objects.filter(action="auth.login_failed").count() == limit

    response = _log_in(client, "viewer", password)

    assert response.status_code == 200
    assert "Too many failed attempts" in response.content.decode()
    assert not _logged_in(client)
    assert not AuditEvent.objects.filter(action="auth.login").exists()


def test_failures_below_the_limit_do_not_pause_logins(client, viewer, password, limit):
    for _ in range(limit - 1):
        _log_in(client, "viewer", "wrong password")

    response = _log_in(client, "viewer", password)

    assert response.status_code == 302
    assert _logged_in(client)


def test_the_pause_counts_failures_per_address_too(client, viewer, password, limit):
    """Guessing across many usernames from one address pauses that address."""
    for i in range(limit):
        _log_in(client, f"guess{i}", "wrong password", REMOTE_ADDR="203.0.113.7")

    paused = _log_in(client, "viewer", password, REMOTE_ADDR="203.0.113.7")
    assert "Too many failed attempts" in paused.content.decode()
    assert not _logged_in(client)

    elsewhere = _log_in(client, "viewer", password, REMOTE_ADDR="198.51.100.2")
    assert elsewhere.status_code == 302
    assert _logged_in(client)


def test_the_pause_counts_failures_per_username_across_addresses(client, viewer, password, limit):
    for i in range(limit):
        _log_in(client, "viewer", "wrong password", REMOTE_ADDR=f"198.51.100.{i + 10}")

    response = _log_in(client, "viewer", password, REMOTE_ADDR="198.51.100.99")

    assert "Too many failed attempts" in response.content.decode()
    assert not _logged_in(client)
