"""Reads: applications, environments, the flag list (filters, pages, a fixed query count),
a flag, a setting, versions and their diff."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from flagdash.flags import services
from tests.api.conftest import error_of
from tests.factories import make_flag

pytestmark = pytest.mark.django_db

FLAGS = "apps/checkout/flags/"
FLAG = FLAGS + "allow-bitcoin-at-checkout/"


def test_applications_and_environments(viewer_api, envs):
    assert [a["key"] for a in viewer_api.get("apps/").json()["results"]] == ["checkout"]
    body = viewer_api.get("apps/checkout/environments/").json()
    assert [(e["key"], e["protected"], e["can_edit"]) for e in body["results"]] == [
        ("beta", False, False),
        ("production", True, False),
    ]
    assert body["results"][0]["backend"]["kind"] == "local"


def test_environments_say_what_the_caller_may_change(editor_api, envs):
    body = editor_api.get("apps/checkout/environments/").json()
    assert [e["can_edit"] for e in body["results"]] == [True, False]


def test_flag_list_has_each_environments_state(viewer_api, flag, beta, editor):
    services.flag_set_enabled(actor=editor, flag=flag, environment=beta, enabled=True)
    body = viewer_api.get(FLAGS).json()
    assert body["count"] == 1
    [row] = body["results"]
    assert row["key"] == flag.key
    assert row["short_term"] is True
    assert row["environments"] == {
        "beta": {"enabled": True, "revision": 2},
        "production": {"enabled": False, "revision": 1},
    }


def test_flag_list_filters_and_sorts(viewer_api, app, envs, editor):
    make_flag(app, "alpha", short_term=True, tags=["payments"], owner=editor)
    make_flag(app, "beta-banner", description="A banner for checkout")
    archived = make_flag(app, "old-thing")
    services.flag_set_archived(actor=None, flag=archived, archived=True)

    def keys(**query):
        response = viewer_api.get(FLAGS, query=query)
        assert response.status_code == 200, response.content
        return [f["key"] for f in response.json()["results"]]

    assert keys() == ["alpha", "beta-banner"]
    assert keys(q="banner") == ["beta-banner"]
    assert keys(short_term="yes") == ["alpha"]
    assert keys(short_term="false") == ["beta-banner"]
    assert keys(tag="payments") == ["alpha"]
    assert keys(owner="editor") == ["alpha"]
    assert keys(archived="only") == ["old-thing"]
    assert keys(archived="all") == ["alpha", "beta-banner", "old-thing"]
    assert keys(sort="-key") == ["beta-banner", "alpha"]


def test_flag_list_pages(viewer_api, app, envs):
    for i in range(5):
        make_flag(app, f"flag-{i}")
    first = viewer_api.get(FLAGS, query={"page_size": "2"}).json()
    assert (first["count"], first["pages"], first["page"]) == (5, 3, 1)
    assert [f["key"] for f in first["results"]] == ["flag-0", "flag-1"]
    assert first["previous"] is None
    assert "page=2" in first["next"] and "page_size=2" in first["next"]
    last = viewer_api.get(FLAGS, query={"page_size": "2", "page": "3"}).json()
    assert [f["key"] for f in last["results"]] == ["flag-4"]
    assert last["next"] is None


def _list_queries(api, app, envs, count: int, editor) -> int:
    existing = app.flags.count()
    for i in range(existing, count):
        make_flag(app, f"flag-{i:03d}", tags=["t1", f"t{i % 3}"], owner=editor if i % 2 else None)
    with CaptureQueriesContext(connection) as ctx:
        response = api.get(FLAGS, query={"page_size": "100"})
    assert response.status_code == 200
    assert len(response.json()["results"]) == count
    return len(ctx.captured_queries)


def test_flag_list_query_count_does_not_grow_with_flags(viewer_api, app, envs, editor):
    viewer_api.get("apps/")  # the token's first use records last_used_at (once a minute)
    ten = _list_queries(viewer_api, app, envs, 10, editor)
    hundred = _list_queries(viewer_api, app, envs, 100, editor)
    assert ten == hundred
    assert hundred <= 10


def test_flag_detail_includes_attributes(viewer_api, bitcoin):
    body = viewer_api.get(FLAG).json()
    assert body["key"] == bitcoin.key
    assert body["application"] == "checkout"
    assert [a["name"] for a in body["attributes"]] == [
        "default-currency",
        "bitcoin-discount-percentage",
        "bitcoin-discount-end-date",
    ]
    assert body["attributes"][0]["enum"] == ["USD", "BTC"]
    assert body["attributes"][1]["minimum"] == 0 and body["attributes"][1]["maximum"] == 100


def test_setting_of_a_boolean_flag(viewer_api, bitcoin):
    body = viewer_api.get(FLAG + "environments/production/").json()
    assert body == {
        "flag": bitcoin.key,
        "environment": "production",
        "enabled": False,
        "attribute_values": {},
        "variants": None,
        "default_variant": None,
        "revision": 1,
        "updated_at": body["updated_at"],
        "updated_by": None,
    }


def test_multivariant_flag_round_trip(editor_api, envs):
    created = editor_api.post(
        FLAGS,
        {
            "key": "button-colour",
            "name": "Button colour",
            "kind": "multivariant",
            "value_type": "string",
            "variants": [{"name": "blue", "value": "#00f"}, {"name": "red", "value": "#f00"}],
            "remove_by": "2030-01-31",
            "short_term": True,
        },
    )
    assert created.status_code == 201, created.content
    assert created.json()["remove_by"] == "2030-01-31"
    path = FLAGS + "button-colour/environments/beta/"
    setting = editor_api.get(path).json()
    assert setting["default_variant"] == "blue"
    response = editor_api.put(
        path,
        {
            "variants": [{"name": "blue", "value": "#00f"}, {"name": "green", "value": "#0f0"}],
            "default_variant": "green",
            "revision": setting["revision"],
        },
    )
    assert response.status_code == 200, response.content
    assert response.json()["default_variant"] == "green"


def test_patch_changes_only_what_is_given(editor_api, flag, editor):
    response = editor_api.patch(FLAG, {"tags": ["payments"], "owner": "editor"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["tags"], body["owner"]) == (flag.name, ["payments"], "editor")
    assert body["short_term"] is True
    cleared = editor_api.patch(FLAG, {"owner": None, "remove_by": None}).json()
    assert cleared["owner"] is None


def test_archive_and_restore(editor_api, flag):
    assert editor_api.post(FLAG + "archive/").json()["archived"] is True
    assert editor_api.get(FLAGS).json()["count"] == 0
    assert editor_api.post(FLAG + "restore/").json()["archived"] is False


def test_attribute_add_rename_delete(editor_api, flag, beta):
    created = editor_api.post(
        FLAG + "attributes/", {"name": "limit", "type": "number", "minimum": 0, "maximum": 10}
    )
    assert created.status_code == 201, created.content
    assert created["Location"].endswith("/attributes/limit/")
    revision = editor_api.get(FLAG + "environments/beta/").json()["revision"]
    editor_api.put(
        FLAG + "environments/beta/", {"attribute_values": {"limit": 3}, "revision": revision}
    )
    renamed = editor_api.patch(FLAG + "attributes/limit/", {"name": "max-items"})
    assert renamed.json()["name"] == "max-items"
    assert renamed.json()["maximum"] == 10  # unchanged
    values = editor_api.get(FLAG + "environments/beta/").json()["attribute_values"]
    assert values == {"max-items": 3}
    deleted = editor_api.delete(FLAG + "attributes/max-items/")
    assert deleted.status_code == 200
    assert deleted.json()["attributes"] == []
    assert editor_api.get(FLAG + "environments/beta/").json()["attribute_values"] == {}


def test_toggle_answers_the_setting_and_the_new_version(editor_api, flag):
    response = editor_api.post(FLAG + "environments/beta/toggle/", {"enabled": True})
    assert response.status_code == 200
    body = response.json()
    assert body["setting"]["enabled"] is True
    assert body["version"]["number"] == 2
    assert body["version"]["author"] == "editor"


def test_versions_list_detail_and_diff(editor_api, viewer_api, flag):
    versions = "apps/checkout/environments/beta/versions/"
    created = editor_api.post(versions, {"message": "Add the bitcoin flag"})
    assert created.status_code == 201, created.content
    number = created.json()["number"]
    assert created.json()["document"]["flags"][flag.key]["enabled"] is False
    assert created["Location"] == f"/api/v1/{versions}{number}/"
    editor_api.post(FLAG + "environments/beta/toggle/", {"enabled": True})

    listing = viewer_api.get(versions).json()
    assert [v["number"] for v in listing["results"]] == [number + 1, number, 1]
    assert "document" not in listing["results"][0]

    detail = viewer_api.get(f"{versions}{number}/").json()
    assert detail["message"] == "Add the bitcoin flag"
    assert detail["document"]["environment"] == "beta"

    diff = viewer_api.get(f"{versions}{number + 1}/diff/").json()
    assert (diff["from"], diff["to"]) == (number, number + 1)
    [entry] = diff["flags"]
    assert entry["key"] == flag.key and entry["status"] == "changed"
    assert {"path": "enabled", "kind": "changed", "old": False, "new": True} in entry["changes"]

    against_first = viewer_api.get(f"{versions}{number + 1}/diff/", query={"against": "1"}).json()
    assert against_first["from"] == 1
    assert against_first["flags"][0]["status"] == "added"


def test_diff_against_must_be_a_number(viewer_api, flag):
    response = viewer_api.get(
        "apps/checkout/environments/beta/versions/1/diff/", query={"against": "latest"}
    )
    assert response.status_code == 400
    assert "against" in error_of(response)["fields"]


def test_dates_are_iso(viewer_api, flag):
    body = viewer_api.get(FLAG).json()
    assert dt.datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
