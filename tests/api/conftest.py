"""Fixtures for the JSON API: tokens for the cast, a small JSON client, and a way to prove that
a refused request wrote nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from flagdash.accounts import tokens
from flagdash.audit.models import AuditEvent
from flagdash.flags import services
from flagdash.flags.models import ConfigVersion, Flag, FlagAttribute, FlagSetting, Tag

BASE = "/api/v1"


class Api:
    """A test client that speaks JSON, authenticated by a bearer token (or a session)."""

    def __init__(self, client: Client, token: str | None = None) -> None:
        self.client = client
        self.token = token

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    def request(
        self,
        method: str,
        path: str,
        data: Any = None,
        *,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        url = path if path.startswith("/") else f"{BASE}/{path}"
        if method == "GET":
            return self.client.get(url, query_params=query, headers=self.headers(headers))
        body = raw if raw is not None else (b"" if data is None else json.dumps(data))
        return self.client.generic(
            method, url, body, content_type=content_type, headers=self.headers(headers)
        )

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, data, **kwargs)

    def put(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.request("PUT", path, data, **kwargs)

    def patch(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.request("PATCH", path, data, **kwargs)

    def delete(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.request("DELETE", path, data, **kwargs)


def token_for(user: Any, name: str = "tests") -> str:
    return tokens.api_token_create(actor=None, user=user, name=name)[1]


@pytest.fixture
def api_for(db):
    """``api_for(user)``: a JSON client using a fresh token of ``user``."""

    def make(user: Any) -> Api:
        return Api(Client(), token_for(user))

    return make


@pytest.fixture
def admin_api(api_for, admin_user):
    return api_for(admin_user)


@pytest.fixture
def editor_api(api_for, editor):
    return api_for(editor)


@pytest.fixture
def viewer_api(api_for, viewer):
    return api_for(viewer)


@pytest.fixture
def outsider_api(api_for, outsider):
    return api_for(outsider)


@pytest.fixture
def bitcoin(flag):
    """The demo flag with its three attributes (an enum, a number 0–100 and a date)."""
    services.attribute_save(
        actor=None, flag=flag, name="default-currency", type="string", enum=["USD", "BTC"]
    )
    services.attribute_save(
        actor=None,
        flag=flag,
        name="bitcoin-discount-percentage",
        type="number",
        minimum=0,
        maximum=100,
    )
    services.attribute_save(actor=None, flag=flag, name="bitcoin-discount-end-date", type="date")
    return flag


def db_state() -> dict[str, Any]:
    """Everything a flag write could touch, to compare before and after a refused request."""
    return {
        "flags": list(
            Flag.objects.order_by("pk").values_list(
                "pk", "key", "name", "description", "short_term", "owner_id", "remove_by",
                "archived_at", "updated_at",
            )
        ),
        "tags": list(Tag.objects.order_by("pk").values_list("pk", "name")),
        "flag_tags": list(Flag.tags.through.objects.order_by("pk").values_list("pk")),
        "attributes": list(
            FlagAttribute.objects.order_by("pk").values_list(
                "pk", "name", "type", "description", "required", "pattern", "enum", "minimum",
                "maximum",
            )
        ),
        "settings": list(
            FlagSetting.objects.order_by("pk").values_list(
                "pk", "enabled", "attribute_values", "variants", "default_variant", "revision"
            )
        ),
        "versions": ConfigVersion.objects.count(),
        "audit": AuditEvent.objects.count(),
    }  # fmt: skip


@pytest.fixture
def unchanged():
    """``with unchanged(): ...`` asserts the block wrote nothing (rows and audit events)."""
    from contextlib import contextmanager

    @contextmanager
    def check():
        before = db_state()
        yield
        assert db_state() == before

    return check


def error_of(response: Any) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    assert body["error"]["message"], body
    return body["error"]
