"""Who may call the API: bearer tokens, sessions (with CSRF on writes), and 401s in JSON."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.utils import timezone

from flagdash.accounts import tokens
from flagdash.accounts.models import ApiToken
from flagdash.audit.models import Action, AuditEvent
from flagdash.flags.models import Flag
from tests.api.conftest import Api, error_of, token_for

pytestmark = pytest.mark.django_db

NEW_FLAG = {"key": "new-checkout", "name": "New checkout"}


def assert_401(response):
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert error_of(response)["code"] == "unauthenticated"


def test_no_credentials_is_401_json_not_a_redirect(app):
    response = Client().get("/api/v1/apps/")
    assert_401(response)
    assert "Location" not in response


def test_no_credentials_write_is_401_and_writes_nothing(app, envs, unchanged):
    with unchanged():
        assert_401(Api(Client()).post("apps/checkout/flags/", NEW_FLAG))


@pytest.mark.parametrize(
    "header",
    [
        "Bearer fdp_" + "x" * 40,  # well-formed, unknown
        "Bearer not-a-token",
        "Bearer ",
        "Basic YWRtaW46cGFzc3dvcmQ=",
        "Token fdp_" + "x" * 40,
    ],
)
def test_bad_token_is_401(app, editor, header):
    response = Client().get("/api/v1/apps/", headers={"Authorization": header})
    assert_401(response)


def test_a_token_works_and_acts_as_its_user(app, editor):
    plaintext = token_for(editor, "ci")
    response = Api(Client(), plaintext).get("")
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == "editor"
    assert body["role"] == "editor"
    assert body["auth"] == "token"
    assert body["token"]["name"] == "ci"
    assert body["token"]["prefix"] == plaintext[:8]


def test_revoked_token_is_401(app, editor):
    plaintext = token_for(editor)
    token = ApiToken.objects.get(user=editor)
    tokens.api_token_revoke(actor=editor, token=token)
    assert_401(Api(Client(), plaintext).get("apps/"))


def test_expired_token_is_401(app, editor):
    plaintext, token = token_for(editor), ApiToken.objects.get(user=editor)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert_401(Api(Client(), plaintext).get("apps/"))


def test_token_that_has_not_expired_yet_works(app, editor):
    _, plaintext = tokens.api_token_create(
        actor=editor, user=editor, name="soon", expires_at=timezone.now() + dt.timedelta(hours=1)
    )
    assert Api(Client(), plaintext).get("apps/").status_code == 200


def test_token_of_an_inactive_user_is_401(app, editor):
    plaintext = token_for(editor)
    editor.is_active = False
    editor.save()
    assert_401(Api(Client(), plaintext).get("apps/"))


def test_a_bad_token_does_not_fall_back_to_the_session(app, admin_client):
    response = admin_client.get("/api/v1/apps/", headers={"Authorization": "Bearer nope"})
    assert_401(response)


def test_last_used_is_recorded_at_most_once_a_minute(app, editor):
    plaintext = token_for(editor)
    api = Api(Client(), plaintext)
    api.get("apps/")
    first = ApiToken.objects.get(user=editor).last_used_at
    assert first is not None
    api.get("apps/")
    assert ApiToken.objects.get(user=editor).last_used_at == first
    ApiToken.objects.filter(user=editor).update(last_used_at=first - dt.timedelta(minutes=2))
    api.get("apps/")
    assert ApiToken.objects.get(user=editor).last_used_at > first


def test_session_works_for_reads(app, viewer_client):
    response = viewer_client.get("/api/v1/apps/")
    assert response.status_code == 200
    assert [a["key"] for a in response.json()["results"]] == ["checkout"]


def test_session_identity_is_reported(app, viewer_client):
    body = viewer_client.get("/api/v1/").json()
    assert (body["user"], body["auth"], body["token"]) == ("viewer", "session", None)


def _csrf_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_session_post_without_csrf_is_403_and_writes_nothing(app, envs, editor, unchanged):
    api = Api(_csrf_client(editor))
    with unchanged():
        response = api.post("apps/checkout/flags/", NEW_FLAG)
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "forbidden"
    assert "CSRF" in error["message"]


def test_session_post_with_csrf_token_is_accepted(app, envs, editor):
    client = _csrf_client(editor)
    secret = _get_new_csrf_string()
    client.cookies[settings.CSRF_COOKIE_NAME] = secret
    response = Api(client).post("apps/checkout/flags/", NEW_FLAG, headers={"X-CSRFToken": secret})
    assert response.status_code == 201, response.content
    assert Flag.objects.filter(key="new-checkout").exists()


def test_token_post_needs_no_csrf(app, envs, editor):
    api = Api(Client(enforce_csrf_checks=True), token_for(editor))
    response = api.post("apps/checkout/flags/", NEW_FLAG)
    assert response.status_code == 201, response.content


def test_writes_are_audited_as_the_token_user_from_the_api(app, envs, editor_api):
    response = editor_api.post(
        "apps/checkout/flags/", NEW_FLAG, headers={"X-Request-ID": "ci-run-12345"}
    )
    assert response.status_code == 201
    event = AuditEvent.objects.filter(action=Action.FLAG_CREATED).latest("id")
    assert (event.actor_name, event.source, event.request_id) == ("editor", "api", "ci-run-12345")


def test_outsider_is_403_even_for_reads(app, envs, flag, outsider_api):
    for path in ("apps/", "apps/checkout/flags/", f"apps/checkout/flags/{flag.key}/"):
        response = outsider_api.get(path)
        assert response.status_code == 403, path
        assert error_of(response)["code"] == "forbidden"


def test_outsider_session_is_403(app, outsider_client):
    assert outsider_client.get("/api/v1/apps/").status_code == 403


def test_wrong_method_is_405_with_allow(app, viewer_api):
    response = viewer_api.delete("apps/")
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert error_of(response)["code"] == "method_not_allowed"


def test_unknown_endpoint_is_404_json(app, viewer_api):
    for path in ("/api/v1/nothing-here/", "/api/v1/apps"):
        response = viewer_api.get(path)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "not_found"


def test_unknown_endpoint_still_needs_credentials(app):
    assert_401(Client().get("/api/v1/nothing-here/"))


def test_responses_are_not_cached(app, viewer_api):
    assert viewer_api.get("apps/")["Cache-Control"] == "no-store"
