"""Attribute constraints and variants, checked without the database."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from flagdash.flags.models import FlagAttribute
from flagdash.flags.validation import (
    validate_attribute_definition,
    validate_attribute_value,
    validate_attribute_values,
    validate_variants,
)


def attr(**kwargs) -> FlagAttribute:
    kwargs.setdefault("name", "a")
    kwargs.setdefault("enum", [])
    return FlagAttribute(**kwargs)


def codes(exc: ValidationError) -> dict[str, list[str]]:
    return {k: [e.code for e in v] for k, v in exc.error_dict.items()}


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        (attr(type="string", enum=["USD", "BTC"]), "BTC"),
        (attr(type="string", pattern=r"^[A-Z]{3}$"), "EUR"),
        (attr(type="number", minimum=0, maximum=100), 100),
        (attr(type="number", minimum=0, maximum=100), 12.5),
        (attr(type="boolean"), False),
        (attr(type="string_list", pattern=r"^[A-Z]{2}$"), ["US", "CA"]),
        (attr(type="number_list", minimum=1), [1, 2.5]),
        (attr(type="date"), "2026-12-31"),
    ],
)
def test_values_that_meet_the_constraint_are_accepted(attribute, value):
    assert validate_attribute_value(attribute, value) == value


@pytest.mark.parametrize(
    ("attribute", "value", "code"),
    [
        (attr(type="string", enum=["USD", "BTC"]), "EUR", "not_in_enum"),
        (attr(type="string", pattern=r"^[A-Z]{3}$"), "eur", "pattern_mismatch"),
        (attr(type="string"), 5, "wrong_type"),
        (attr(type="string"), "x" * 1025, "too_long"),
        (attr(type="number", minimum=0, maximum=100), 101, "above_maximum"),
        (attr(type="number", minimum=0, maximum=100), -1, "below_minimum"),
        (attr(type="number"), "5", "wrong_type"),
        (attr(type="number"), True, "wrong_type"),
        (attr(type="number"), float("nan"), "wrong_type"),
        (attr(type="boolean"), "true", "wrong_type"),
        (attr(type="string_list", enum=["a"]), ["a", "b"], "not_in_enum"),
        (attr(type="string_list"), "a", "wrong_type"),
        (attr(type="number_list", maximum=3), [1, 4], "above_maximum"),
        (attr(type="date"), "2026-02-30", "invalid_date"),
        (attr(type="date"), "31/12/2026", "wrong_type"),
    ],
)
def test_values_that_break_the_constraint_are_refused_with_a_code(attribute, value, code):
    with pytest.raises(ValidationError) as info:
        validate_attribute_value(attribute, value)
    assert info.value.code == code
    assert info.value.messages[0]


def test_the_error_message_names_the_attribute_and_the_allowed_values():
    with pytest.raises(ValidationError) as info:
        validate_attribute_value(
            attr(name="default-currency", type="string", enum=["USD", "BTC"]), "EUR"
        )
    assert info.value.messages == ["“default-currency” must be one of: USD, BTC."]


def test_unknown_attributes_and_missing_required_values_are_reported_per_field():
    attributes = [attr(name="currency", type="string", required=True)]
    with pytest.raises(ValidationError) as info:
        validate_attribute_values(attributes, {"colour": "red"}, enabled=True)
    assert codes(info.value) == {
        "attribute_values.colour": ["unknown_attribute"],
        "attribute_values.currency": ["required"],
    }


def test_a_disabled_flag_may_lack_required_values():
    attributes = [attr(name="currency", type="string", required=True)]
    assert validate_attribute_values(attributes, {}, enabled=False) == {}


@pytest.mark.parametrize(
    ("definition", "field", "code"),
    [
        ({"type": "number", "pattern": "x"}, "pattern", "not_applicable"),
        ({"type": "string", "pattern": "("}, "pattern", "invalid_regex"),
        ({"type": "string", "pattern": "^a$", "enum": ["a"]}, "enum", "exclusive"),
        ({"type": "string", "enum": ["a", "a"]}, "enum", "duplicate"),
        ({"type": "number", "minimum": 5, "maximum": 1}, "maximum", "invalid_range"),
        ({"type": "string", "minimum": 1}, "minimum", "not_applicable"),
        ({"type": "colour"}, "type", "invalid_choice"),
    ],
)
def test_constraints_that_do_not_fit_the_type_are_refused(definition, field, code):
    full = {"pattern": "", "enum": [], "minimum": None, "maximum": None, **definition}
    with pytest.raises(ValidationError) as info:
        validate_attribute_definition(**full)
    assert codes(info.value)[field] == [code]


def test_variants_are_typed_unique_and_the_default_is_one_of_them():
    cleaned, default = validate_variants(
        "float", [{"name": "low", "value": 1}, {"name": "high", "value": 2.5}], "low"
    )
    assert cleaned == [{"name": "low", "value": 1.0}, {"name": "high", "value": 2.5}]
    assert isinstance(cleaned[0]["value"], float)
    assert default == "low"


@pytest.mark.parametrize(
    ("value_type", "variants", "default", "field", "code"),
    [
        ("string", [], "", "variants", "required"),
        (
            "string",
            [{"name": "a", "value": "x"}, {"name": "a", "value": "y"}],
            "a",
            "variants.1",
            "duplicate",
        ),
        ("integer", [{"name": "a", "value": 1.5}], "a", "variants.0", "wrong_type"),
        ("object", [{"name": "a", "value": [1]}], "a", "variants.0", "wrong_type"),
        ("string", [{"name": "bad name", "value": "x"}], "bad name", "variants.0", "invalid_name"),
        ("string", [{"name": "a", "value": "x"}], "b", "default_variant", "unknown_variant"),
    ],
)
def test_bad_variants_are_refused_at_the_right_field(value_type, variants, default, field, code):
    with pytest.raises(ValidationError) as info:
        validate_variants(value_type, variants, default)
    assert codes(info.value)[field] == [code]
