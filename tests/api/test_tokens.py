"""Personal API tokens: the page, the command and the services. The token is shown once,
only its hash is stored, and the audit log never sees it."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from flagdash.accounts import tokens
from flagdash.accounts.models import ApiToken
from flagdash.audit.models import Action, AuditEvent
from tests.api.conftest import Api, token_for

pytestmark = pytest.mark.django_db

TOKEN_RE = re.compile(r"fdp_[A-Za-z0-9_-]{40}")
URL = "/settings/tokens/"


def assert_stored_safely(token: ApiToken, plaintext: str) -> None:
    assert TOKEN_RE.fullmatch(plaintext)
    assert token.prefix == plaintext[:8]
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert plaintext not in json.dumps(row, default=str)


def assert_audit_clean(plaintext: str) -> None:
    for event in AuditEvent.objects.filter(target_type="api_token"):
        dumped = json.dumps([event.before, event.after, event.target_repr])
        assert plaintext not in dumped
        assert plaintext[8:] not in dumped
        assert hashlib.sha256(plaintext.encode()).hexdigest() not in dumped


# --- the page --------------------------------------------------------------------------------


def test_page_lists_only_your_tokens(editor_client, editor, viewer):
    token_for(editor, "deploy pipeline")
    token_for(viewer, "viewer's script")
    response = editor_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "deploy pipeline" in html
    assert "viewer&#x27;s script" not in html and "viewer's script" not in html


def test_creating_shows_the_token_once_and_stores_only_its_hash(editor_client, editor):
    response = editor_client.post(URL, {"name": "deploy pipeline", "expires": "30"})
    assert response.status_code == 201
    html = response.content.decode()
    [plaintext] = set(TOKEN_RE.findall(html))
    assert "will not show it again" in html
    assert response["Cache-Control"].startswith("max-age=0")  # never_cache

    token = ApiToken.objects.get(user=editor)
    assert_stored_safely(token, plaintext)
    assert token.expires_at - timezone.now() > dt.timedelta(days=29)

    event = AuditEvent.objects.get(action=Action.API_TOKEN_CREATED)
    assert (event.actor_name, event.source) == ("editor", "web")
    assert event.after["name"] == "deploy pipeline"
    assert event.after["prefix"] == plaintext[:8]
    assert_audit_clean(plaintext)

    again = editor_client.get(URL).content.decode()
    assert plaintext not in again
    assert plaintext[:8] in again
    assert Api(Client(), plaintext).get("apps/").status_code == 200


def test_token_without_expiry(editor_client, editor):
    editor_client.post(URL, {"name": "forever", "expires": "never"})
    assert ApiToken.objects.get(user=editor).expires_at is None


def test_bad_name_is_shown_at_the_field(editor_client, editor):
    token_for(editor, "taken")
    for name, message in (("", "required"), ("taken", "already have an active token")):
        response = editor_client.post(URL, {"name": name, "expires": "30"})
        assert response.status_code == 422
        assert message in response.content.decode()
    assert ApiToken.objects.filter(user=editor).count() == 1


def test_revoke_asks_then_revokes(editor_client, editor):
    plaintext = token_for(editor, "old script")
    token = ApiToken.objects.get(user=editor)
    url = reverse("api_token_revoke", args=[token.pk])
    confirm = editor_client.get(url)
    assert confirm.status_code == 200
    assert "Revoke “old script”?" in confirm.content.decode()
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None

    response = editor_client.post(url)
    assert response.status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    event = AuditEvent.objects.get(action=Action.API_TOKEN_REVOKED)
    assert event.actor_name == "editor"
    assert event.after["revoked"] is True
    assert_audit_clean(plaintext)
    assert Api(Client(), plaintext).get("apps/").status_code == 401
    assert "revoked" in editor_client.get(URL).content.decode()


def test_you_cannot_revoke_someone_elses_token(editor_client, viewer):
    plaintext = token_for(viewer)
    token = ApiToken.objects.get(user=viewer)
    events = AuditEvent.objects.count()
    assert editor_client.post(reverse("api_token_revoke", args=[token.pk])).status_code == 403
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None
    assert AuditEvent.objects.count() == events
    assert Api(Client(), plaintext).get("apps/").status_code == 200


def test_admin_sees_and_revokes_anyones_token(admin_client, editor):
    token_for(editor, "leaked")
    token = ApiToken.objects.get(user=editor)
    assert "leaked" in admin_client.get(URL).content.decode()
    assert admin_client.post(reverse("api_token_revoke", args=[token.pk])).status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert AuditEvent.objects.get(action=Action.API_TOKEN_REVOKED).actor_name == "admin"


def test_outsider_gets_403_and_anonymous_goes_to_login(outsider_client):
    assert outsider_client.post(URL, {"name": "x", "expires": "7"}).status_code == 403
    assert not ApiToken.objects.exists()
    response = Client().get(URL)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_revoking_twice_says_so(editor_client, editor):
    token_for(editor)
    token = ApiToken.objects.get(user=editor)
    url = reverse("api_token_revoke", args=[token.pk])
    editor_client.post(url)
    response = editor_client.post(url, follow=True)
    assert "already revoked" in response.content.decode()
    assert AuditEvent.objects.filter(action=Action.API_TOKEN_REVOKED).count() == 1


# --- the command -----------------------------------------------------------------------------


def test_command_prints_the_token_once(editor):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", "editor", "--name", "ci", stdout=out, stderr=err)
    plaintext = out.getvalue().strip()
    assert TOKEN_RE.fullmatch(plaintext)
    assert plaintext not in err.getvalue()
    token = ApiToken.objects.get(user=editor)
    assert_stored_safely(token, plaintext)
    event = AuditEvent.objects.get(action=Action.API_TOKEN_CREATED)
    assert event.source == "cli"
    assert_audit_clean(plaintext)
    assert Api(Client(), plaintext).get("").json()["user"] == "editor"


def test_command_with_expiry(editor):
    call_command(
        "create_api_token", "editor", "--name", "ci", "--expires-in-days", "7",
        stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip
    expires = ApiToken.objects.get(user=editor).expires_at
    assert dt.timedelta(days=6) < expires - timezone.now() <= dt.timedelta(days=7)


def test_command_refuses_unknown_user_and_bad_name(editor):
    with pytest.raises(CommandError, match="No user"):
        call_command("create_api_token", "ghost", "--name", "ci")
    with pytest.raises(CommandError, match="name"):
        call_command("create_api_token", "editor", "--name", "  ")
    assert not ApiToken.objects.exists()


# --- the services ----------------------------------------------------------------------------


def test_tokens_are_created_only_for_yourself(editor, viewer, admin_user):
    with pytest.raises(PermissionDenied):
        tokens.api_token_create(actor=admin_user, user=viewer, name="x")
    assert not ApiToken.objects.exists()


def test_outsider_cannot_create_a_token(outsider):
    with pytest.raises(PermissionDenied):
        tokens.api_token_create(actor=outsider, user=outsider, name="x")


def test_expiry_must_be_in_the_future(editor):
    with pytest.raises(ValidationError) as exc:
        tokens.api_token_create(
            actor=editor, user=editor, name="x", expires_at=timezone.now() - dt.timedelta(days=1)
        )
    assert exc.value.error_dict["expires_at"][0].code == "in_past"


def test_authenticate_rejects_lookalikes(editor):
    plaintext = token_for(editor)
    assert tokens.api_token_authenticate(plaintext) is not None
    assert (
        tokens.api_token_authenticate(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B"))
        is None
    )
    assert tokens.api_token_authenticate(plaintext + "x") is None
    assert tokens.api_token_authenticate(plaintext.upper()) is None
    assert tokens.api_token_authenticate("") is None
