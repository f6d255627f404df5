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


# --- bad input: refused at the rules field, never an exception -----------------------------------


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([rule("a", "equals", "\ud800")], "Rule 1, condition 1: the value contains half of a UTF"),
        ([rule("a", "in", ["US", "x\udfff"])], "the value contains half of a UTF-16 surrogate"),
        ([rule("a", "contains", "\udc00")], "the value contains half of a UTF-16 surrogate"),
        ([rule("a", "matches", "^\ud800$")], "the value contains half of a UTF-16 surrogate"),
        ([{**rule("a", "equals", 1), "name": "Staff \ud83d"}], "Rule 1: the name contains half"),
        ([rule("a", "contains", "a\x00b")], "Rule 1, condition 1: the value contains a NUL"),
        ([rule("a", "in", ["US", "\x00"])], "the value contains a NUL character"),
        ([rule("email\n", "equals", "x")], "the attribute is a context key"),
        ([rule("d", "before", "0000-01-01")], "'0000-01-01' is out of range: dates run from"),
        ([rule("d", "after", "10000-01-01")], "'10000-01-01' is out of range"),
        ([rule("d", "before", "0001-01-01T00:00:00+14:00")], "is out of range"),  # year 0 in UTC
        ([rule("d", "after", "9999-12-31T23:59:59-23:00")], "is out of range"),  # year 10000
        ([rule("d", "before", 1e300)], "1e+300 is out of range"),
        ([rule("d", "after", -(10**30))], "-1.000000e+30 is out of range"),
        ([rule("d", "after", 10**400)], "a number this large is out of range"),
        ([rule("d", "before", 253_402_300_800)], "253402300800 is out of range"),  # 10000-01-01
        ([rule("d", "before", "9999-12-31T23:59:59.99999Z")], "is out of range"),  # as a float
        ([rule("v", "semver_gte", "1١.0.0")], "is not a semantic version"),  # an Arabic-Indic 1
    ],
)
def test_text_and_dates_that_cannot_be_stored_or_exported_are_refused(rules, expected):
    assert expected in message(rules)


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01",
        "9999-12-31",
        "9999-12-31T23:59:59.5Z",
        "0001-01-01T00:00:00+00:00",
        -62_135_596_800,
        253_402_300_799.5,
    ],
)
def test_the_first_and_last_dates_are_accepted(value):
    assert validate_rules([rule("d", "before", value)], variant_names=NAMES)


HUGE = 10**400  # what a context's 1 followed by 400 zeros becomes (1e400 becomes infinity)


def _short(value):
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}…({len(text)} chars)"


@pytest.mark.parametrize(
    ("operator", "value", "context_value", "expected"),
    [
        # A number is epoch seconds, compared exactly, however large (as flagd compares it).
        ("after", "2026-01-01", HUGE, True),
        ("before", "2026-01-01", HUGE, False),
        ("before", "2026-01-01", -HUGE, True),
        ("before", "2026-01-01", -(10**30), True),
        ("after", "2026-01-01T00:00:00Z", 10**30, True),
        ("after", "2026-01-01", float("inf"), False),  # not a number: no match
        ("before", "2026-01-01", float("-inf"), False),
        ("after", "2026-01-01", 1e308, True),
        ("after", "2026-01-01", "9999-12-31T23:59:59-23:00", True),  # year 10000 in UTC
        ("before", "2026-01-01", "0001-01-01T00:00:00+14:00", True),  # year 0 in UTC
        ("after", "2026-01-01", "10000-01-01", False),
        ("after", "2026-01-01", "0000-01-01", False),
        ("after", "2026-01-01", "2026-01-01T25:00:00", False),
        ("lt", 5, HUGE, False),
        ("gt", 5, HUGE, True),
        ("gte", 0, -(10**30), False),
        ("lte", 1e308, HUGE, False),
        ("lt", 5, float("-inf"), False),
        ("equals", 1, HUGE, False),
        ("in", [1, 2], HUGE, False),
        ("not_in", [1, 2], HUGE, True),
        ("semver_gt", "1.2.3", "9" * 250 + ".0.0", True),
        ("semver_gt", "1.2.3", "1." + "9" * 5000 + ".0", False),  # too long to be a version
        ("semver_gt", "1.2.3", "1.2.3-" + "a." * 200, False),
        ("semver_eq", "11.0.0", "1١.0.0", False),  # not ASCII digits: flagd does not read it
        ("semver_lt", "1.2.3", HUGE, False),
        ("semver_lt", "1.2.3", "", False),
        ("semver_lt", "1.2.3", "v", False),
    ],
    ids=_short,
)
def test_numbers_dates_and_versions_at_the_edges_never_raise(
    operator, value, context_value, expected
):
    assert matches("a", operator, value, {"a": context_value}) is expected


def test_a_stored_rule_with_an_impossible_date_never_matches_and_is_left_out_of_flagd():
    """Versions saved before dates were checked: evaluating or exporting them must not fail."""
    from flagdash.evaluation.flagd import targeting

    for value in (10**400, 1e300, "9999-12-31T23:59:59-23:00"):
        stored = [
            {
                "conditions": [{"attribute": "a", "operator": "before", "value": value}],
                "serve": {"variant": "on"},
            }
        ]
        compiled = compile_rules(stored)
        assert compiled[0].matches({"a": "2020-01-01"}, 0.0) is False
        assert compiled[0].matches({"a": -(10**30)}, 0.0) is False
        expression, skipped = targeting(stored)
        assert expression is None
        assert skipped and "rule 1:" in skipped[0]
