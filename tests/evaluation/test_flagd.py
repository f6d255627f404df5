"""The flagd export: valid for flagd's schema, true to what flagdash serves, key-protected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext

from flagdash.evaluation.rules import MAX_RULES, compile_rules, validate_rules
from tests.evaluation.conftest import deploy, new_key, post, set_values
from tests.factories import make_flag

pytestmark = pytest.mark.django_db
URL = "/ofrep/v1/flagd/flags.json"
ONE = "/ofrep/v1/evaluate/flags/"
ALL = "/ofrep/v1/evaluate/flags"
SCHEMA = json.loads((Path(__file__).parent / "data" / "flagd" / "flags.schema.json").read_text())


def export(api, key):
    response = api.get(URL, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    return response.json()


def validate(document):
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    for key, flag in document["flags"].items():
        assert flag["defaultVariant"] in flag["variants"], key


def test_export_is_valid_flagd(api, served, beta, beta_key):
    set_values(
        served["integer"],
        beta,
        rules=[
            {
                "match": "any",
                "conditions": [
                    {"attribute": "appVersion", "operator": "semver_gte", "value": "v2.4.0"},
                    {"attribute": "plan", "operator": "not_in", "value": ["free"]},
                    {"attribute": "$now", "operator": "before", "value": "2030-01-01"},
                    {"attribute": "signup", "operator": "after", "value": "2025-06-01"},
                    {"attribute": "age", "operator": "gte", "value": 18},
                    {"attribute": "email", "operator": "contains", "value": "+test"},
                ],
                "serve": {
                    "split": [
                        {"variant": "few", "weight": 33.5},
                        {"variant": "many", "weight": 66.5},
                    ]
                },
            }
        ],
    )
    deploy(beta)
    document = export(api, beta_key)
    validate(document)
    assert document["metadata"] == {"flagSetId": "checkout/beta", "version": "3"}
    flags = document["flags"]
    assert flags["new-checkout"]["variants"] == {"on": True, "off": False}
    assert flags["new-checkout"]["targeting"] == {
        "if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "off", None]
    }
    # Disabled: flagd serves the off value, as flagdash does (flagd's DISABLED would not).
    assert flags["old-flow"]["state"] == "ENABLED"
    assert flags["old-flow"]["defaultVariant"] == "off"
    assert "targeting" not in flags["old-flow"]
    assert flags["old-flow"]["metadata"]["flagdash.disabled"] is True
    assert flags["discount-rate"]["variants"] == {"none": 0.0, "some": 1.0}
    split = flags["max-items"]["targeting"]["if"][1]["fractional"]
    assert split == [["few", 3350], ["many", 6650]]
    semver = flags["max-items"]["targeting"]["if"][0]["or"][0]
    assert semver == {
        "and": [
            {"starts_with": [{"var": "appVersion"}, ""]},
            {"sem_ver": [{"var": "appVersion"}, ">=", "2.4.0"]},
        ]
    }
    assert flags["max-items"]["targeting"]["if"][0]["or"][2] == {
        "<": [{"var": "$flagd.timestamp"}, 1893456000]
    }


def test_a_rule_flagd_cannot_express_is_left_out_and_said(api, served, beta, beta_key):
    set_values(
        served["bool"],
        beta,
        rules=[
            {
                "conditions": [{"attribute": "email", "operator": "matches", "value": "^a.*"}],
                "serve": {"variant": "off"},
            }
        ],
    )
    deploy(beta)
    flag = export(api, beta_key)["flags"]["new-checkout"]
    assert "targeting" not in flag
    assert "rule 1" in flag["metadata"]["flagdash.unsupported"]
    validate(export(api, beta_key))


def test_export_needs_the_environments_key(api, served, production):
    assert api.get(URL).status_code == 401
    document = export(api, new_key(production))
    assert document["flags"] == {}
    validate(document)


def test_the_schema_refuses_what_flagd_refuses():
    bad = {"flags": {"x": {"state": "ON", "variants": {"a": 1}, "defaultVariant": "a"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(bad)
    mixed = {"flags": {"x": {"state": "ENABLED", "variants": {"a": 1, "b": "two"}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(mixed)
    for targeting in (
        {"fractional": [["a", 100]]},  # flagd needs two weighted variants
        {"fractional": [["a", 50.5], ["b", 49.5]]},  # flagd's evaluators take whole weights
        {"substr": [{"var": "x"}, 0, 1, 2]},
        {"starts_with": [{"var": "x"}, "a", "b"]},
    ):
        flag = {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "targeting": targeting}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(SCHEMA).validate({"flags": {"x": flag}})


# --- every rule validation accepts evaluates and exports -----------------------------------------

EDGE_VALUES: dict[str, list[Any]] = {
    "equals": ["pro", "", 0, 1, -1.5, True, False, 10**300, -(10**300), "ключ 🙂", "x" * 1024],
    "not_equals": ["pro", 0, 1, True, 1e-300, "\\", '"quoted"'],
    "in": [["US", "CA"], [True, 1, "1", 0, False], list(range(500)), [0.1, -0.0, 10**300]],
    "not_in": [["US"], [True], [1, "1"], ["🙂", "\u202e"]],
    "starts_with": ["a", "🙂", "x" * 1024, "%s", "\\"],
    "ends_with": ["@example.com", "\u202e", "."],
    "contains": ["beta", " ", "\t", "{{"],
    "matches": ["^[A-Z]{2}-\\d+$", "(a|b)*c", "\\p{L}+"],
    "lt": [0, -1e308, 1e308, 10**300, -(10**400), 0.1],
    "lte": [0, 1.5, -(10**30)],
    "gt": [120, 10**400, -0.0],
    "gte": [18, 1e-300],
    "semver_eq": ["0.0.0", "v1.2.3", "1.2.3-rc.1+build.5"],
    "semver_lt": ["9" * 200 + ".0.0", "1.0.0-alpha"],
    "semver_lte": ["1.2.3-0"],
    "semver_gt": ["0.0.1"],
    "semver_gte": ["2.4.0"],
    "before": [
        "0001-01-01",
        "9999-12-31",
        "9999-12-31T23:59:59Z",
        "2026-05-01T12:00:00.5+02:00",
        "2026-05-01 12:00",
        -62_135_596_800,
        253_402_300_799,
        0,
        1.5,
    ],
    "after": ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.5+00:00", -1, 1e10],
}
ATTRIBUTES = ["x", "targetingKey", "a.b.c", "x:y-z_1"]
SPLITS_ACCEPTED = [
    [("on", 50), ("off", 50)],
    [("on", 0), ("off", 100)],
    [("on", 0.001), ("off", 99.999)],
    [("on", 33.333333), ("off", 66.666667)],
]


def spread_of_valid_rules() -> list[dict[str, Any]]:
    """One rule per operator and edge value (attribute by turns; $now and x for dates too),
    then all/any rules mixing them, with every kind of serve."""
    rules: list[dict[str, Any]] = []
    n = 0
    for operator, values in EDGE_VALUES.items():
        for value in values:
            attribute = ATTRIBUTES[n % len(ATTRIBUTES)]
            n += 1
            rules.append(
                {
                    "conditions": [{"attribute": attribute, "operator": operator, "value": value}],
                    "serve": {"variant": "on" if n % 2 else "off"},
                }
            )
            if operator in ("before", "after"):
                also = {"attribute": "x", "operator": operator, "value": value}
                rules.append(
                    {
                        "match": "any",
                        "conditions": [{**also, "attribute": "$now"}, also],
                        "serve": {"variant": "off"},
                    }
                )
    mixed = [c for r in rules[::3] for c in r["conditions"]]
    for i, split in enumerate(SPLITS_ACCEPTED):
        rules.append(
            {
                "name": f"mixed {i} 🙂",
                "match": "any" if i % 2 else "all",
                "conditions": mixed[i * 5 : i * 5 + 5],
                "serve": {"split": [{"variant": v, "weight": w} for v, w in split]},
            }
        )
    return rules


CONTEXTS = [
    "{}",
    '{"targetingKey": "u1"}',
    '{"targetingKey": "u2", "x": "pro", "a": {"b": {"c": 1}}}',
    '{"targetingKey": "u3", "x": 1' + "0" * 400 + ', "x:y-z_1": -1' + "0" * 400 + "}",
    '{"targetingKey": "u4", "x": 1e400, "a.b.c": -1e400}',
    '{"targetingKey": "u5", "x": "9999-12-31T23:59:59-23:00", "a.b.c": "0000-01-01"}',
    '{"targetingKey": "u6", "x": "0001-01-01T00:00:00+14:00", "a.b.c": "2026-05-01"}',
    '{"targetingKey": "u7", "x": "1.' + "9" * 5000 + '.0", "x:y-z_1": "v2.4.0"}',
    '{"targetingKey": "u8", "x": true, "a.b.c": [1, 2], "x:y-z_1": {"k": null}}',
    '{"targetingKey": "u9", "x": null, "a.b.c": "", "x:y-z_1": "🙂"}',
    '{"targetingKey": "u10", "x": "US", "a": {"b": {"c": 10000000000}}}',
]


def test_every_rule_validation_accepts_exports_and_evaluates(api, app, beta):
    all_rules = spread_of_valid_rules()
    chunks = [all_rules[i : i + MAX_RULES] for i in range(0, len(all_rules), MAX_RULES)]
    assert len(chunks) >= 2
    keys = []
    for i, chunk in enumerate(chunks):
        assert validate_rules(chunk, variant_names=["on", "off"])  # accepted
        flag = make_flag(app, f"spread-{i}")
        set_values(flag, beta, enabled=True, rules=chunk)
        keys.append(flag.key)
    deploy(beta)
    key = new_key(beta)

    response = api.get(URL, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert set(document["flags"]) == set(keys)
    core = FlagdCore()
    core.set_flags(response.content.decode())  # flagd loads it, and evaluates it
    for flag_key in keys:
        for context in ({}, {"x": "pro"}, {"x": 5, "a.b.c": "2026-05-01"}):
            ctx = EvaluationContext(targeting_key="u1", attributes=context)
            assert core.resolve_boolean_value(flag_key, False, ctx).variant in ("on", "off")

    # First match wins over HTTP, so every rule is also tried alone on every context.
    compiled = [
        rule
        for chunk in chunks
        for rule in compile_rules(validate_rules(chunk, variant_names=["on", "off"]))
    ]
    for context in CONTEXTS:
        parsed = json.loads(context)
        for rule in compiled:
            for now in (0.0, 1.8e9, -62_135_596_800.0, 253_402_300_799.0):
                assert rule.matches(parsed, now) in (True, False)

    for context in CONTEXTS:
        body = '{"context": ' + context + "}"
        bulk = post(api, ALL, body, key)
        assert bulk.status_code == 200, (context[:80], bulk.content[:300])
        items = {item["key"]: item for item in bulk.json()["flags"]}
        assert set(items) == set(keys)
        for flag_key, item in items.items():
            assert item.get("errorCode") in (None, "TARGETING_KEY_MISSING"), item
            single = post(api, ONE + flag_key, body, key)
            assert single.status_code in (200, 400), single.content
            assert single.json() == item
