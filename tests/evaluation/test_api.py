"""OFREP over HTTP: answers, errors, auth, ETags, rollouts, and no SQL per evaluation."""

from __future__ import annotations

import io
import json

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from flagdash.backends.local import SERVED_TOKEN_CACHE_KEY, sticky_bucket
from flagdash.deployments import engine
from flagdash.deployments import services as deployment_services
from flagdash.evaluation import services as key_services
from flagdash.evaluation.evaluate import evaluate
from flagdash.evaluation.models import ApiKey
from flagdash.evaluation.snapshot import holder
from flagdash.flags import services as flag_services
from tests.evaluation.conftest import deploy, new_key, post, set_values
from tests.factories import make_strategy

pytestmark = pytest.mark.django_db

ONE = "/ofrep/v1/evaluate/flags/"
ALL = "/ofrep/v1/evaluate/flags"


def test_boolean_flag_is_served_statically(api, beta_key):
    response = post(api, ONE + "old-flow", {"context": {"targetingKey": "u1"}}, beta_key)
    assert response.status_code == 200
    assert response.json() == {
        "key": "old-flow",
        "value": False,
        "reason": "DISABLED",
        "variant": "off",
        "metadata": {"flagdash.version": 2},
    }


def test_targeting_rule_decides_and_otherwise_default(api, beta_key):
    staff = post(api, ONE + "new-checkout", {"context": {"email": "ann@example.com"}}, beta_key)
    other = post(api, ONE + "new-checkout", {"context": {"email": "bob@shop.test"}}, beta_key)
    assert (staff.json()["value"], staff.json()["reason"], staff.json()["variant"]) == (
        False,
        "TARGETING_MATCH",
        "off",
    )
    assert (other.json()["value"], other.json()["reason"]) == (True, "DEFAULT")


def test_float_flag_answers_a_json_float(api, beta_key):
    response = post(api, ONE + "discount-rate", {"context": {}}, beta_key)
    assert b'"value":1.0' in response.content
    assert response.json()["reason"] == "STATIC"


def test_split_needs_a_targeting_key(api, beta_key):
    response = post(api, ONE + "button-color", {"context": {"country": "US"}}, beta_key)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "TARGETING_KEY_MISSING"


def test_split_is_sticky_per_targeting_key(api, beta_key):
    seen = {}
    for user in ("u1", "u2", "u3", "u4", "u5", "u6"):
        ctx = {"context": {"targetingKey": user, "country": "US"}}
        first = post(api, ONE + "button-color", ctx, beta_key).json()
        again = post(api, ONE + "button-color", ctx, beta_key).json()
        assert first == again
        assert first["reason"] == "SPLIT"
        seen[user] = first["variant"]
    assert set(seen.values()) <= {"blue", "green"}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, {"context": {}}),
        ({"Authorization": "Bearer fdk_" + "x" * 40}, {"context": {}}),
        ({"Authorization": "Basic abc"}, {"context": {}}),
        ({"X-API-Key": "nope"}, {"context": {}}),
    ],
)
def test_missing_or_wrong_key_is_401(api, beta_key, headers, body):
    response = post(api, ONE + "new-checkout", body, **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "value" not in response.json()


def test_x_api_key_header_works(api, beta_key):
    response = post(api, ONE + "new-checkout", {}, **{"X-API-Key": beta_key})
    assert response.status_code == 200


def test_key_of_another_environment_sees_nothing_of_this_one(api, served, production):
    production_key = new_key(production)
    response = post(api, ONE + "new-checkout", {"context": {}}, production_key)
    assert response.status_code == 404
    assert response.json()["errorCode"] == "FLAG_NOT_FOUND"
    assert post(api, ALL, {}, production_key).json()["flags"] == []


def test_revoked_key_stops_working(api, beta_key):
    assert post(api, ONE + "new-checkout", {}, beta_key).status_code == 200
    key = ApiKey.objects.get(key_hash=key_services.key_hash(beta_key))
    key_services.api_key_revoke(actor=None, key=key)
    holder.reset()
    assert post(api, ONE + "new-checkout", {}, beta_key).status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("not json", 400, "PARSE_ERROR"),
        ("[1, 2]", 400, "PARSE_ERROR"),
        ('{"context": "me"}', 400, "INVALID_CONTEXT"),
        ('{"context": {"targetingKey": 42}}', 400, "INVALID_CONTEXT"),
        (b"\xff\xfe", 400, "PARSE_ERROR"),
        ("[" * 100_000, 413, "INVALID_CONTEXT"),
        ('{"context": {"a": "' + "x" * 70_000 + '"}}', 413, "INVALID_CONTEXT"),
    ],
)
def test_bad_input_gets_the_spec_error_shape(api, beta_key, body, status, code):
    for path in (ONE + "new-checkout", ALL):
        response = post(api, path, body, beta_key)
        assert response.status_code == status
        data = response.json()
        assert data["errorCode"] == code
        assert data["errorDetails"]
        if path != ALL:
            assert data["key"] == "new-checkout"


def test_deeply_nested_context_is_refused_not_a_500(api, beta_key):
    body = '{"context": {"a": ' + "[" * 20_000 + "]" * 20_000 + "}}"
    response = post(api, ONE + "new-checkout", body, beta_key)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "PARSE_ERROR"


def test_unknown_flag_is_404(api, beta_key):
    response = post(api, ONE + "no-such-flag", {}, beta_key)
    assert response.status_code == 404
    assert response.json() == {
        "key": "no-such-flag",
        "errorCode": "FLAG_NOT_FOUND",
        "errorDetails": "No flag “no-such-flag” is deployed in checkout/beta.",
    }


def test_get_is_405_in_json(api, beta_key):
    response = api.get(ONE + "new-checkout", headers={"Authorization": f"Bearer {beta_key}"})
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["errorCode"] == "GENERAL"


def test_bulk_answers_every_flag_with_an_etag_and_304(api, beta_key):
    ctx = {"context": {"targetingKey": "u1", "country": "US"}}
    response = post(api, ALL, ctx, beta_key)
    assert response.status_code == 200
    flags = {f["key"]: f for f in response.json()["flags"]}
    assert set(flags) == {
        "banner",
        "button-color",
        "discount-rate",
        "max-items",
        "new-checkout",
        "old-flow",
    }
    assert flags["max-items"]["value"] == 250
    assert flags["banner"]["value"] == {"text": "Sale", "percent": 20}
    etag = response["ETag"]
    again = post(api, ALL, ctx, beta_key, **{"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    other = post(api, ALL, {"context": {"targetingKey": "u1"}}, beta_key, **{"If-None-Match": etag})
    assert other.status_code in (200, 304)
    if other.status_code == 200:
        assert other["ETag"] != etag


def test_bulk_failure_items_carry_their_error(api, beta_key):
    response = post(api, ALL, {"context": {"country": "US"}}, beta_key)
    flags = {f["key"]: f for f in response.json()["flags"]}
    assert flags["button-color"]["errorCode"] == "TARGETING_KEY_MISSING"
    assert flags["new-checkout"]["value"] is True


def test_etag_changes_after_a_deployment(api, served, beta, beta_key):
    first = post(api, ALL, {}, beta_key)["ETag"]
    set_values(served["off"], beta, enabled=True)
    deploy(beta)
    response = post(api, ALL, {}, beta_key, **{"If-None-Match": first})
    assert response.status_code == 200
    assert response["ETag"] != first


def test_unsaved_edits_are_not_served(api, served, beta, beta_key):
    set_values(served["off"], beta, enabled=True)  # working state only: no version, no deployment
    holder.reset()
    assert post(api, ONE + "old-flow", {}, beta_key).json()["value"] is False


def test_no_sql_per_evaluation_after_warm_up(api, beta_key, django_assert_num_queries, settings):
    settings.OFREP_REFRESH_SECONDS = 1
    post(api, ONE + "new-checkout", {}, beta_key)  # loads the snapshot
    with django_assert_num_queries(0):
        for _ in range(20):
            assert post(api, ONE + "new-checkout", {}, beta_key).status_code == 200
            assert post(api, ALL, {"context": {"targetingKey": "u"}}, beta_key).status_code == 200
            assert post(api, ONE + "missing", {}, beta_key).status_code == 404


def test_a_changed_cache_token_reloads_within_the_refresh_interval(api, served, beta, beta_key):
    assert post(api, ONE + "old-flow", {}, beta_key).json()["value"] is False
    set_values(served["off"], beta, enabled=True)
    # Deploy without resetting the holder: only the cache token tells this process.
    v = flag_services.config_version_create(actor=None, environment=beta, message="on")
    d = deployment_services.deployment_create(
        actor=None,
        environment=beta,
        version=v,
        strategy=deployment_services.strategy_by_name("flagdash.Immediate"),
    )
    with engine.without_nudges():
        engine.deployment_advance(d.pk)
    assert post(api, ONE + "old-flow", {}, beta_key).json()["value"] is False  # token unchanged
    cache.set(SERVED_TOKEN_CACHE_KEY, "changed")  # what the backend does after its commit
    assert post(api, ONE + "old-flow", {}, beta_key).json()["value"] is True


def test_gradual_rollout_serves_the_candidate_to_its_share(api, served, beta, beta_key):
    strategy = make_strategy("Quarter steps", duration_minutes=4, growth_factor=25)
    set_values(served["off"], beta, enabled=True)
    deploy(beta, strategy=strategy.name)  # first step: 25 % see the new version
    answers = {}
    for i in range(400):
        user = f"user-{i}"
        body = post(api, ONE + "old-flow", {"context": {"targetingKey": user}}, beta_key).json()
        answers[user] = body["value"]
        assert body["value"] is (sticky_bucket(user, "old-flow") < 25)
    share = sum(answers.values()) / len(answers)
    assert 0.18 < share < 0.32
    no_key = post(api, ONE + "old-flow", {"context": {}}, beta_key).json()
    assert no_key["value"] is False  # no targeting key: the stable version


def test_evaluation_does_not_touch_the_database_even_for_a_fresh_context(beta_key, api):
    post(api, ONE + "new-checkout", {}, beta_key)
    snapshot = holder.get()
    environment = next(iter(e for e in snapshot.environments.values() if e.stable))
    with CaptureQueriesContext(connection) as queries:
        for i in range(100):
            evaluate(environment, "button-color", {"country": "US"}, f"k{i}")
    assert len(queries) == 0


def test_response_is_json_with_no_cookie(api, beta_key):
    response = post(api, ONE + "new-checkout", {}, beta_key)
    assert response["Content-Type"] == "application/json"
    assert not response.cookies
    assert json.loads(response.content)["key"] == "new-checkout"


# --- review against the specification: odd inputs, ETags, keys ---------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ('{"context": {"targetingKey": "\\ud800", "country": "US"}}', "PARSE_ERROR"),
        ('{"context": {"country": "US", "name": "x\\udfff"}}', "PARSE_ERROR"),
        ('{"context": {"\\udc00": 1}}', "PARSE_ERROR"),
        ('{"context": {"age": NaN}}', "PARSE_ERROR"),
        ('{"context": {"age": -Infinity}}', "PARSE_ERROR"),
        (b'{"context": {"targetingKey": "\xed\xa0\x80", "country": "US"}}', "PARSE_ERROR"),
        ('{"context": {"targetingKey": "u1", "country": "US"}}'.encode("utf-16"), "PARSE_ERROR"),
    ],
)
def test_text_that_is_not_unicode_or_numbers_that_are_not_json_are_parse_errors(
    api, beta_key, body, code
):
    for path in (ONE + "button-color", ALL):
        response = post(api, path, body, beta_key)
        assert response.status_code == 400, response.content
        assert response.json()["errorCode"] == code
        assert response.json()["errorDetails"]


@pytest.mark.parametrize(
    "body",
    [
        '{"context": {"targetingKey": "\\ud83d\\ude80", "country": "US"}}',  # a real pair: 🚀
        '{"context": {"targetingKey": "a\\u0000b", "country": "US"}}',
        '{"context": {"targetingKey": "u1", "country": "US", "path": "C:\\\\ud800"}}',
        '{"context": {"targetingKey": "u1", "country": "US", "age": 1e400}}',
        '{"context": {"targetingKey": "u1", "country": "US", "age": 1' + "0" * 4000 + "}}",
        '{"context": {"targetingKey": "ключ-🙂", "country": "US", "名前": "テスト"}}',
    ],
)
def test_odd_but_valid_contexts_are_evaluated(api, beta_key, body):
    for path in (ONE + "button-color", ALL):
        response = post(api, path, body, beta_key)
        assert response.status_code == 200, response.content
    assert post(api, ONE + "button-color", body, beta_key).json()["reason"] == "SPLIT"


@pytest.mark.parametrize(
    ("path", "status", "code", "key"),
    [
        (ONE + "a/b", 404, "FLAG_NOT_FOUND", "a/b"),
        (ONE + "new-checkout/", 404, "FLAG_NOT_FOUND", "new-checkout/"),
        (ONE + "Not%20A%20Key", 404, "FLAG_NOT_FOUND", "Not A Key"),
        (ONE + "%F0%9F%9A%80", 404, "FLAG_NOT_FOUND", "🚀"),
        (ONE + "x" * 2000, 404, "FLAG_NOT_FOUND", "x" * 2000),
        (ONE + "a%00b", 400, "GENERAL", None),
        (ONE, 404, "GENERAL", None),
        ("/ofrep/v1/evaluate/", 404, "GENERAL", None),
        ("/ofrep/v2/evaluate/flags", 404, "GENERAL", None),
    ],
)
def test_every_ofrep_address_answers_json(api, beta_key, path, status, code, key):
    response = post(api, path, {}, beta_key)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert data["errorCode"] == code
    assert data["errorDetails"]
    assert data.get("key") == key


def test_a_flag_address_still_needs_the_key(api, beta_key):
    response = post(api, ONE + "a/b", {})
    assert response.status_code == 401
    assert response.json()["errorCode"] == "GENERAL"


def _bulk_etag(api, key, context):
    response = post(api, ALL, {"context": context}, key)
    assert response.status_code == 200
    return response["ETag"]


def test_etag_changes_with_the_rollout_share_even_when_the_answer_does_not(
    api, served, beta, beta_key
):
    strategy = make_strategy("Quarter steps", duration_minutes=4, growth_factor=25)
    set_values(served["off"], beta, enabled=True)
    deployment = deploy(beta, strategy=strategy.name)  # 25 % see the new version
    no_key = {}  # without a targeting key the stable version answers, at any share
    first_body = post(api, ALL, {"context": no_key}, beta_key).content
    first = _bulk_etag(api, beta_key, no_key)
    deployment.refresh_from_db()
    with engine.without_nudges():
        for _ in range(10):  # the worker's polls until the next step
            engine.deployment_advance(deployment.pk, now=deployment.next_step_at)
            deployment.refresh_from_db()
            if deployment.percentage != 25:
                break
    holder.reset()
    assert deployment.percentage == 50
    assert post(api, ALL, {"context": no_key}, beta_key).content == first_body
    second = _bulk_etag(api, beta_key, no_key)
    assert second != first
    response = post(api, ALL, {"context": no_key}, beta_key, **{"If-None-Match": first})
    assert response.status_code == 200


def test_etag_does_not_change_when_nothing_served_changes(api, served, beta, production, beta_key):
    context = {"targetingKey": "u1", "country": "US"}
    first = _bulk_etag(api, beta_key, context)
    assert _bulk_etag(api, beta_key, context) == first
    holder.reset()  # a reload, as every process does every 30 s
    assert _bulk_etag(api, beta_key, context) == first
    new_key(beta, "another app")  # keys change, not what is served
    assert _bulk_etag(api, beta_key, context) == first
    set_values(served["off"], production, enabled=True)
    deploy(production)  # another environment
    assert _bulk_etag(api, beta_key, context) == first
    set_values(served["off"], beta, enabled=True)  # saved, not deployed
    holder.reset()
    assert _bulk_etag(api, beta_key, context) == first
    response = post(api, ALL, {"context": context}, beta_key, **{"If-None-Match": f"W/{first}"})
    assert response.status_code == 304


def test_etag_changes_when_the_rules_change(api, served, beta, beta_key):
    context = {"targetingKey": "u1", "country": "FR"}
    first = _bulk_etag(api, beta_key, context)
    set_values(
        served["string"],
        beta,
        rules=[
            {
                "conditions": [{"attribute": "country", "operator": "in", "value": ["US"]}],
                "serve": {"variant": "green"},
            }
        ],
    )
    deploy(beta)
    assert _bulk_etag(api, beta_key, context) != first


def test_a_revoked_key_is_refused_within_the_refresh_interval(
    api, beta_key, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.OFREP_REFRESH_SECONDS = 1
    clock = [1000.0]
    monkeypatch.setattr("flagdash.evaluation.snapshot.time.monotonic", lambda: clock[0])
    holder.reset()
    assert post(api, ONE + "new-checkout", {}, beta_key).status_code == 200
    key = ApiKey.objects.get(key_hash=key_services.key_hash(beta_key))
    with django_capture_on_commit_callbacks(execute=True):  # the cache token, after commit
        key_services.api_key_revoke(actor=None, key=key)
    clock[0] += 0.5  # within the interval this process may still answer from its snapshot
    post(api, ONE + "new-checkout", {}, beta_key)
    clock[0] += 0.6
    assert post(api, ONE + "new-checkout", {}, beta_key).status_code == 401
    assert post(api, ALL, {}, beta_key).status_code == 401
    assert (
        api.get(
            "/ofrep/v1/flagd/flags.json", headers={"Authorization": f"Bearer {beta_key}"}
        ).status_code
        == 401
    )


def test_no_sql_for_refusals_either(api, beta_key, django_assert_num_queries, settings):
    settings.OFREP_REFRESH_SECONDS = 1
    post(api, ONE + "new-checkout", {}, beta_key)  # loads the snapshot
    with django_assert_num_queries(0):
        assert post(api, ONE + "new-checkout", {}, "fdk_" + "x" * 40).status_code == 401
        assert post(api, ONE + "new-checkout", "nope", beta_key).status_code == 400
        assert post(api, ONE + "a/b", {}, beta_key).status_code == 404
        response = api.get(
            "/ofrep/v1/flagd/flags.json", headers={"Authorization": f"Bearer {beta_key}"}
        )
        assert response.status_code == 200


# --- hardening: bugs answer OFREP's 500, bad input never reaches it ---------------------------

EXPORT = "/ofrep/v1/flagd/flags.json"


@pytest.mark.parametrize(
    ("method", "path", "broken"),
    [
        ("post", ONE + "new-checkout", "flagdash.evaluation.api.evaluate"),
        ("post", ALL, "flagdash.evaluation.api.evaluate_all"),
        ("get", EXPORT, "flagdash.evaluation.flagd.export"),
        ("post", ONE + "new-checkout", "flagdash.evaluation.api.current"),
    ],
)
def test_a_bug_answers_ofrep_json_500_without_details_and_is_logged(
    beta_key, monkeypatch, caplog, method, path, broken
):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail at /srv/flagdash/settings.py")

    monkeypatch.setattr(broken, explode)
    quiet = Client(raise_request_exception=False)
    headers = {"Authorization": f"Bearer {beta_key}"}
    with caplog.at_level("ERROR", logger="flagdash.evaluation.api"):
        if method == "get":
            response = quiet.get(path, headers=headers)
        else:
            response = quiet.post(path, "{}", content_type="application/json", headers=headers)
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert data["errorCode"] == "GENERAL"
    assert "went wrong on our side" in data["errorDetails"]
    assert data.get("key") == ("new-checkout" if path.startswith(ONE) else None)
    body = response.content.decode()
    assert "secret" not in body and "Traceback" not in body and "RuntimeError" not in body
    logged = [r for r in caplog.records if r.name == "flagdash.evaluation.api"]
    assert logged and logged[0].exc_info and logged[0].exc_info[0] is RuntimeError
    assert "Traceback" in caplog.text and "secret internal detail" in caplog.text


@pytest.fixture
def edgy(served, beta, beta_key):
    """max-items serves "few" to early signups, the very old and new app versions."""
    set_values(
        served["integer"],
        beta,
        rules=[
            {
                "match": "any",
                "conditions": [
                    {"attribute": "signup", "operator": "before", "value": "2025-06-01"},
                    {"attribute": "age", "operator": "gt", "value": 120},
                    {"attribute": "appVersion", "operator": "semver_gte", "value": "2.0.0"},
                ],
                "serve": {"variant": "few"},
            }
        ],
    )
    deploy(beta)
    return beta_key


ONE_AND_400_ZEROS = "1" + "0" * 400  # Python reads it as an int too large for a float


@pytest.mark.parametrize(
    ("context", "variant"),
    [
        ('{"signup": ' + ONE_AND_400_ZEROS + "}", "many"),  # after every date
        ('{"signup": -' + ONE_AND_400_ZEROS + "}", "few"),
        ('{"signup": -1000000000000000000000000000000}', "few"),
        ('{"signup": 1e400}', "many"),  # infinity: not a number, no match
        ('{"signup": -1e400}', "many"),
        ('{"signup": "9999-12-31T23:59:59-23:00"}', "many"),  # year 10000 in UTC
        ('{"signup": "0001-01-01T00:00:00+14:00"}', "few"),  # year 0 in UTC
        ('{"signup": "0000-01-01"}', "many"),
        ('{"age": ' + ONE_AND_400_ZEROS + "}", "few"),
        ('{"age": -' + ONE_AND_400_ZEROS + "}", "many"),
        ('{"appVersion": "' + "9" * 250 + '.0.0"}', "few"),
        ('{"appVersion": "1.' + "9" * 5000 + '.0"}', "many"),
        ('{"appVersion": "2.0.0-' + "a." * 100 + 'a"}', "many"),
        ('{"appVersion": ' + ONE_AND_400_ZEROS + "}", "many"),
    ],
    ids=lambda v: v if len(v) < 30 else f"{v[:20]}…",
)
def test_huge_numbers_and_impossible_dates_in_a_context_are_evaluated(edgy, api, context, variant):
    body = '{"context": ' + context + "}"
    single = post(api, ONE + "max-items", body, edgy)
    assert single.status_code == 200, single.content
    assert single.json()["variant"] == variant
    assert single.json()["reason"] == ("TARGETING_MATCH" if variant == "few" else "DEFAULT")
    bulk = post(api, ALL, body, edgy)
    assert bulk.status_code == 200
    assert {f["key"]: f.get("variant") for f in bulk.json()["flags"]}["max-items"] == variant


# --- If-None-Match ---------------------------------------------------------------------------


def test_if_none_match_star_gets_the_body(api, beta_key):
    context = {"context": {"targetingKey": "u1", "country": "US"}}
    response = post(api, ALL, context, beta_key, **{"If-None-Match": "*"})
    assert response.status_code == 200
    assert response.json()["flags"]
    assert response["ETag"]


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("{etag}", 304),
        ("W/{etag}", 304),
        ('"other", {etag}', 304),
        ('W/"other",W/{etag}', 304),
        ('"a", "b"', 200),
        ('"other"', 200),
        ("{bare}", 200),  # not an entity-tag: no quotes
        ("*, {etag}", 304),  # "*" in a list is no tag, but the list names this one
        ('"{bare}x"', 200),
        ("", 200),
    ],
)
def test_if_none_match_compares_weakly_with_each_tag_of_a_list(api, beta_key, header, status):
    context = {"context": {"targetingKey": "u1", "country": "US"}}
    etag = post(api, ALL, context, beta_key)["ETag"]
    again = post(api, ALL, context, beta_key)
    assert again["ETag"] == etag  # stable for the same answer
    value = header.format(etag=etag, bare=etag.strip('"'))
    response = post(api, ALL, context, beta_key, **{"If-None-Match": value})
    assert response.status_code == status
    assert response["ETag"] == etag
    if status == 304:
        assert response.content == b""
    else:
        assert response.content == again.content


# --- request bodies: size with or without Content-Length, content type -----------------------


def chunked(api, path, body: bytes, key: str, content_type: str = "application/json"):
    """A body sent with Transfer-Encoding: chunked, as gunicorn hands it over: no
    Content-Length, and wsgi.input gives the decoded bytes."""
    return api.generic(
        "POST",
        path,
        headers={"Authorization": f"Bearer {key}", "Transfer-Encoding": "chunked"},
        **{"CONTENT_TYPE": content_type, "wsgi.input": io.BytesIO(body)},
    )


def test_a_chunked_body_is_read(api, beta_key):
    body = json.dumps({"context": {"email": "ann@example.com"}}).encode()
    response = chunked(api, ONE + "new-checkout", body, beta_key)
    assert response.status_code == 200
    assert (response.json()["reason"], response.json()["variant"]) == ("TARGETING_MATCH", "off")
    bulk = chunked(api, ALL, body, beta_key)
    assert {f["key"]: f for f in bulk.json()["flags"]}["new-checkout"]["variant"] == "off"


def test_a_chunked_body_over_64_kib_is_413_and_read_no_further(api, beta_key):
    class Endless(io.RawIOBase):
        served = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            n = min(len(buffer), 4096)
            buffer[:n] = b" " * n
            self.served += n
            return n

    stream = Endless()
    response = api.generic(
        "POST",
        ONE + "new-checkout",
        headers={"Authorization": f"Bearer {beta_key}", "Transfer-Encoding": "chunked"},
        **{"CONTENT_TYPE": "application/json", "wsgi.input": stream},
    )
    assert response.status_code == 413
    assert response.json()["errorCode"] == "INVALID_CONTEXT"
    assert stream.served <= 64 * 1024 + 4096
    body = b'{"context": {"a": "' + b"x" * 70_000 + b'"}}'
    assert chunked(api, ALL, body, beta_key).status_code == 413


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        ("application/vnd.ofrep+json", 200),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
    ],
)
def test_a_body_must_be_declared_json(api, beta_key, content_type, status):
    body = json.dumps({"context": {"email": "ann@example.com"}})
    for path in (ONE + "new-checkout", ALL):
        response = api.post(
            path, body, content_type=content_type, headers={"Authorization": f"Bearer {beta_key}"}
        )
        assert response.status_code == status, (path, response.content)
        if status == 415:
            assert response.json()["errorCode"] == "PARSE_ERROR"
            assert "Content-Type: application/json" in response.json()["errorDetails"]


def test_a_body_without_content_type_is_read_as_json(api, beta_key):
    body = json.dumps({"context": {"email": "ann@example.com"}}).encode()
    response = api.generic(
        "POST",
        ONE + "new-checkout",
        body,
        content_type="",
        headers={"Authorization": f"Bearer {beta_key}"},
    )
    assert response.status_code == 200
    assert response.json()["variant"] == "off"


@pytest.mark.parametrize(
    "targeting_key",
    ["true", "false", "0", "1.5", "[]", '["u1"]', '{"id": "u1"}'],
)
def test_a_targeting_key_that_is_not_text_is_invalid_context(api, beta_key, targeting_key):
    body = '{"context": {"targetingKey": ' + targeting_key + ', "country": "US"}}'
    for path in (ONE + "button-color", ALL):
        response = post(api, path, body, beta_key)
        assert response.status_code == 400
        assert response.json()["errorCode"] == "INVALID_CONTEXT"


@pytest.mark.parametrize(
    "body",
    [
        '{"context": []}',
        '{"context": 1}',
        '{"context": true}',
        '{"context": "US"}',
        '{"context": [{"targetingKey": "u1"}]}',
    ],
)
def test_a_context_that_is_not_an_object_is_invalid_context(api, beta_key, body):
    for path in (ONE + "new-checkout", ALL):
        response = post(api, path, body, beta_key)
        assert response.status_code == 400
        assert response.json()["errorCode"] == "INVALID_CONTEXT"


@pytest.mark.parametrize(
    ("path", "status", "code", "key"),
    [
        (ONE + "a%0Ab", 404, "FLAG_NOT_FOUND", "a\nb"),
        (ONE + "new-checkout%0A", 404, "FLAG_NOT_FOUND", "new-checkout\n"),
        (ONE + "%0D%0A", 404, "FLAG_NOT_FOUND", "\r\n"),
        (ONE + "a%2Fb", 404, "FLAG_NOT_FOUND", "a/b"),
        (ONE + "a%09b", 404, "FLAG_NOT_FOUND", "a\tb"),
        (ONE + "%ED%A0%80", 404, "FLAG_NOT_FOUND", "%ED%A0%80"),  # not UTF-8: kept escaped
        ("/ofrep/v1/x%0Ay", 404, "GENERAL", None),
        ("/ofrep/%0A", 404, "GENERAL", None),
    ],
)
def test_a_flag_key_or_address_with_a_line_break_still_answers_json(
    api, beta_key, path, status, code, key
):
    response = post(api, path, {}, beta_key)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["errorCode"] == code
    assert response.json().get("key") == key
