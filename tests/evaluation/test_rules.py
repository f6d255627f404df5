"""Targeting rules: validation messages at the rules field, and what each operator matches."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from flagdash.evaluation.rules import compile_rules, describe, parse_semver, validate_rules

NAMES = ["on", "off"]


def rule(attribute, operator, value, serve=None, match="all"):
    return {
        "match": match,
        "conditions": [{"attribute": attribute, "operator": operator, "value": value}],
        "serve": serve or {"variant": "on"},
    }


def message(rules, names=NAMES) -> str:
    with pytest.raises(ValidationError) as caught:
        validate_rules(rules, variant_names=names)
    assert list(caught.value.error_dict) == ["rules"]
    return caught.value.error_dict["rules"][0].message


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([rule("plan", "equals", "pro", {"variant": "maybe"})], "Rule 1: unknown variant 'maybe'"),
        ([rule("email", "matches", "([a-z]+")], "Rule 1, condition 1: Not a valid regular"),
        (
            [
                rule(
                    "u",
                    "equals",
                    1,
                    {"split": [{"variant": "on", "weight": 60}, {"variant": "off", "weight": 30}]},
                )
            ],
            "add up to 90, not 100",
        ),
        ([rule("u", "is", 1)], "unknown operator 'is'"),
        ([rule("v", "semver_gt", "1.2")], "is not a semantic version"),
        ([rule("d", "before", "2026-13-01")], "is not a date"),
        ([rule("c", "in", [])], "give a list of 1 to 500 values"),
        ([rule("n", "lt", "10")], "compare with a number"),
        ([rule("bad attr!", "equals", 1)], "the attribute is a context key"),
        ([{"conditions": [], "serve": {"variant": "on"}}], "give at least one condition"),
        ("not a list", "give a list of rules"),
    ],
)
def test_invalid_rules_are_refused_with_a_clear_message(rules, expected):
    assert expected in message(rules)


def test_second_rule_is_named_in_the_error():
    rules = [rule("a", "equals", 1), rule("b", "equals", 2, {"variant": "gone"})]
    assert message(rules).startswith("Rule 2:")


def test_valid_rules_come_back_cleaned():
    cleaned = validate_rules(
        [{**rule("country", "in", ["US"]), "name": "  US  "}], variant_names=NAMES
    )
    assert cleaned == [{"name": "US", **rule("country", "in", ["US"])}]


def matches(attribute, operator, value, context, now=0.0):
    compiled = compile_rules(
        validate_rules([rule(attribute, operator, value)], variant_names=NAMES)
    )
    return compiled[0].matches(context, now)


@pytest.mark.parametrize(
    ("operator", "value", "context", "expected"),
    [
        ("equals", "pro", {"a": "pro"}, True),
        ("equals", 1, {"a": 1.0}, True),
        ("equals", 1, {"a": True}, False),
        ("equals", True, {"a": 1}, False),
        ("not_equals", "pro", {"a": "free"}, True),
        ("not_equals", "pro", {}, False),
        ("in", ["US", "CA"], {"a": "CA"}, True),
        ("in", ["US", "CA"], {"a": "us"}, False),
        ("not_in", ["US"], {"a": "FR"}, True),
        ("not_in", ["US"], {"a": None}, False),
        ("not_in", ["US"], {"a": ["US"]}, True),  # a list is not one of the texts
        ("not_in", ["US"], {"a": {"code": "US"}}, True),
        ("in", ["US"], {"a": ["US"]}, False),
        ("starts_with", "adm", {"a": "admin"}, True),
        ("ends_with", "@example.com", {"a": "x@example.com"}, True),
        ("ends_with", "@example.com", {"a": 5}, False),
        ("contains", "beta", {"a": "app-beta-2"}, True),
        ("matches", "^[A-Z]{2}-\\d+$", {"a": "SV-42"}, True),
        ("matches", "^[A-Z]{2}-\\d+$", {"a": "sv-42"}, False),
        ("lt", 18, {"a": 17}, True),
        ("lte", 18, {"a": 18}, True),
        ("gt", 18, {"a": "19"}, False),
        ("gte", 2.5, {"a": 2.5}, True),
        ("semver_gte", "2.4.0", {"a": "2.10.0"}, True),
        ("semver_lt", "2.4.0", {"a": "2.4.0-rc.1"}, True),
        ("semver_eq", "2.4.0", {"a": "v2.4.0+build.7"}, True),
        ("semver_gt", "2.4.0", {"a": "not a version"}, False),
        ("semver_gte", "2.4.0", {"a": "2.4"}, True),  # partial versions read as flagd does
        ("semver_lt", "2.4.0", {"a": "2"}, True),
        ("semver_lt", "2.4.0", {"a": "2.4-beta"}, True),
        ("semver_eq", "2.4.0", {"a": "V2.4.0"}, True),
        ("semver_eq", "2.4.0", {"a": "vv2.4.0"}, False),
        ("semver_eq", "2.4.0", {"a": " 2.4.0"}, False),
        ("semver_eq", "2.4.0", {"a": "2.4.0\n"}, False),
        ("semver_eq", "2.4.0", {"a": 2.4}, False),
        ("before", "2026-01-01", {"a": "2025-12-31"}, True),
        ("after", "2026-01-01T00:00:00Z", {"a": "2026-01-01T00:00:01+00:00"}, True),
        ("after", "2026-01-01", {"a": "garbage"}, False),
    ],
)
def test_operators(operator, value, context, expected):
    assert matches("a", operator, value, context) is expected


def test_now_compares_the_time_of_evaluation():
    # 2030-01-01T00:00:00Z is 1,893,456,000 seconds after the epoch.
    assert matches("$now", "before", "2030-01-01", {}, now=1_893_455_999.0) is True
    assert matches("$now", "before", "2030-01-01", {}, now=1_893_456_001.0) is False
    assert matches("$now", "after", "2030-01-01", {}, now=1_893_456_001.0) is True


def test_nested_attributes_by_path():
    assert matches("company.size", "gte", 100, {"company": {"size": 120}}) is True
    assert matches("company.size", "gte", 100, {"company": "acme"}) is False


def test_any_versus_all():
    two = {
        "conditions": [
            {"attribute": "a", "operator": "equals", "value": 1},
            {"attribute": "b", "operator": "equals", "value": 2},
        ],
        "serve": {"variant": "on"},
    }
    all_rule = compile_rules(validate_rules([two], variant_names=NAMES))[0]
    any_rule = compile_rules(validate_rules([{**two, "match": "any"}], variant_names=NAMES))[0]
    assert all_rule.matches({"a": 1}, 0) is False
    assert any_rule.matches({"a": 1}, 0) is True


def test_semver_precedence_follows_semver_org():
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.10.0",
    ]
    keys = [parse_semver(v) for v in ordered]
    assert keys == sorted(keys)


def test_describe_reads_like_a_sentence():
    text = describe(
        rule(
            "country",
            "in",
            ["US", "CA"],
            {"split": [{"variant": "on", "weight": 20}, {"variant": "off", "weight": 80}]},
        )
    )
    assert text == "country is one of “US”, “CA” → on 20 % / off 80 %"
