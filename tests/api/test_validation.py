"""Bad input is refused with a coded JSON error at the field, and nothing is written."""

from __future__ import annotations

import json

import pytest

from flagdash.flags import services
from flagdash.flags.api_base import MAX_BODY_BYTES
from flagdash.flags.models import FlagSetting
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db

FLAGS = "apps/checkout/flags/"
FLAG = FLAGS + "allow-bitcoin-at-checkout/"
BETA = FLAG + "environments/beta/"


def _beta_revision(flag) -> int:
    return FlagSetting.objects.get(flag=flag, environment__key="beta").revision


def refused(response, status: int, code: str, field: str | None = None, field_code: str = ""):
    assert response.status_code == status, response.content
    error = error_of(response)
    assert error["code"] == code, error
    if field is not None:
        assert field in error["fields"], error
        if field_code:
            assert field_code in [e["code"] for e in error["fields"][field]], error
        assert all(e["message"] for e in error["fields"][field])
    return error


# --- 422: the services refuse ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["Bad Key", "1-starts-with-digit", "a" * 65, "", "ümlaut"])
def test_malformed_key_is_422_at_the_key(editor_api, envs, unchanged, key):
    with unchanged():
        response = editor_api.post(FLAGS, {"key": key, "name": "Something"})
    refused(response, 422, "validation_failed", "key")


def test_duplicate_key_is_422_with_code_duplicate(editor_api, flag, unchanged):
    with unchanged():
        response = editor_api.post(FLAGS, {"key": flag.key, "name": "Again"})
    error = refused(response, 422, "validation_failed", "key", "duplicate")
    assert flag.key in error["fields"]["key"][0]["message"]


def test_oversize_description_is_422(editor_api, flag, unchanged):
    with unchanged():
        create = editor_api.post(FLAGS, {"key": "other", "name": "N", "description": "x" * 1025})
        edit = editor_api.patch(FLAG, {"description": "y" * 5000})
    refused(create, 422, "validation_failed", "description", "too_long")
    refused(edit, 422, "validation_failed", "description", "too_long")


def test_blank_name_is_422(editor_api, flag, unchanged):
    with unchanged():
        response = editor_api.patch(FLAG, {"name": "   "})
    refused(response, 422, "validation_failed", "name", "required")


def test_unknown_owner_and_bad_tag_are_422(editor_api, flag, unchanged):
    with unchanged():
        owner = editor_api.patch(FLAG, {"owner": "nobody-by-that-name"})
        tags = editor_api.patch(FLAG, {"tags": ["Not A Tag!"]})
    refused(owner, 422, "validation_failed", "owner", "unknown_user")
    refused(tags, 422, "validation_failed", "tags", "invalid_tag")


def test_key_and_kind_cannot_change(editor_api, flag, unchanged):
    with unchanged():
        response = editor_api.patch(FLAG, {"key": "renamed", "kind": "multivariant"})
    error = refused(response, 422, "validation_failed", "key", "read_only")
    assert error["fields"]["kind"][0]["code"] == "read_only"


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"default-currency": "EUR"}, "not_in_enum"),
        ({"bitcoin-discount-percentage": 150}, "above_maximum"),
        ({"bitcoin-discount-percentage": -1}, "below_minimum"),
        ({"bitcoin-discount-percentage": "ten"}, "wrong_type"),
        ({"bitcoin-discount-percentage": True}, "wrong_type"),
        ({"bitcoin-discount-end-date": "2026-02-30"}, "invalid_date"),
        ({"bitcoin-discount-end-date": 20260101}, "wrong_type"),
        ({"default-currency": "x" * 2000}, "too_long"),
    ],
)
def test_value_breaking_a_constraint_is_422_at_the_attribute(
    editor_api, bitcoin, unchanged, values, code
):
    [name] = values
    with unchanged():
        response = editor_api.put(
            BETA, {"attribute_values": values, "revision": _beta_revision(bitcoin)}
        )
    refused(response, 422, "validation_failed", f"attribute_values.{name}", code)


def test_unknown_attribute_value_is_422(editor_api, bitcoin, unchanged):
    with unchanged():
        response = editor_api.put(
            BETA, {"attribute_values": {"nope": 1}, "revision": _beta_revision(bitcoin)}
        )
    refused(response, 422, "validation_failed", "attribute_values.nope", "unknown_attribute")


def test_several_bad_values_are_all_reported(editor_api, bitcoin, unchanged):
    values = {"default-currency": "EUR", "bitcoin-discount-percentage": 101}
    with unchanged():
        response = editor_api.put(
            BETA, {"attribute_values": values, "revision": _beta_revision(bitcoin)}
        )
    error = refused(response, 422, "validation_failed")
    assert set(error["fields"]) == {f"attribute_values.{n}" for n in values}


def test_required_attribute_must_be_set_before_enabling(editor_api, bitcoin, unchanged):
    services.attribute_save(
        actor=None,
        flag=bitcoin,
        attribute=bitcoin.attributes.get(name="default-currency"),
        name="default-currency",
        type="string",
        enum=["USD", "BTC"],
        required=True,
    )
    with unchanged():
        response = editor_api.post(BETA + "toggle/", {"enabled": True})
    refused(response, 422, "validation_failed", "attribute_values.default-currency", "required")


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"name": "limit", "type": "text"}, "type", "invalid_choice"),
        ({"name": "limit", "type": "number", "enum": ["a"]}, "enum", "not_applicable"),
        ({"name": "limit", "type": "string", "minimum": 1}, "minimum", "not_applicable"),
        (
            {"name": "limit", "type": "number", "minimum": 5, "maximum": 1},
            "maximum",
            "invalid_range",
        ),
        ({"name": "limit", "type": "string", "pattern": "("}, "pattern", "invalid_regex"),
        ({"name": "Bad name", "type": "string"}, "name", "invalid_name"),
        ({"name": "default-currency", "type": "string"}, "name", "duplicate"),
        ({"name": "limit", "type": "string", "description": "d" * 1025}, "description", "too_long"),
    ],
)
def test_bad_attribute_definition_is_422(editor_api, bitcoin, unchanged, body, field, code):
    with unchanged():
        response = editor_api.post(FLAG + "attributes/", body)
    refused(response, 422, "validation_failed", field, code)


def test_attribute_change_that_existing_values_break_is_422(editor_api, bitcoin, unchanged):
    services.flag_setting_update(
        actor=None,
        flag=bitcoin,
        environment=bitcoin.settings.get(environment__key="beta").environment,
        expected_revision=_beta_revision(bitcoin),
        attribute_values={"bitcoin-discount-percentage": 50},
    )
    with unchanged():
        response = editor_api.patch(
            FLAG + "attributes/bitcoin-discount-percentage/", {"maximum": 10}
        )
    refused(response, 422, "validation_failed", "type", "existing_value_invalid")


def test_multivariant_flag_variants_are_checked(editor_api, envs, unchanged):
    base = {"key": "checkout-button", "name": "Button", "kind": "multivariant"}
    with unchanged():
        no_type = editor_api.post(FLAGS, base)
        empty = editor_api.post(FLAGS, {**base, "value_type": "string", "variants": []})
        dupes = editor_api.post(
            FLAGS,
            {
                **base,
                "value_type": "integer",
                "variants": [{"name": "a", "value": 1}, {"name": "a", "value": "two"}],
            },
        )
        bad_default = editor_api.post(
            FLAGS,
            {
                **base,
                "value_type": "string",
                "variants": [{"name": "a", "value": "x"}],
                "default_variant": "b",
            },
        )
    refused(no_type, 422, "validation_failed", "value_type", "invalid_choice")
    refused(empty, 422, "validation_failed", "variants", "required")
    refused(dupes, 422, "validation_failed", "variants.1", "duplicate")
    refused(bad_default, 422, "validation_failed", "default_variant", "unknown_variant")


def test_variants_on_a_boolean_flag_are_refused(editor_api, flag, unchanged):
    with unchanged():
        create = editor_api.post(
            FLAGS, {"key": "b", "name": "B", "variants": [{"name": "a", "value": "x"}]}
        )
        put = editor_api.put(
            BETA, {"variants": [{"name": "a", "value": "x"}], "revision": _beta_revision(flag)}
        )
    refused(create, 422, "validation_failed", "variants", "not_applicable")
    refused(put, 422, "validation_failed", "variants", "not_applicable")


def test_toggle_to_the_current_state_is_422_no_change(editor_api, flag, unchanged):
    with unchanged():
        response = editor_api.post(BETA + "toggle/", {"enabled": False})
    refused(response, 422, "validation_failed", "enabled", "no_change")


def test_archiving_twice_is_422_no_change(editor_api, flag):
    assert editor_api.post(FLAG + "archive/").status_code == 200
    refused(editor_api.post(FLAG + "archive/"), 422, "validation_failed", "archived", "no_change")


def test_version_without_changes_is_422(editor_api, flag, unchanged):
    versions = "apps/checkout/environments/beta/versions/"
    assert editor_api.post(versions, {"message": "first"}).status_code == 201
    with unchanged():
        response = editor_api.post(versions, {"message": "again"})
    refused(response, 422, "validation_failed", "message", "no_changes")


def test_revision_from_the_future_is_422(editor_api, flag, unchanged):
    with unchanged():
        response = editor_api.put(BETA, {"attribute_values": {}, "revision": 999})
    refused(response, 422, "validation_failed", "revision", "invalid_revision")


# --- 400: the JSON is wrong ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method", "body", "field"),
    [
        (BETA + "toggle/", "POST", {"enabled": "yes"}, "enabled"),
        (BETA + "toggle/", "POST", {"enabled": 1}, "enabled"),
        (BETA + "toggle/", "POST", {"enabled": True, "revision": "3"}, "revision"),
        (BETA + "toggle/", "POST", {}, "enabled"),
        (FLAGS, "POST", {"key": "ok", "name": "Ok", "tags": 5}, "tags"),
        (FLAGS, "POST", {"key": "ok", "name": "Ok", "tags": ["a", 5]}, "tags"),
        (FLAGS, "POST", {"key": 5, "name": "Ok"}, "key"),
        (FLAGS, "POST", {"name": "Ok"}, "key"),
        (FLAGS, "POST", {"key": "ok", "name": None}, "name"),
        (FLAGS, "POST", {"key": "ok", "name": "Ok", "short_term": "true"}, "short_term"),
        (FLAGS, "POST", {"key": "ok", "name": "Ok", "remove_by": "next week"}, "remove_by"),
        (FLAGS, "POST", {"key": "ok", "name": "Ok", "remove_by": "2026-13-01"}, "remove_by"),
        (FLAGS, "POST", {"key": "ok", "name": "Ok", "variants": {"a": 1}}, "variants"),
        (FLAGS, "POST", {"key": "ok", "name": "Ok", "variants": ["a"]}, "variants"),
        (FLAGS, "POST", {"key": "ok", "name": "Ok", "colour": "red"}, "colour"),
        (FLAG, "PATCH", {"description": ["a"]}, "description"),
        (FLAG, "PATCH", {"archived": True}, "archived"),
        (BETA, "PUT", {"attribute_values": {}}, "revision"),
        (BETA, "PUT", {"attribute_values": [], "revision": 1}, "attribute_values"),
        (BETA, "PUT", {"enabled": "on", "revision": 1}, "enabled"),
        (BETA, "PUT", {"revision": True}, "revision"),
        (FLAG + "attributes/", "POST", {"name": "n", "type": "number", "minimum": 1.5}, "minimum"),
        (
            FLAG + "attributes/",
            "POST",
            {"name": "n", "type": "number", "maximum": 2**64},
            "maximum",
        ),
        (FLAG + "attributes/", "POST", {"name": "n", "type": "string", "enum": "a,b"}, "enum"),
        (FLAG + "attributes/", "POST", {"name": "n", "type": "string", "pattern": 1}, "pattern"),
        (FLAG + "attributes/", "POST", {"name": "n"}, "type"),
        (FLAG + "archive/", "POST", {"really": True}, "really"),
        ("apps/checkout/environments/beta/versions/", "POST", {"message": 7}, "message"),
    ],
)
def test_wrong_json_types_are_400_at_the_field(
    editor_api, flag, unchanged, path, method, body, field
):
    with unchanged():
        response = editor_api.request(method, path, body)
    refused(response, 400, "invalid", field)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"key": "a",}',
        b"\xff\xfe\x00",
        b'{"x": NaN}',
        b'{"x": 1e400}',
        b"[" * 100_000,
    ],
)
def test_invalid_json_is_400_parse_error(editor_api, flag, unchanged, raw):
    with unchanged():
        response = editor_api.post(FLAGS, raw=raw)
    refused(response, 400, "parse_error")


@pytest.mark.parametrize("raw", [b"[]", b'"flag"', b"42", b"null"])
def test_body_that_is_not_an_object_is_400(editor_api, flag, unchanged, raw):
    with unchanged():
        response = editor_api.post(FLAGS, raw=raw)
    refused(response, 400, "invalid")


def test_body_too_large_is_413(editor_api, flag, unchanged):
    body = json.dumps({"key": "big", "name": "Big", "description": "x" * MAX_BODY_BYTES})
    with unchanged():
        response = editor_api.post(FLAGS, raw=body)
    refused(response, 413, "payload_too_large")


def test_body_over_djangos_own_limit_is_413_too(editor_api, flag, unchanged, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    with unchanged():
        response = editor_api.post(FLAGS, raw=json.dumps({"description": "x" * 2000}))
    refused(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_non_json_content_type_is_415(editor_api, flag, unchanged, content_type):
    with unchanged():
        response = editor_api.post(
            FLAGS, raw=json.dumps({"key": "ok", "name": "Ok"}), content_type=content_type
        )
    refused(response, 415, "unsupported_media_type")


def test_json_with_charset_and_vendor_types_are_accepted(editor_api, envs):
    first = editor_api.post(
        FLAGS,
        raw=json.dumps({"key": "one", "name": "One"}),
        content_type="application/json; charset=utf-8",
    )
    second = editor_api.post(
        FLAGS,
        raw=json.dumps({"key": "two", "name": "Two"}),
        content_type="application/merge-patch+json",
    )
    assert (first.status_code, second.status_code) == (201, 201)


def test_empty_body_on_a_write_without_fields_is_fine(editor_api, flag):
    assert editor_api.post(FLAG + "archive/", raw=b"", content_type="").status_code == 200


@pytest.mark.parametrize(
    "query",
    [{"page": "0"}, {"page": "x"}, {"page_size": "1000"}, {"sort": "evil"}, {"archived": "maybe"}],
)
def test_bad_query_parameters_are_400(viewer_api, flag, query):
    refused(viewer_api.get(FLAGS, query=query), 400, "invalid", next(iter(query)))


def test_page_past_the_end_is_404(viewer_api, flag):
    refused(viewer_api.get(FLAGS, query={"page": "9"}), 404, "not_found")


@pytest.mark.parametrize(
    "path",
    [
        "apps/nope/flags/",
        "apps/checkout/flags/nope/",
        "apps/checkout/flags/allow-bitcoin-at-checkout/environments/nope/",
        "apps/checkout/flags/allow-bitcoin-at-checkout/attributes/nope/",
        "apps/checkout/environments/beta/versions/99/",
        "apps/checkout/environments/beta/versions/1/diff/?against=99",
    ],
)
def test_missing_things_are_404_naming_them(admin_api, flag, path):
    method = "PATCH" if "attributes" in path else "GET"
    path, _, query = path.partition("?")
    response = admin_api.request(
        method,
        path,
        {} if method == "PATCH" else None,
        query=dict([query.split("=")]) if query else None,
    )
    error = refused(response, 404, "not_found")
    assert "nope" in error["message"] or "99" in error["message"]


def test_put_cannot_turn_a_flag_on_use_toggle(editor_api, flag, unchanged):
    with unchanged():
        response = editor_api.put(BETA, {"enabled": True, "revision": _beta_revision(flag)})
    error = refused(response, 422, "validation_failed", "enabled", "use_toggle")
    assert "toggle/" in error["message"]


def test_a_bug_is_a_500_in_json_and_still_reported(flag, editor, monkeypatch):
    from django.test import Client

    from flagdash.flags import api
    from tests.api.conftest import Api, token_for

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "flag_detail_data", broken)
    client = Api(Client(), token_for(editor))
    with pytest.raises(RuntimeError):  # the test client re-raises what Django would report
        client.get(FLAG)
    quiet = Api(Client(raise_request_exception=False), client.token)
    refused(quiet.get(FLAG), 500, "server_error")
