"""A product manager builds targeting rules in Chromium; once deployed, OFREP serves them."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from flagdash.backends.local import sticky_bucket
from flagdash.evaluation.rules import SPLIT_SALT
from flagdash.evaluation.snapshot import holder
from flagdash.flags.models import FlagSetting
from tests.browser.test_flags import log_in
from tests.evaluation.conftest import deploy, new_key, set_values
from tests.factories import make_flag

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ofrep(settings):
    """OFREP in the live server: no background push thread, the snapshot read afresh."""
    settings.OFREP_COUNTS_PUSH_SECONDS = 0
    settings.OFREP_REFRESH_SECONDS = 0
    holder.reset()
    yield
    holder.reset()


def split_keys(flag_key: str) -> tuple[str, str]:
    """A targeting key the 20/80 split serves "on", and one it serves "off"."""
    keys = [f"user-{i}" for i in range(200)]
    inside = next(k for k in keys if sticky_bucket(k, flag_key, SPLIT_SALT) < 20)
    outside = next(k for k in keys if sticky_bucket(k, flag_key, SPLIT_SALT) >= 20)
    return inside, outside


def evaluate(page: Page, live_server, flag_key: str, key: str, context: dict) -> dict:
    response = page.request.post(
        f"{live_server.url}/ofrep/v1/evaluate/flags/{flag_key}",
        data=json.dumps({"context": context}),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status == 200, response.text()
    return response.json()


def test_a_pm_adds_a_country_rule_and_a_split_then_ofrep_serves_them_once_deployed(
    page: Page, live_server, ofrep, flag, beta, editor, password
):
    set_values(flag, beta, enabled=True)
    deploy(beta)  # Beta serves the flag, on for everyone
    other = make_flag(flag.application, "express-checkout")
    condition = {"attribute": "membership.tier", "operator": "equals", "value": "gold"}
    set_values(other, beta, rules=[{"conditions": [condition], "serve": {"variant": "on"}}])
    log_in(page, live_server, "editor", password)
    page.goto(f"{live_server.url}/apps/checkout/flags/{flag.key}/?env=beta")
    builder = page.locator("#rules-beta")
    expect(builder).to_contain_text("Everyone else: on while the flag is on.")
    suggestions = page.locator("#rule-attributes-beta option")
    expect(suggestions).to_have_count(2)  # $now and targetingKey; other flags' come on focus

    # Rule 1: country is one of SV, US → on.
    builder.get_by_role("button", name="Add rule").click()
    first = builder.get_by_role("group", name="Rule 1", exact=True)
    expect(first.get_by_label("Rule 1 Name")).to_be_focused()  # the new card's first field
    expect(suggestions).to_have_count(3)  # the fragment brings the other flag's attribute
    expect(suggestions.nth(2)).to_have_attribute("value", "membership.tier")
    first.get_by_label("Rule 1 Name").fill("Bitcoin countries")
    first.get_by_label("Rule 1, condition 1: Attribute").fill("country")
    first.get_by_label("Rule 1, condition 1: Operator").select_option(label="is one of")
    values = first.get_by_label("Rule 1, condition 1: Values")  # a list input now (htmx)
    expect(values).to_have_js_property("tagName", "TEXTAREA")
    values.fill("SV, US")
    expect(first.get_by_label("Variant served by rule 1")).to_have_value("on")

    # Rule 2: plan equals pro → 20 % on, 80 % off.
    builder.get_by_role("button", name="Add rule").click()
    second = builder.get_by_role("group", name="Rule 2", exact=True)
    expect(second.get_by_label("Rule 2 Name")).to_be_focused()
    expect(first.get_by_label("Rule 1, condition 1: Values")).to_have_value("SV, US")  # kept
    second.get_by_label("Rule 2 Name").fill("20 % of pro")
    second.get_by_label("Rule 2, condition 1: Attribute").fill("plan")
    second.get_by_label("Rule 2, condition 1: Value").fill("pro")
    second.get_by_role("radio", name="a percentage split").check()
    expect(second.get_by_label("Variant served by rule 2")).to_be_hidden()
    second.get_by_label("Rule 2, split row 1: percentage").fill("20")
    second.get_by_label("Rule 2, split row 2: percentage").fill("80")
    expect(second.locator("[data-split-total]")).to_have_text("100")  # live, as typed

    page.get_by_role("button", name="Save Beta values").click()
    expect(page.get_by_text(f"Saved {flag.key}'s values in Beta")).to_be_visible()
    expect(page.locator("ol.rules")).to_contain_text("country is one of “SV”, “US” → on")
    expect(page.locator("ol.rules")).to_contain_text("plan equals “pro” → on 20 % / off 80 %")
    assert FlagSetting.objects.get(flag=flag, environment=beta).rules == [
        {
            "name": "Bitcoin countries",
            "match": "all",
            "conditions": [{"attribute": "country", "operator": "in", "value": ["SV", "US"]}],
            "serve": {"variant": "on"},
        },
        {
            "name": "20 % of pro",
            "match": "all",
            "conditions": [{"attribute": "plan", "operator": "equals", "value": "pro"}],
            "serve": {"split": [{"variant": "on", "weight": 20}, {"variant": "off", "weight": 80}]},
        },
    ]

    # The page shows this flag's attributes at once, the application's when one is focused.
    expect(suggestions).to_have_count(4)
    page.get_by_label("Rule 1, condition 1: Attribute").focus()
    expect(suggestions).to_have_count(5)
    expect(suggestions.nth(3)).to_have_attribute("value", "membership.tier")

    # Saved is not served: OFREP answers from what is deployed.
    key = new_key(beta)
    before = evaluate(page, live_server, flag.key, key, {"targetingKey": "u1", "country": "SV"})
    assert before["reason"] == "STATIC"
    deploy(beta)

    salvador = evaluate(page, live_server, flag.key, key, {"targetingKey": "u1", "country": "SV"})
    assert (salvador["value"], salvador["variant"], salvador["reason"]) == (
        True,
        "on",
        "TARGETING_MATCH",
    )
    inside, outside = split_keys(flag.key)
    for targeting_key, value, variant in ((inside, True, "on"), (outside, False, "off")):
        pro = evaluate(
            page, live_server, flag.key, key, {"targetingKey": targeting_key, "plan": "pro"}
        )
        assert (pro["value"], pro["variant"], pro["reason"]) == (value, variant, "SPLIT")


def test_the_builder_works_without_javascript(browser, live_server, flag, beta, editor, password):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, live_server, "editor", password)
    page.goto(f"{live_server.url}/apps/checkout/flags/{flag.key}/?env=beta")
    page.get_by_role("button", name="Add rule").click()  # a full page, one card more
    card = page.get_by_role("group", name="Rule 1", exact=True)
    card.get_by_label("Rule 1, condition 1: Attribute").fill("email")
    card.get_by_label("Rule 1, condition 1: Operator").select_option(label="ends with")
    card.get_by_label("Rule 1, condition 1: Value").fill("@example.com")
    card.get_by_role("button", name="Add condition to rule 1").click()
    card = page.get_by_role("group", name="Rule 1", exact=True)
    expect(card.get_by_label("Rule 1, condition 1: Value")).to_have_value("@example.com")
    expect(card.get_by_label("Rule 1, condition 2: Attribute")).to_be_focused()
    card.get_by_label("Rule 1, condition 2: Attribute").fill("appVersion")
    card.get_by_label("Rule 1, condition 2: Operator").select_option(label="version ≥")
    card.get_by_label("Rule 1, condition 2: Value").fill("2.4.0")
    card.get_by_label("Rule 1, condition 2: Value").press("Enter")  # Enter saves the form
    expect(page.get_by_text(f"Saved {flag.key}'s values in Beta")).to_be_visible()
    assert FlagSetting.objects.get(flag=flag, environment=beta).rules == [
        {
            "match": "all",
            "conditions": [
                {"attribute": "email", "operator": "ends_with", "value": "@example.com"},
                {"attribute": "appVersion", "operator": "semver_gte", "value": "2.4.0"},
            ],
            "serve": {"variant": "on"},
        }
    ]
    context.close()
