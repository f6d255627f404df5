"""Who may change settings: admins only, checked on the server for every write endpoint.

A refused request answers 403 (or sends an anonymous user to the login page) and changes
nothing: no row and no audit event. An admin's request makes the change and writes exactly
one audit event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from flagdash.accounts.models import Membership
from flagdash.audit.models import AuditEvent
from flagdash.flags.models import Application, Environment
from tests.accounts.helpers import state

# Some tests reach their clients through getfixturevalue; mark the module so pytest-django
# orders them with the other database tests.
pytestmark = pytest.mark.django_db

User = get_user_model()


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: Callable[[Any], str]
    data: dict[str, str]
    actions: tuple[str, ...]  # audit events written, oldest first
    changed: Callable[[Any], bool]


ENDPOINTS = [
    Endpoint(
        "settings_application_create",
        lambda f: reverse("settings_application_create"),
        {"key": "payments", "name": "Payments", "description": "Card and wallet payments"},
        ("application.created",),
        lambda f: Application.objects.filter(key="payments", name="Payments").exists(),
    ),
    Endpoint(
        "settings_environment_create",
        lambda f: reverse("settings_environment_create", args=[f.app.key]),
        {"key": "staging", "name": "Staging"},
        # the service also saves version 1 of the new environment (all flags off)
        ("environment.created", "version.created"),
        lambda f: Environment.objects.filter(
            application=f.app, key="staging", protected=False
        ).exists(),
    ),
    Endpoint(
        "settings_environment_edit",
        lambda f: reverse("settings_environment_edit", args=[f.app.key, "beta"]),
        {"name": "Beta testers", "protected": "on"},
        ("environment.updated",),
        lambda f: Environment.objects.filter(
            key="beta", name="Beta testers", protected=True
        ).exists(),
    ),
    Endpoint(
        "settings_user_role",
        lambda f: reverse("settings_user_role", args=[f.member.pk]),
        {"role": "editor"},
        ("user.role_changed",),
        lambda f: Membership.objects.get(user=f.member).role == "editor",
    ),
    Endpoint(
        "settings_user_create",
        lambda f: reverse("settings_user_create"),
        {
            "username": "newcomer",
            "email": "newcomer@example.com",
            "password": "quiet-lantern-harbour-42",
            "role": "viewer",
        },
        ("user.created",),
        lambda f: User.objects.filter(username="newcomer", membership__role="viewer").exists(),
    ),
]


@dataclass
class Fixtures:
    app: Any
    member: Any


@pytest.fixture
def world(app, envs, flag, member):
    return Fixtures(app=app, member=member)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("who", ["viewer_client", "editor_client", "outsider_client"])
def test_only_admins_can_write_settings(request, world, endpoint, who):
    client = request.getfixturevalue(who)
    before = state()

    response = client.post(endpoint.url(world), endpoint.data)

    assert response.status_code == 403
    assert state() == before
    assert not endpoint.changed(world)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_refused_htmx_request_gets_a_toast_and_swaps_nothing(viewer_client, world, endpoint, htmx):
    before = state()

    response = viewer_client.post(endpoint.url(world), endpoint.data, headers=htmx)

    assert response.status_code == 403
    assert response["HX-Reswap"] == "none"
    html = response.content.decode()
    assert "<html" not in html
    assert "Only admins" in html
    assert state() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_anonymous_users_are_sent_to_log_in(client, world, endpoint):
    before = state()

    response = client.post(endpoint.url(world), endpoint.data)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")
    assert state() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_admin_changes_settings_and_it_is_audited(admin_client, admin_user, world, endpoint):
    """One audit event per change (creating an environment also saves its version 1)."""
    last_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    response = admin_client.post(endpoint.url(world), endpoint.data)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("settings"))
    assert endpoint.changed(world)
    events = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id"))
    assert [(e.action, e.actor_id, e.source) for e in events] == [
        (action, admin_user.pk, "web") for action in endpoint.actions
    ]
    assert len({e.request_id for e in events}) == 1
    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    assert "toast-success" in page.content.decode()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_admin_htmx_write_returns_the_section(admin_client, world, endpoint, htmx):
    before = AuditEvent.objects.count()

    response = admin_client.post(endpoint.url(world), endpoint.data, headers=htmx)

    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert "toast-success" in html
    assert 'id="settings-' in html
    assert endpoint.changed(world)
    assert AuditEvent.objects.count() == before + len(endpoint.actions)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_write_endpoints_do_not_answer_get(admin_client, world, endpoint):
    before = state()

    response = admin_client.get(endpoint.url(world))

    assert response.status_code == 405
    assert state() == before


def test_outsider_cannot_even_read_settings(outsider_client):
    response = outsider_client.get(reverse("settings"))

    assert response.status_code == 403
    assert "no role" in response.content.decode()


def test_anonymous_user_is_sent_to_log_in_from_settings(client, db):
    response = client.get(reverse("settings"))

    assert response.status_code == 302
    assert response["Location"] == reverse("login") + "?next=/settings/"


@pytest.mark.parametrize("who", ["viewer_client", "editor_client", "admin_client"])
def test_every_role_can_read_settings(request, who, app, envs):
    response = request.getfixturevalue(who).get(reverse("settings"))

    assert response.status_code == 200


def test_write_to_unknown_application_is_404_for_admin(admin_client, app):
    response = admin_client.post(
        reverse("settings_environment_create", args=["nope"]), {"key": "x", "name": "X"}
    )

    assert response.status_code == 404


def test_write_to_unknown_application_is_403_for_viewer(viewer_client, app):
    """The permission is checked before looking anything up (no probing for names)."""
    response = viewer_client.post(
        reverse("settings_environment_create", args=["nope"]), {"key": "x", "name": "X"}
    )

    assert response.status_code == 403
