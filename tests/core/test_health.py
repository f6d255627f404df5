"""GET /healthz: open to anyone, names the database and broker status, never leaks a secret."""

from __future__ import annotations

from unittest import mock

import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django.urls import reverse

from flagdash.celery import app as celery_app

URL = "/healthz"
DB_SECRET = "pg-password-s3cret-4f9a"
BROKER_SECRET = "redis-password-s3cret-77c1"

pytestmark = pytest.mark.django_db


def _database_down():
    error = OperationalError(
        f'connection to server at "db" failed: password authentication failed '
        f"(postgres://flagdash:{DB_SECRET}@db:5432/flagdash)"
    )
    return mock.patch.object(connection, "ensure_connection", side_effect=error)


def _broker_down():
    error = OSError(f"Error 111 connecting to redis://:{BROKER_SECRET}@redis:6379/0")
    return mock.patch.object(celery_app, "connection_for_write", side_effect=error)


def _assert_no_secrets(response):
    text = response.content.decode()
    for secret in (settings.SECRET_KEY, DB_SECRET, BROKER_SECRET, settings.DATABASE_URL):
        assert secret not in text
    password = settings.DATABASES["default"].get("PASSWORD")
    if password:
        assert password not in text


def test_healthz_is_routed_at_a_fixed_path():
    assert reverse("healthz") == URL


def test_anonymous_caller_gets_200_json_with_database_and_broker_status(client):
    response = client.get(URL)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert body["database"]["vendor"] == connection.vendor
    assert body["broker"]["status"] == "ok"
    assert body["broker"]["transport"] == settings.CELERY_BROKER_URL.split("://", 1)[0]


def test_health_response_is_never_cached(client):
    response = client.get(URL)

    assert "no-cache" in response["Cache-Control"]


def test_health_response_carries_no_secret(client):
    _assert_no_secrets(client.get(URL))


def test_only_get_is_allowed(client):
    assert client.post(URL).status_code == 405


def test_unreachable_database_answers_503(client):
    with _database_down():
        response = client.get(URL)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"]["status"] == "unreachable"


def test_database_error_text_does_not_reach_the_response(client):
    with _database_down():
        response = client.get(URL)

    _assert_no_secrets(response)


def test_unreachable_broker_is_reported_but_still_200(client):
    with _broker_down():
        response = client.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"]["status"] == "ok"
    assert body["broker"]["status"] == "unreachable"
    _assert_no_secrets(response)


def test_broker_refusing_connections_is_reported_unreachable(client):
    """A real connection attempt to a closed port, not only a raised exception."""
    from kombu import Connection

    closed = Connection("redis://127.0.0.1:1/0", connect_timeout=1)
    with mock.patch.object(celery_app, "connection_for_write", return_value=closed):
        response = client.get(URL)

    assert response.status_code == 200
    assert response.json()["broker"]["status"] == "unreachable"


def test_database_and_broker_both_down_answers_503(client):
    with _database_down(), _broker_down():
        response = client.get(URL)

    assert response.status_code == 503
    body = response.json()
    assert body["database"]["status"] == "unreachable"
    assert body["broker"]["status"] == "unreachable"
