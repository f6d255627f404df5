"""The permission matrix: each write endpoint × viewer, editor, admin, outsider.

Roles apply exactly as in the dashboard: a viewer reads, an editor writes flags and
non-protected environments, an admin writes everything. A refusal is a 403 that writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from flagdash.audit.models import AuditEvent
from flagdash.flags import services
from flagdash.flags.models import FlagSetting
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db

FLAG = "apps/checkout/flags/allow-bitcoin-at-checkout/"


def _revision(flag: Any, env_key: str) -> int:
    return FlagSetting.objects.get(flag=flag, environment__key=env_key).revision


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: Any = None
    protected: bool = False  # acts on the protected production environment
    setup: str = ""

    def __str__(self) -> str:
        return self.name


CASES = [
    Case("create flag", "POST", "apps/checkout/flags/", {"key": "new-flag", "name": "New"}),
    Case("edit flag", "PATCH", FLAG, {"name": "Renamed", "tags": ["payments"]}),
    Case("archive flag", "POST", FLAG + "archive/"),
    Case("restore flag", "POST", FLAG + "restore/", setup="archived"),
    Case("add attribute", "POST", FLAG + "attributes/", {"name": "limit", "type": "number"}),
    Case("change attribute", "PATCH", FLAG + "attributes/default-currency/", {"required": True}),
    Case("remove attribute", "DELETE", FLAG + "attributes/default-currency/"),
    Case(
        "remove attribute set in production",
        "DELETE",
        FLAG + "attributes/default-currency/",
        protected=True,
        setup="production_value",
    ),
    Case(
        "save values in beta",
        "PUT",
        FLAG + "environments/beta/",
        {"attribute_values": {"default-currency": "BTC"}, "revision": "beta"},
    ),
    Case(
        "save values in production",
        "PUT",
        FLAG + "environments/production/",
        {"attribute_values": {"default-currency": "BTC"}, "revision": "production"},
        protected=True,
    ),
    Case("toggle in beta", "POST", FLAG + "environments/beta/toggle/", {"enabled": True}),
    Case(
        "toggle in production",
        "POST",
        FLAG + "environments/production/toggle/",
        {"enabled": True},
        protected=True,
    ),
    Case("save version of beta", "POST", "apps/checkout/environments/beta/versions/", {}),
    Case(
        "save version of production",
        "POST",
        "apps/checkout/environments/production/versions/",
        {"message": "release"},
        protected=True,
    ),
]

ALLOWED = {
    "viewer": lambda case: False,
    "outsider": lambda case: False,
    "editor": lambda case: not case.protected,
    "admin": lambda case: True,
}


@pytest.fixture
def prepared(bitcoin, production):
    def prepare(case: Case) -> tuple[str, Any]:
        if case.setup == "archived":
            services.flag_set_archived(actor=None, flag=bitcoin, archived=True)
        if case.setup == "production_value":
            services.flag_setting_update(
                actor=None,
                flag=bitcoin,
                environment=production,
                expected_revision=_revision(bitcoin, "production"),
                enabled=False,
                attribute_values={"default-currency": "USD"},
            )
        body = case.body
        if isinstance(body, dict) and isinstance(body.get("revision"), str):
            body = {**body, "revision": _revision(bitcoin, body["revision"])}
        return case.path, body

    return prepare


@pytest.mark.parametrize("role", ["viewer", "outsider", "editor", "admin"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_permission_matrix(case, role, prepared, api_for, request, unchanged):
    user = request.getfixturevalue("admin_user" if role == "admin" else role)
    api = api_for(user)
    path, body = prepared(case)
    if ALLOWED[role](case):
        events = AuditEvent.objects.count()
        response = api.request(case.method, path, body)
        assert response.status_code in (200, 201), response.content
        assert AuditEvent.objects.count() > events
        assert AuditEvent.objects.latest("id").actor_name == user.username
    else:
        with unchanged():
            response = api.request(case.method, path, body)
        assert response.status_code == 403, response.content
        error = error_of(response)
        assert error["code"] == "forbidden"
        if case.protected and role == "editor":
            assert "admin" in error["message"]


def test_create_answers_201_with_the_resource_and_its_location(editor_api, envs):
    response = editor_api.post(
        "apps/checkout/flags/", {"key": "new-flag", "name": "New", "tags": ["a", "b"]}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["key"] == "new-flag"
    assert body["tags"] == ["a", "b"]
    assert body["environments"] == {
        "beta": {"enabled": False, "revision": 1},
        "production": {"enabled": False, "revision": 1},
    }
    assert response["Location"] == "/api/v1/apps/checkout/flags/new-flag/"


def test_viewer_refused_before_the_body_is_read(viewer_api, envs, unchanged):
    """A refused caller learns nothing from a bad body: the 403 comes first."""
    with unchanged():
        response = viewer_api.post("apps/checkout/flags/", raw=b"{not json")
    assert response.status_code == 403
