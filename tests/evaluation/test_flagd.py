"""The flagd export: valid for flagd's schema, true to what flagdash serves, key-protected."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.evaluation.conftest import deploy, new_key, set_values

pytestmark = pytest.mark.django_db
URL = "/ofrep/v1/flagd/flags.json"
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
