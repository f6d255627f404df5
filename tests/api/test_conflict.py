"""Two people editing one setting: the second save is refused (409) with what changed since."""

from __future__ import annotations

import pytest

from flagdash.flags.models import FlagSetting
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db

FLAG = "apps/checkout/flags/allow-bitcoin-at-checkout/"
BETA = FLAG + "environments/beta/"


def test_second_put_with_the_same_revision_is_409_naming_the_first(
    editor_api, admin_api, bitcoin, unchanged
):
    revision = editor_api.get(BETA).json()["revision"]
    first = editor_api.put(
        BETA, {"attribute_values": {"default-currency": "BTC"}, "revision": revision}
    )
    assert first.status_code == 200, first.content
    assert first.json()["revision"] == revision + 1

    with unchanged():
        second = admin_api.put(
            BETA, {"attribute_values": {"bitcoin-discount-percentage": 5}, "revision": revision}
        )
    assert second.status_code == 409, second.content
    error = error_of(second)
    assert error["code"] == "revision_conflict"
    assert "editor" in error["message"]
    assert error["expected_revision"] == revision
    assert error["current"]["revision"] == revision + 1
    assert error["current"]["attribute_values"] == {"default-currency": "BTC"}
    [change] = error["changes_since"]
    assert change["actor"] == "editor"
    assert change["revision"] == revision + 1
    assert change["at"]
    assert {
        "path": "attribute_values.default-currency",
        "kind": "added",
        "old": None,
        "new": "BTC",
    } in change["changes"]
    # Nothing was lost: the first save stands.
    setting = FlagSetting.objects.get(flag=bitcoin, environment__key="beta")
    assert setting.attribute_values == {"default-currency": "BTC"}


def test_stale_toggle_is_409_with_the_changes(editor_api, admin_api, bitcoin):
    revision = editor_api.get(BETA).json()["revision"]
    assert (
        editor_api.post(BETA + "toggle/", {"enabled": True, "revision": revision}).status_code
        == 200
    )
    response = admin_api.post(BETA + "toggle/", {"enabled": False, "revision": revision})
    assert response.status_code == 409
    error = error_of(response)
    assert error["current"]["enabled"] is True
    [change] = error["changes_since"]
    assert change["actor"] == "editor"
    assert {"path": "enabled", "kind": "changed", "old": False, "new": True} in change["changes"]


def test_conflict_lists_every_save_since(editor_api, admin_api, bitcoin):
    start = editor_api.get(BETA).json()["revision"]
    revision = start
    for api, value in ((editor_api, "BTC"), (admin_api, "USD")):
        response = api.put(
            BETA, {"attribute_values": {"default-currency": value}, "revision": revision}
        )
        revision = response.json()["revision"]
    response = editor_api.put(BETA, {"attribute_values": {}, "revision": start})
    assert response.status_code == 409
    assert [c["actor"] for c in error_of(response)["changes_since"]] == ["editor", "admin"]


def test_put_with_the_current_revision_keeps_omitted_fields(editor_api, bitcoin):
    revision = editor_api.get(BETA).json()["revision"]
    saved = editor_api.put(
        BETA, {"attribute_values": {"default-currency": "BTC"}, "revision": revision}
    ).json()
    toggled = editor_api.post(BETA + "toggle/", {"enabled": True}).json()["setting"]
    assert toggled["enabled"] is True
    again = editor_api.put(
        BETA,
        {"attribute_values": {"default-currency": "USD"}, "revision": toggled["revision"]},
    )
    assert again.status_code == 200
    body = again.json()
    assert body["enabled"] is True  # omitted: kept
    assert body["attribute_values"] == {"default-currency": "USD"}
    assert body["revision"] == saved["revision"] + 2


def test_get_then_put_round_trips(editor_api, bitcoin):
    setting = editor_api.get(BETA).json()
    setting["attribute_values"] = {"bitcoin-discount-percentage": 10}
    response = editor_api.put(BETA, setting)
    assert response.status_code == 200, response.content
    assert response.json()["updated_by"] == "editor"


def test_put_without_changes_keeps_the_revision(editor_api, bitcoin):
    setting = editor_api.get(BETA).json()
    response = editor_api.put(BETA, {"revision": setting["revision"]})
    assert response.status_code == 200
    assert response.json()["revision"] == setting["revision"]


def test_a_save_landing_between_read_and_write_still_conflicts(editor_api, bitcoin, monkeypatch):
    """The service re-checks the revision under its row lock: no lost update in the gap."""
    from flagdash.flags import api, services

    real = services.flag_setting_update

    def racing(**kwargs):
        real(
            actor=None,
            flag=kwargs["flag"],
            environment=kwargs["environment"],
            expected_revision=kwargs["expected_revision"],
            attribute_values={"default-currency": "USD"},
        )
        return real(**kwargs)

    monkeypatch.setattr(api.services, "flag_setting_update", racing)
    revision = editor_api.get(BETA).json()["revision"]
    response = editor_api.put(
        BETA, {"attribute_values": {"default-currency": "BTC"}, "revision": revision}
    )
    assert response.status_code == 409
    error = error_of(response)
    assert error["current"]["attribute_values"] == {"default-currency": "USD"}
    assert error["changes_since"][0]["changes"][0]["path"] == "attribute_values.default-currency"
