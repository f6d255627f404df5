"""The rule builder on the flag page: errors at their inputs, buttons with and without htmx, who
may edit, the JSON escape hatch, and the page's query count."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from flagdash.audit.models import AuditEvent
from flagdash.flags import services
from flagdash.flags.models import FlagSetting
from tests.factories import make_application, make_environment, make_flag
from tests.flags.html_form import form_buttons, read_form
from tests.flags.test_rule_builder import P, builder_data, card

pytestmark = pytest.mark.django_db

STAFF = {
    "name": "Staff",
    "match": "all",
    "conditions": [{"attribute": "email", "operator": "ends_with", "value": "@example.com"}],
    "serve": {"variant": "off"},
}
SALVADOR = {
    "name": "El Salvador",
    "match": "all",
    "conditions": [{"attribute": "country", "operator": "in", "value": ["SV"]}],
    "serve": {"variant": "on"},
}


def page_url(flag, env=None):
    url = reverse("flag_detail", args=[flag.application.key, flag.key])
    return f"{url}?env={env.key}" if env else url


def save_url(flag, env):
    return reverse("flag_setting_save", args=[flag.application.key, flag.key, env.key])


def setting(flag, env) -> FlagSetting:
    return FlagSetting.objects.get(flag=flag, environment=env)


def set_rules(flag, env, rules):
    return services.flag_setting_update(
        actor=None,
        flag=flag,
        environment=env,
        expected_revision=setting(flag, env).revision,
        rules=rules,
    )


def state():
    return (
        list(FlagSetting.objects.order_by("id").values_list("rules", "revision")),
        AuditEvent.objects.count(),
    )


def error_at(html: str, input_id: str) -> str:
    """The error list shown right after an input, which the input points to."""
    tag = re.search(
        rf'<(?:input|select|textarea|output)[^>]*id="{re.escape(input_id)}"[^>]*>', html
    )
    assert tag, f"no input {input_id}"
    if not tag.group(0).startswith("<output"):
        assert f'{input_id}-errors"' in tag.group(0)  # aria-describedby
        assert 'aria-invalid="true"' in tag.group(0)
    errors = re.search(
        rf'<ul class="errorlist" id="{re.escape(input_id)}-errors">(.*?)</ul>', html, re.S
    )
    assert errors, f"no errors at {input_id}"
    return errors.group(1)


def builder_of(response) -> dict[str, str]:
    return read_form(f'<form action="/values/">{response.content.decode()}</form>')


@pytest.fixture
def with_rules(flag, beta):
    set_rules(flag, beta, [STAFF, SALVADOR])
    return flag


# --- errors at their inputs; nothing saved ------------------------------------------------------


def test_every_rule_error_is_shown_at_its_input_with_a_summary_and_nothing_is_saved(
    editor_client, flag, beta
):
    before = state()
    data = builder_data(
        setting(flag, beta).revision,
        card(
            ("email", "matches", "text", "(["),
            ("1 bad", "equals", "text", "x"),
            name="x" * 101,
        ),
        card(("plan", "equals", "text", "pro"), serve="split", split=(("on", "10"), ("off", "80"))),
        card(("appVersion", "semver_gte", "text", "two")),
    )
    response = editor_client.post(save_url(flag, beta), data)
    html = response.content.decode()
    assert response.status_code == 422
    assert "at most 100 characters" in error_at(html, f"id_{P}rule-0-name")
    assert "Not a valid regular expression" in error_at(html, f"id_{P}rule-0-cond-0-value")
    assert "context key" in error_at(html, f"id_{P}rule-0-cond-1-attribute")
    assert "add up to 90, not 100" in error_at(html, f"id_{P}rule-1-split-total")
    assert "not a semantic version" in error_at(html, f"id_{P}rule-2-cond-0-value")
    summary = re.search(r'<div class="alert alert-error rules-summary".*?</div>', html, re.S)
    assert summary and "5 problems in the rules" in summary.group(0)
    links = re.findall(r'<li><a href="#([^"]+)">([^<]+)</a>', summary.group(0))
    assert links == [
        (f"id_{P}rule-0-cond-0-value", "Rule 1, condition 1, value"),
        (f"id_{P}rule-0-cond-1-attribute", "Rule 1, condition 2, attribute"),
        (f"id_{P}rule-0-name", "Rule 1, name"),
        (f"id_{P}rule-1-split-total", "Rule 2, percentage split"),
        (f"id_{P}rule-2-cond-0-value", "Rule 3, condition 1, value"),
    ]
    assert "Nothing was saved: the targeting rules have 5 problems" in html
    assert state() == before
    form = read_form(html)  # what the user typed is all still there
    assert form[f"{P}rule-0-name"] == "x" * 101
    assert form[f"{P}rule-1-split-1-weight"] == "80"


def test_a_value_that_is_not_a_number_is_refused_before_the_service(editor_client, flag, beta):
    before = state()
    data = builder_data(setting(flag, beta).revision, card(("age", "gte", "text", "eighteen")))
    response = editor_client.post(save_url(flag, beta), data, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 422
    assert "<html" not in html and 'id="values"' in html  # the values section, as any save
    assert "Enter a number." in error_at(html, f"id_{P}rule-0-cond-0-value")
    assert state() == before


def test_a_rule_serving_a_renamed_variant_shows_the_error_at_its_variant(editor_client, app, beta):
    colors = make_flag(
        app,
        "colors",
        kind="multivariant",
        value_type="string",
        variants=[{"name": "red", "value": "r"}, {"name": "blue", "value": "b"}],
        default_variant="red",
    )
    set_rules(colors, beta, [{**SALVADOR, "serve": {"variant": "blue"}}])
    data = read_form(editor_client.get(page_url(colors, beta)).content.decode())
    data[f"{P}variant_1_name"] = "navy"
    before = state()
    response = editor_client.post(save_url(colors, beta), data)
    html = response.content.decode()
    assert response.status_code == 422
    assert "Unknown variant &#x27;blue&#x27;" in error_at(html, f"id_{P}rule-0-variant")
    assert state() == before


def test_a_valid_builder_post_is_saved_audited_and_described(editor_client, flag, beta):
    data = builder_data(
        setting(flag, beta).revision,
        card(("country", "in", "text", "SV, US"), name="Central America"),
    )
    response = editor_client.post(save_url(flag, beta), data)
    assert response.status_code == 302
    rules = setting(flag, beta).rules
    assert rules == [
        {
            "name": "Central America",
            "match": "all",
            "conditions": [{"attribute": "country", "operator": "in", "value": ["SV", "US"]}],
            "serve": {"variant": "on"},
        }
    ]
    assert AuditEvent.objects.filter(action="setting.updated").latest("id").after["rules"] == rules
    html = editor_client.get(page_url(flag, beta)).content.decode()
    assert "country is one of “SV”, “US” → on" in html  # the summary line above the builder
    assert "Everyone else: <strong>on</strong> while the flag is on." in html


# --- buttons: re-render with a row added, removed or moved; nothing saved ----------------------


def two_cards(flag, beta):
    return builder_data(
        setting(flag, beta).revision,
        card(("email", "ends_with", "text", "@x.com"), ("plan", "equals", "text", "pro"), name="A"),
        card(("country", "equals", "text", "SV"), name="B"),
    )


@pytest.mark.parametrize(
    ("action", "check"),
    [
        ("add_rule", lambda d: d[f"{P}rule-TOTAL_FORMS"] == "3" and d[f"{P}rule-2-name"] == ""),
        (
            "remove_rule-0",
            lambda d: d[f"{P}rule-TOTAL_FORMS"] == "1" and d[f"{P}rule-0-name"] == "B",
        ),
        ("move_up-1", lambda d: (d[f"{P}rule-0-name"], d[f"{P}rule-1-name"]) == ("B", "A")),
        ("move_down-0", lambda d: (d[f"{P}rule-0-name"], d[f"{P}rule-1-name"]) == ("B", "A")),
        ("add_condition-1", lambda d: d[f"{P}rule-1-cond-TOTAL_FORMS"] == "2"),
        (
            "remove_condition-0-0",
            lambda d: (
                d[f"{P}rule-0-cond-TOTAL_FORMS"] == "1"
                and d[f"{P}rule-0-cond-0-attribute"] == "plan"
            ),
        ),
        (
            "remove_condition-1-0",  # the last row: an empty one takes its place
            lambda d: (
                d[f"{P}rule-1-cond-TOTAL_FORMS"] == "1" and d[f"{P}rule-1-cond-0-attribute"] == ""
            ),
        ),
        (
            "remove_split-0-1",
            lambda d: (
                d[f"{P}rule-0-split-TOTAL_FORMS"] == "1" and d[f"{P}rule-0-split-0-variant"] == "on"
            ),
        ),
        ("move_up-0", lambda d: d[f"{P}rule-0-name"] == "A"),  # nothing above: unchanged
        ("remove_rule-9", lambda d: d[f"{P}rule-TOTAL_FORMS"] == "2"),  # no such rule
        ("nonsense", lambda d: d[f"{P}rule-TOTAL_FORMS"] == "2"),
    ],
)
def test_builder_buttons_over_htmx_swap_only_the_rules_and_save_nothing(
    editor_client, flag, beta, action, check
):
    before = state()
    response = editor_client.post(
        save_url(flag, beta),
        {**two_cards(flag, beta), "rules_action": action},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.lstrip().startswith('<div class="rule-builder" id="rules-beta"')
    assert "errorlist" not in html  # half-filled rows are not errors yet
    assert check(builder_of(response))
    assert state() == before


def test_adding_a_split_row_picks_an_unused_variant_and_focuses_its_percentage(
    editor_client, flag, beta
):
    data = builder_data(
        setting(flag, beta).revision, card(("a", "equals", "text", "x"), split=(("off", ""),))
    )
    response = editor_client.post(
        save_url(flag, beta),
        {**data, "rules_action": "add_split-0"},
        headers={"HX-Request": "true"},
    )
    form = builder_of(response)
    assert (form[f"{P}rule-0-split-1-variant"], form[f"{P}rule-0-serve"]) == ("on", "split")
    assert re.search(rf'id="id_{P}rule-0-split-1-weight"[^>]* autofocus', response.content.decode())


def test_changing_the_operator_re_renders_the_value_input_for_it(editor_client, flag, beta):
    data = builder_data(setting(flag, beta).revision, card(("country", "in", "text", "SV, US")))
    html = editor_client.post(
        save_url(flag, beta), {**data, "rules_action": "refresh"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert re.search(rf'<textarea name="{P}rule-0-cond-0-value"', html)
    assert f'name="{P}rule-0-cond-0-type"' in html  # lists of texts, numbers or true/false
    data[f"{P}rule-0-cond-0-operator"] = "after"
    data[f"{P}rule-0-cond-0-value"] = ""
    html = editor_client.post(
        save_url(flag, beta), {**data, "rules_action": "refresh"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert re.search(rf'<input type="datetime-local" step="1" name="{P}rule-0-cond-0-value"', html)
    assert f'name="{P}rule-0-cond-0-type"' not in html


def test_builder_buttons_work_without_javascript(editor_client, flag, beta):
    before = state()
    data = {**two_cards(flag, beta), f"{P}rule-0-name": "A, renamed", "rules_action": "add_rule"}
    response = editor_client.post(save_url(flag, beta), data)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html
    form = read_form(html)
    assert form[f"{P}rule-TOTAL_FORMS"] == "3"
    assert form[f"{P}rule-0-name"] == "A, renamed"  # nothing typed is lost
    assert form[f"{P}rule-0-cond-1-value"] == "pro"
    assert re.search(rf'id="id_{P}rule-2-name"[^>]* autofocus', html)
    assert state() == before
    # Saving the re-rendered form (the new card left empty) saves both rules.
    response = editor_client.post(save_url(flag, beta), form)
    assert response.status_code == 302
    assert [r["name"] for r in setting(flag, beta).rules] == ["A, renamed", "B"]


def test_every_builder_button_has_a_name_that_says_what_it_does(editor_client, with_rules, beta):
    html = editor_client.get(page_url(with_rules, beta)).content.decode()
    labels = {
        b["value"]: re.sub(r"<[^>]+>", "", m)
        for b, m in zip(
            [b for b in form_buttons(html) if b.get("name") == "rules_action"],
            re.findall(r'<button type="submit" name="rules_action"[^>]*>(.*?)</button>', html),
            strict=True,
        )
    }
    assert labels == {
        "remove_condition-0-0": "Remove condition 1 of rule 1",
        "add_condition-0": "Add condition to rule 1",
        "remove_split-0-0": "Remove split row 1 of rule 1",
        "remove_split-0-1": "Remove split row 2 of rule 1",
        "move_down-0": "Move rule 1 down",
        "remove_rule-0": "Remove rule 1",
        "remove_condition-1-0": "Remove condition 1 of rule 2",
        "add_condition-1": "Add condition to rule 2",
        "remove_split-1-0": "Remove split row 1 of rule 2",
        "remove_split-1-1": "Remove split row 2 of rule 2",
        "move_up-1": "Move rule 2 up",
        "remove_rule-1": "Remove rule 2",
        "add_rule": "Add rule",
    }
    # Every input has a label; every rule is a fieldset with a legend.
    for field_id in re.findall(r'<(?:input|select|textarea)[^>]* id="([^"]+)"', html):
        if "rule" in field_id and "TOTAL" not in field_id:
            assert f'for="{field_id}"' in html, field_id
    assert html.count("<legend>Rule 1</legend>") == 1 and "<legend>Rule 1 serves</legend>" in html
    # Enter in a text field submits the form with its first submit button: a plain Save.
    first = form_buttons(html)[0]
    assert "name" not in first and first["aria-hidden"] == "true"


# --- who may edit --------------------------------------------------------------------------------


def test_a_viewer_sees_the_rules_read_only(viewer_client, with_rules, beta):
    html = viewer_client.get(page_url(with_rules, beta)).content.decode()
    assert "Salvador" in html and f'name="{P}rule-1-name"' in html
    values = re.search(r'<section class="panel" id="values".*?</section>', html, re.S).group(0)
    assert "<fieldset disabled>" in values  # every input of the form is disabled
    assert 'name="rules_action"' not in html
    assert "<datalist" not in html
    posted = read_form(html)  # disabled inputs are not posted
    assert set(posted) == {"csrfmiddlewaretoken", f"{P}revision"}


@pytest.mark.parametrize(
    ("who", "env_name", "status"),
    [
        ("viewer", "beta", 403),
        ("outsider", "beta", 403),
        ("editor", "production", 403),
        ("admin", "production", 200),
    ],
)
def test_builder_buttons_need_the_right_to_edit_the_environment(
    request, who, env_name, status, flag, envs
):
    client = request.getfixturevalue(f"{who}_client")
    env = request.getfixturevalue(env_name)
    prefix = f"env-{env.key}-"
    data = builder_data(
        setting(flag, env).revision, card(("a", "equals", "text", "x")), prefix=prefix
    )
    before = state()
    for headers in ({}, {"HX-Request": "true"}):
        response = client.post(
            save_url(flag, env), {**data, "rules_action": "add_rule"}, headers=headers
        )
        assert response.status_code == status
    assert state() == before


def test_an_editor_sees_production_rules_read_only(editor_client, flag, production):
    set_rules(flag, production, [STAFF])
    html = editor_client.get(page_url(flag, production)).content.decode()
    assert "is protected: only admins can change it" in html
    assert 'name="rules_action"' not in html
    assert 'value="Staff"' in html


# --- Edit as JSON ------------------------------------------------------------------------------


def test_changed_json_wins_over_untouched_cards(editor_client, with_rules, beta):
    data = read_form(editor_client.get(page_url(with_rules, beta)).content.decode())
    data[f"{P}rules"] = json.dumps([SALVADOR])
    response = editor_client.post(save_url(with_rules, beta), data)
    assert response.status_code == 302
    assert setting(with_rules, beta).rules == [SALVADOR]


def test_editing_both_the_cards_and_the_json_is_refused_not_half_saved(
    editor_client, with_rules, beta
):
    before = setting(with_rules, beta)
    data = read_form(editor_client.get(page_url(with_rules, beta)).content.decode())
    data[f"{P}rule-0-name"] = "edited in the cards"
    data[f"{P}rules"] = json.dumps([SALVADOR])
    response = editor_client.post(save_url(with_rules, beta), data)
    assert response.status_code == 422
    html = response.content.decode()
    assert "You changed the rules both in the builder and here as JSON" in html
    after = setting(with_rules, beta)
    assert after.rules == before.rules and after.revision == before.revision


def test_unchanged_json_leaves_the_cards_in_charge_even_reformatted(
    editor_client, with_rules, beta
):
    data = read_form(editor_client.get(page_url(with_rules, beta)).content.decode())
    assert json.loads(data[f"{P}rules"]) == [STAFF, SALVADOR]
    assert data[f"{P}rules_base"] == data[f"{P}rules"].replace("\r\n", "\n")
    data[f"{P}rules"] = json.dumps([STAFF, SALVADOR], separators=(",", ":"))
    data[f"{P}rule-0-name"] = "Staff only"
    assert editor_client.post(save_url(with_rules, beta), data).status_code == 302
    assert [r["name"] for r in setting(with_rules, beta).rules] == ["Staff only", "El Salvador"]


def test_broken_json_is_an_error_at_the_json_field_and_keeps_the_cards(
    editor_client, with_rules, beta
):
    data = read_form(editor_client.get(page_url(with_rules, beta)).content.decode())
    data[f"{P}rules"] = '[{"name": "oops"'
    data[f"{P}rule-0-name"] = "typed in the cards"
    before = state()
    response = editor_client.post(save_url(with_rules, beta), data)
    html = response.content.decode()
    assert response.status_code == 422
    assert '<details class="rules-json" open>' in html
    json_field = html[html.index(f'for="id_{P}rules"') :]
    assert "Not valid JSON" in json_field[: json_field.index("</div>")]
    assert "If you change the JSON here, it replaces the rules above" in html
    assert read_form(html)[f"{P}rule-0-name"] == "typed in the cards"
    assert read_form(html)[f"{P}rules"] == '[{"name": "oops"'  # kept as typed
    assert state() == before


def test_after_a_button_the_json_follows_the_cards(editor_client, with_rules, beta):
    data = read_form(editor_client.get(page_url(with_rules, beta)).content.decode())
    data[f"{P}rule-1-name"] = "Salvador"
    response = editor_client.post(
        save_url(with_rules, beta),
        {**data, "rules_action": "move_up-1"},
        headers={"HX-Request": "true"},
    )
    form = builder_of(response)
    assert [r.get("name") for r in json.loads(form[f"{P}rules"])] == ["Salvador", "Staff"]
    assert form[f"{P}rules_base"] == form[f"{P}rules"].replace("\r\n", "\n")


# --- attribute suggestions and the query count ---------------------------------------------------


def test_attribute_suggestions_come_from_the_applications_rules(
    editor_client, with_rules, beta, production
):
    other_flag = make_flag(with_rules.application, "other")
    plan = [{"attribute": "plan", "operator": "equals", "value": "pro"}]
    set_rules(other_flag, production, [{**STAFF, "conditions": plan}])
    elsewhere = make_application("shop", "Shop")
    shop_beta = make_environment(elsewhere, "beta", "Beta")
    shop_flag = make_flag(elsewhere, "shop-flag")
    secret = [{"attribute": "secret", "operator": "equals", "value": "x"}]
    set_rules(shop_flag, shop_beta, [{**STAFF, "conditions": secret}])

    html = editor_client.get(page_url(with_rules, beta)).content.decode()
    datalist = re.search(r'<datalist id="rule-attributes-beta"([^>]*)>(.*?)</datalist>', html, re.S)
    url = reverse("rule_attribute_options", args=["checkout"])
    assert f'hx-get="{url}"' in datalist.group(1)
    assert re.findall(r'value="([^"]+)"', datalist.group(2)) == [
        "$now",
        "targetingKey",
        "country",
        "email",
    ]
    options = editor_client.get(url).content.decode()
    assert re.findall(r'value="([^"]+)"', options) == [
        "$now",
        "targetingKey",
        "country",
        "email",
        "plan",
    ]


def test_outsiders_get_no_attribute_suggestions(outsider_client, with_rules):
    url = reverse("rule_attribute_options", args=["checkout"])
    assert outsider_client.get(url).status_code == 403


def _bulk_rules(count: int) -> list[dict]:
    return [
        {
            "name": f"rule {i}",
            "match": "any",
            "conditions": [
                {"attribute": f"attr{j}", "operator": "in", "value": ["a", "b"]} for j in range(5)
            ],
            "serve": {"split": [{"variant": "on", "weight": 50}, {"variant": "off", "weight": 50}]},
        }
        for i in range(count)
    ]


@pytest.mark.parametrize("who", ["viewer", "editor"])
def test_the_builder_adds_no_query_to_the_flag_page(request, who, flag, beta, production):
    """Suggestions for attributes of other flags load when an attribute input gets the focus."""
    client = request.getfixturevalue(f"{who}_client")
    url = page_url(flag, beta)
    client.get(url)  # the session settles

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured.captured_queries)

    without_rules = queries()
    set_rules(flag, beta, _bulk_rules(20))
    set_rules(flag, production, _bulk_rules(3))
    assert queries() == without_rules  # (15 here, as before the builder)
