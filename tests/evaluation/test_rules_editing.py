"""Targeting rules as people edit them on the flag page (the builder and the JSON field): text
that cannot be stored and dates that cannot be written out are refused at the field, with a
message, and nothing is saved; never a server error. (The REST API does not write rules.)"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from flagdash.audit.models import AuditEvent
from flagdash.flags.models import FlagSetting
from tests.flags.html_form import read_form
from tests.flags.test_rule_builder import P, builder_data, card

pytestmark = pytest.mark.django_db


def page_url(flag, env):
    return reverse("flag_detail", args=[flag.application.key, flag.key]) + f"?env={env.key}"


def save_url(flag, env):
    return reverse("flag_setting_save", args=[flag.application.key, flag.key, env.key])


def state():
    return (
        list(FlagSetting.objects.order_by("id").values_list("rules", "revision")),
        AuditEvent.objects.count(),
    )


def json_field_errors(html: str) -> str:
    """The text of the "All rules as JSON" field's block (its errors are shown in it)."""
    block = html[html.index(f'for="id_{P}rules"') :]
    return block[: block.index("</div>")]


def rules_json(operator_and_value: str, name_json: str = '"Staff"') -> str:
    """Rules as a person types them in the JSON field (escapes such as \\ud800 kept as typed)."""
    condition = '{"attribute": "email", "operator": ' + operator_and_value + "}"
    return f'[{{"name": {name_json}, "conditions": [{condition}], "serve": {{"variant": "on"}}}}]'


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (rules_json('"equals", "value": "\\ud800"'), "half of a UTF-16 surrogate pair"),
        (rules_json('"in", "value": ["ok", "x\\udfff"]'), "half of a UTF-16 surrogate pair"),
        (rules_json('"matches", "value": "^\\udc00$"'), "half of a UTF-16 surrogate pair"),
        (rules_json('"equals", "value": "x"', '"Staff \\ud83d"'), "the name contains half"),
        (rules_json('"contains", "value": "a\\u0000b"'), "the value contains a NUL character"),
        (rules_json('"before", "value": "0000-01-01"'), "is out of range: dates run from"),
        (rules_json('"after", "value": "10000-01-01"'), "is out of range: dates run from"),
        (rules_json('"before", "value": "9999-12-31T23:59:59-23:00"'), "is out of range"),
        (rules_json('"before", "value": 1e300'), "1e+300 is out of range"),
        (rules_json('"after", "value": 253402300800'), "253402300800 is out of range"),
        (rules_json('"after", "value": 1' + "0" * 400), "a number this large is out of range"),
        (rules_json('"matches", "value": "([a-z]+"'), "Not a valid regular expression"),
        (rules_json('"equals", "value": "x"').replace('"on"', '"maybe"'), "unknown variant"),
    ],
)
def test_rules_typed_as_json_that_cannot_be_saved_are_an_error_at_the_json_field(
    editor_client, flag, beta, typed, expected
):
    data = read_form(editor_client.get(page_url(flag, beta)).content.decode())
    data[f"{P}rules"] = typed
    before = state()
    response = editor_client.post(save_url(flag, beta), data)
    assert response.status_code == 422
    html = response.content.decode()
    assert expected in json_field_errors(html)
    assert read_form(html)[f"{P}rules"] == typed  # kept as typed, escapes and all
    assert state() == before


def test_a_split_that_does_not_add_up_is_an_error_at_the_json_field(editor_client, flag, beta):
    data = read_form(editor_client.get(page_url(flag, beta)).content.decode())
    split = [{"variant": "on", "weight": 60}, {"variant": "off", "weight": 30}]
    data[f"{P}rules"] = json.dumps(
        [
            {
                "conditions": [{"attribute": "a", "operator": "equals", "value": 1}],
                "serve": {"split": split},
            }
        ]
    )
    response = editor_client.post(save_url(flag, beta), data)
    assert response.status_code == 422
    assert "add up to 90, not 100" in json_field_errors(response.content.decode())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0000-01-01", "is out of range: dates run from 0001-01-01 to 9999-12-31"),
        ("10000-01-01", "is out of range"),
        ("9999-12-31T23:59:59-23:00", "is out of range"),
        ("2026-02-30", "is not a date"),
    ],
)
def test_an_impossible_date_in_the_builder_is_an_error_at_its_value(
    editor_client, flag, beta, value, expected
):
    revision = FlagSetting.objects.get(flag=flag, environment=beta).revision
    data = builder_data(revision, card(("signup", "before", "text", value)))
    before = state()
    response = editor_client.post(save_url(flag, beta), data)
    html = response.content.decode()
    assert response.status_code == 422
    errors = html[html.index(f'id="id_{P}rule-0-cond-0-value-errors"') :]
    assert expected in errors[: errors.index("</ul>")]
    assert state() == before
