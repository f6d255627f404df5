"""The rule builder's inputs: what a posted form stands for; stored rules shown and read back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.urls import reverse

from flagdash.evaluation.rules import validate_rules
from flagdash.flags import services
from flagdash.flags.forms import SettingForm
from flagdash.flags.models import FlagSetting
from flagdash.flags.rule_builder import RuleBuilder, list_items, raw_rule
from tests.factories import make_flag
from tests.flags.html_form import read_form

pytestmark = pytest.mark.django_db

P = "env-beta-"


def card(
    *conditions: tuple[str, str, str, str],
    name: str = "",
    match: str = "all",
    serve: str = "variant",
    variant: str = "on",
    split: tuple[tuple[str, str], ...] = (("on", ""), ("off", "")),
) -> dict[str, Any]:
    return {
        "name": name,
        "match": match,
        "conditions": conditions,
        "serve": serve,
        "variant": variant,
        "split": split,
    }


def builder_data(revision: int, *cards: dict[str, Any], prefix: str = P) -> dict[str, str]:
    """What the builder posts for these cards (``conditions``: attribute, operator, type, value)."""
    data = {f"{prefix}revision": str(revision), f"{prefix}rule-TOTAL_FORMS": str(len(cards))}
    for i, c in enumerate(cards):
        p = f"{prefix}rule-{i}-"
        data |= {p + "name": c["name"], p + "match": c["match"], p + "serve": c["serve"]}
        data[p + "variant"] = c["variant"]
        data[p + "cond-TOTAL_FORMS"] = str(len(c["conditions"]))
        for j, (attribute, operator, kind, value) in enumerate(c["conditions"]):
            data |= {
                f"{p}cond-{j}-attribute": attribute,
                f"{p}cond-{j}-operator": operator,
                f"{p}cond-{j}-type": kind,
                f"{p}cond-{j}-value": value,
            }
        data[p + "split-TOTAL_FORMS"] = str(len(c["split"]))
        for k, (variant, weight) in enumerate(c["split"]):
            data |= {f"{p}split-{k}-variant": variant, f"{p}split-{k}-weight": weight}
    return data


def setting_of(flag, env) -> FlagSetting:
    s = FlagSetting.objects.select_related("flag", "environment").get(flag=flag, environment=env)
    s.flag = flag
    return s


def form_for(flag, env, data) -> SettingForm:
    return SettingForm(data, setting=setting_of(flag, env), attributes=[])


def parsed(flag, env, *cards: dict[str, Any]) -> Any:
    form = form_for(flag, env, builder_data(setting_of(flag, env).revision, *cards))
    assert form.is_valid(), form.errors
    return form.cleaned_data["rules"]


@pytest.fixture
def colors(app, envs):
    return make_flag(
        app,
        "button-color",
        kind="multivariant",
        value_type="string",
        variants=[
            {"name": "blue", "value": "#00f"},
            {"name": "green", "value": "#0f0"},
            {"name": "red", "value": "#f00"},
        ],
        default_variant="blue",
    )


# --- posted inputs → the rules the service gets ----------------------------------------------


@pytest.mark.parametrize(
    ("operator", "kind", "raw", "value"),
    [
        ("equals", "text", "pro", "pro"),
        ("equals", "text", " two words ", " two words "),  # texts are compared as typed
        ("equals", "number", "21", 21),
        ("equals", "number", "2.5", 2.5),
        ("equals", "boolean", "True", True),
        ("not_equals", "text", "21", "21"),  # a text "21" is not the number 21
        ("not_equals", "boolean", "false", False),
        ("in", "text", "SV, US", ["SV", "US"]),
        ("in", "text", "SV\r\nUS\r\n\r\nCA", ["SV", "US", "CA"]),
        ("in", "text", "Smith, John\r\nDoe, Jane", ["Smith, John", "Doe, Jane"]),
        ("not_in", "number", "1, 2.5", [1, 2.5]),
        ("in", "boolean", "true", [True]),
        ("starts_with", "text", "+503", "+503"),
        ("ends_with", "text", "@example.com", "@example.com"),
        ("contains", "text", "beta", "beta"),
        ("matches", "text", r"^[A-Z]{2}$", r"^[A-Z]{2}$"),
        ("lt", "text", "18", 18),
        ("lte", "text", " 2.5 ", 2.5),
        ("gt", "text", "-3", -3),
        ("gte", "text", "1e3", 1000.0),
        ("semver_eq", "text", "2.4.0", "2.4.0"),
        ("semver_lt", "text", " 3.0.0-rc.1 ", "3.0.0-rc.1"),
        ("semver_lte", "text", "1.0.0", "1.0.0"),
        ("semver_gt", "text", "v2.0.0", "v2.0.0"),
        ("semver_gte", "text", "2.4.0", "2.4.0"),
        ("before", "text", "2026-05-01T12:00", "2026-05-01T12:00"),  # datetime-local, UTC
        ("after", "text", "2026-05-01T12:00:30", "2026-05-01T12:00:30"),
        ("after", "text", "2026-05-01", "2026-05-01"),
        ("before", "text", "2026-05-01T12:00:00Z", "2026-05-01T12:00:00Z"),
    ],
)
def test_every_operator_becomes_its_condition(flag, beta, operator, kind, raw, value):
    rules = parsed(flag, beta, card(("country", operator, kind, raw)))
    assert rules == [
        {
            "match": "all",
            "conditions": [{"attribute": "country", "operator": operator, "value": value}],
            "serve": {"variant": "on"},
        }
    ]
    assert validate_rules(rules, variant_names=["on", "off"]) == rules


def test_names_match_any_splits_and_empty_rows(flag, beta):
    rules = parsed(
        flag,
        beta,
        card(
            ("country", "in", "text", "SV, US"),
            ("", "equals", "text", ""),  # an empty row is left out
            ("plan", "equals", "text", "pro"),
            name="  Central America  ",
            match="any",
            variant="off",
        ),
        card(),  # an empty card is left out
        card(
            ("targetingKey", "starts_with", "text", "user-"),
            serve="split",
            split=(("on", "12.5"), ("off", "87.5")),
        ),
        card(
            ("plan", "equals", "text", "free"),
            serve="split",
            split=(("off", "80"), ("on", "20"), ("on", "")),  # a row without a weight: left out
        ),
    )
    assert rules == [
        {
            "name": "Central America",
            "match": "any",
            "conditions": [
                {"attribute": "country", "operator": "in", "value": ["SV", "US"]},
                {"attribute": "plan", "operator": "equals", "value": "pro"},
            ],
            "serve": {"variant": "off"},
        },
        {
            "match": "all",
            "conditions": [
                {"attribute": "targetingKey", "operator": "starts_with", "value": "user-"}
            ],
            "serve": {
                "split": [{"variant": "on", "weight": 12.5}, {"variant": "off", "weight": 87.5}]
            },
        },
        {
            "match": "all",
            "conditions": [{"attribute": "plan", "operator": "equals", "value": "free"}],
            "serve": {"split": [{"variant": "off", "weight": 80}, {"variant": "on", "weight": 20}]},
        },
    ]


def test_no_cards_is_no_rules(flag, beta):
    assert parsed(flag, beta) == []


def test_a_post_without_the_builder_or_the_json_keeps_the_rules(flag, beta):
    form = form_for(flag, beta, {f"{P}revision": "1"})
    assert form.is_valid()
    assert form.cleaned_data["rules"] is None  # the service keeps what it has


@pytest.mark.parametrize(
    ("conditions", "split", "key", "message"),
    [
        ((("age", "gt", "text", "old"),), None, "rule-0-cond-0-value", "Enter a number."),
        ((("vip", "equals", "boolean", "yes"),), None, "rule-0-cond-0-value", "true or false"),
        ((("n", "in", "number", "1, two"),), None, "rule-0-cond-0-value", "“two” is not a number."),
        ((("a", "equals", "text", "x"),), (("on", "lots"),), "rule-0-split-0-weight", "number"),
        ((("a", "equals", "text", "x"),), (("on", ""),), "rule-0-split", "Give at least one"),
    ],
)
def test_what_cannot_be_read_is_an_error_at_its_input(flag, beta, conditions, split, key, message):
    serve = "split" if split else "variant"
    data = builder_data(1, card(*conditions, serve=serve, split=split or ()))
    form = form_for(flag, beta, data)
    assert not form.is_valid()
    assert "Nothing was saved" in str(form.non_field_errors())
    assert any(message in m for m in form.rule_builder.problems[key])
    assert form.rule_builder.summary[0][0].startswith("Rule 1")


@pytest.mark.parametrize(
    ("raw", "items"),
    [
        ("SV, US", ["SV", "US"]),
        ("SV,US,", ["SV", "US"]),
        ("SV\nUS", ["SV", "US"]),
        ("Smith, John\nDoe, Jane", ["Smith, John", "Doe, Jane"]),
        ("  \n", []),
        ("one", ["one"]),
    ],
)
def test_list_values_are_one_per_line_or_comma_separated(raw, items):
    assert list_items(raw) == items


# --- stored rules → inputs → the same rules ---------------------------------------------------

ROUND_TRIP = [
    {
        "name": "Staff",
        "match": "any",
        "conditions": [
            {"attribute": "email", "operator": "ends_with", "value": "@example.com"},
            {"attribute": "email", "operator": "equals", "value": " padded "},
            {"attribute": "age", "operator": "equals", "value": 21},
            {"attribute": "score", "operator": "not_equals", "value": 2.0},
            {"attribute": "beta", "operator": "equals", "value": True},
            {"attribute": "zip", "operator": "equals", "value": "01234"},
        ],
        "serve": {"variant": "off"},
    },
    {
        "match": "all",
        "conditions": [
            {"attribute": "country", "operator": "in", "value": ["SV", "US"]},
            {"attribute": "team", "operator": "not_in", "value": ["Smith, John", "Doe, Jane"]},
            {"attribute": "tier", "operator": "in", "value": [1, 2.5, 100000000000000000000]},
            {"attribute": "opted", "operator": "not_in", "value": [False]},
            {"attribute": "company.name", "operator": "starts_with", "value": "ACME"},
            {"attribute": "path", "operator": "contains", "value": "/beta/"},
            {"attribute": "email", "operator": "matches", "value": r"^[a-z]+@(x|y)\.com$"},
        ],
        "serve": {"split": [{"variant": "on", "weight": 20}, {"variant": "off", "weight": 80}]},
    },
    {
        "match": "all",
        "conditions": [
            {"attribute": "age", "operator": "lt", "value": 18},
            {"attribute": "age", "operator": "lte", "value": 17.5},
            {"attribute": "age", "operator": "gt", "value": 1e-07},
            {"attribute": "age", "operator": "gte", "value": -3},
            {"attribute": "appVersion", "operator": "semver_eq", "value": "2.4.0"},
            {"attribute": "appVersion", "operator": "semver_lt", "value": "3.0.0-rc.1"},
            {"attribute": "appVersion", "operator": "semver_lte", "value": "v2.9.9"},
            {"attribute": "appVersion", "operator": "semver_gt", "value": "1.0.0+build.5"},
            {"attribute": "appVersion", "operator": "semver_gte", "value": "2.4.0"},
            {"attribute": "$now", "operator": "after", "value": "2026-05-01T12:00:00"},
            {"attribute": "$now", "operator": "before", "value": "2026-06-01"},
            {"attribute": "signup", "operator": "before", "value": "2026-06-01T08:30:00+02:00"},
            {"attribute": "signup", "operator": "after", "value": "2026-01-01T00:00"},
        ],
        "serve": {"split": [{"variant": "off", "weight": 33.3}, {"variant": "on", "weight": 66.7}]},
    },
]

# Rules the inputs cannot show exactly: each stays JSON in its card, and comes back unchanged.
JSON_CARDS = [
    {
        "match": "all",
        "conditions": [{"attribute": "tier", "operator": "in", "value": ["gold", 1, True]}],
        "serve": {"variant": "on"},
    },
    {
        "match": "all",
        "conditions": [{"attribute": "$now", "operator": "before", "value": 1767225600}],
        "serve": {"variant": "off"},
    },
    {
        "match": "all",
        "conditions": [{"attribute": "team", "operator": "in", "value": ["Smith, John"]}],
        "serve": {"variant": "on"},
    },
    {
        "match": "all",
        "conditions": [{"attribute": "team", "operator": "in", "value": [" padded"]}],
        "serve": {"variant": "on"},
    },
]


def same(a: Any, b: Any) -> bool:
    """Equal as JSON, types included (1, 1.0 and true differ; key order does not matter)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _save(flag, env, rules):
    s = setting_of(flag, env)
    services.flag_setting_update(
        actor=None, flag=flag, environment=env, expected_revision=s.revision, rules=rules
    )
    return setting_of(flag, env)


@pytest.mark.parametrize("rules", [ROUND_TRIP, JSON_CARDS, ROUND_TRIP + JSON_CARDS])
def test_stored_rules_shown_in_the_page_and_posted_back_are_unchanged(
    editor_client, flag, beta, rules
):
    stored = _save(flag, beta, rules)
    assert stored.rules == rules  # validated and kept as given
    page = editor_client.get(reverse("flag_detail", args=["checkout", flag.key]), {"env": "beta"})
    data = read_form(page.content.decode())
    assert data[f"{P}rule-TOTAL_FORMS"] == str(len(rules))
    json_cards = [i for i in range(len(rules)) if f"{P}rule-{i}-json" in data]
    assert json_cards == [i for i, r in enumerate(rules) if r in JSON_CARDS]
    form = form_for(flag, beta, data)
    assert form.rule_builder.source == "builder"
    assert form.is_valid(), form.errors
    assert same(form.cleaned_data["rules"], rules)  # types and all

    response = editor_client.post(
        reverse("flag_setting_save", args=["checkout", flag.key, "beta"]), data
    )
    assert response.status_code == 302
    after = setting_of(flag, beta)
    assert same(after.rules, rules)
    assert after.revision == stored.revision  # nothing changed, nothing written


def test_only_rules_the_inputs_cannot_show_are_json_cards():
    assert all(raw_rule(r, ["on", "off"]).json is None for r in ROUND_TRIP)
    assert all(raw_rule(r, ["on", "off"]).json is not None for r in JSON_CARDS)


def test_a_multivariant_flag_serves_its_variants(colors, beta):
    rules = parsed(
        colors,
        beta,
        card(("country", "equals", "text", "SV"), variant="green"),
        card(
            ("country", "equals", "text", "US"),
            serve="split",
            split=(("blue", "50"), ("red", "50")),
        ),
    )
    assert [r["serve"] for r in rules] == [
        {"variant": "green"},
        {"split": [{"variant": "blue", "weight": 50}, {"variant": "red", "weight": 50}]},
    ]
    builder = RuleBuilder(prefix=P, rules=[], variant_names=["blue", "green", "red"])
    builder.apply("add_rule")
    view = builder.rule_views()[0]
    assert view.variant_options == ["blue", "green", "red"]
    assert [row.variant.value for row in view.split] == ["blue", "green"]
