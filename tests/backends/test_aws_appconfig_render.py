"""flagdash's version document as AWS's feature-flag document: exact output, AWS's published rules
checked locally (one line per problem), and the way back for ``current()``."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from flagdash.backends.aws_appconfig import (
    DATE_PATTERN,
    document_bytes,
    parse_document,
    render_document,
)
from flagdash.backends.base import PermanentBackendError
from tests.backends.aws_schema import FEATURE_FLAGS_SCHEMA
from tests.fakes.aws_appconfig import feature_flag_problems


def entry(**overrides: Any) -> dict[str, Any]:
    """One flag as flagdash's version document holds it."""
    base: dict[str, Any] = {
        "name": "Allow bitcoin at checkout",
        "description": "",
        "kind": "boolean",
        "value_type": "boolean",
        "short_term": False,
        "remove_by": None,
        "attributes": {},
        "enabled": False,
        "attribute_values": {},
    }
    base.update(overrides)
    return base


def document(**flags: dict[str, Any]) -> dict[str, Any]:
    return {"schema": 1, "application": "checkout", "environment": "beta", "flags": flags}


def attribute(type: str, **constraint: Any) -> dict[str, Any]:
    required = constraint.pop("required", False)
    description = constraint.pop("description", "")
    return {
        "type": type,
        "description": description,
        "required": required,
        "constraint": constraint,
    }


def refused(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(PermanentBackendError) as caught:
        render_document(doc)
    assert "nothing was sent to AWS" in caught.value.message
    return caught.value.details


def test_a_boolean_flag_is_exactly_awss_document():
    rendered = render_document(
        document(
            **{
                "allow-bitcoin": entry(
                    description="Lets shoppers pay in BTC",
                    short_term=True,
                    remove_by="2027-03-31",
                    enabled=True,
                )
            }
        )
    )
    assert rendered == {
        "version": "1",
        "flags": {
            "allow-bitcoin": {
                "name": "Allow bitcoin at checkout",
                "description": "Lets shoppers pay in BTC",
                "_deprecation": {"status": "planned", "date": "2027-03-31"},
            }
        },
        "values": {"allow-bitcoin": {"enabled": True}},
    }
    assert document_bytes(rendered) == (
        b'{"flags":{"allow-bitcoin":{"_deprecation":{"date":"2027-03-31","status":"planned"},'
        b'"description":"Lets shoppers pay in BTC","name":"Allow bitcoin at checkout"}},'
        b'"values":{"allow-bitcoin":{"enabled":true}},"version":"1"}'
    )
    jsonschema.validate(rendered, FEATURE_FLAGS_SCHEMA)


def test_a_long_lived_flag_and_a_flag_without_remove_by_have_no_deprecation():
    rendered = render_document(
        document(a=entry(short_term=False, remove_by="2027-01-01"), b=entry(short_term=True))
    )
    assert "_deprecation" not in rendered["flags"]["a"]
    assert "_deprecation" not in rendered["flags"]["b"]
    assert "description" not in rendered["flags"]["a"]  # empty: left out


def test_every_attribute_type_maps_to_awss_constraints():
    attributes = {
        "color": attribute("string", pattern="^#[0-9a-f]{6}$", description="Button colour"),
        "plan": attribute("string", enum=["free", "pro"], required=True),
        "limit": attribute("number", minimum=1, maximum=10),
        "beta": attribute("boolean"),
        "regions": attribute("string_list", enum=["eu", "us"]),
        "weights": attribute("number_list", minimum=0),
        "launch": attribute("date"),
    }
    values = {
        "color": "#00ff00",
        "plan": "pro",
        "limit": 3,
        "beta": False,
        "regions": ["eu"],
        "weights": [1, 2.5],
        "launch": "2027-01-15",
    }
    rendered = render_document(
        document(f=entry(attributes=attributes, attribute_values=values, enabled=True))
    )
    assert rendered["flags"]["f"]["attributes"] == {
        "color": {
            "description": "Button colour",
            "constraints": {"type": "string", "pattern": "^#[0-9a-f]{6}$"},
        },
        "plan": {"constraints": {"type": "string", "enum": ["free", "pro"], "required": True}},
        "limit": {"constraints": {"type": "number", "minimum": 1, "maximum": 10}},
        "beta": {"constraints": {"type": "boolean"}},
        "regions": {
            "constraints": {"type": "array", "elements": {"type": "string", "enum": ["eu", "us"]}}
        },
        "weights": {"constraints": {"type": "array", "elements": {"type": "number", "minimum": 0}}},
        "launch": {"constraints": {"type": "string", "pattern": DATE_PATTERN}},
    }
    assert rendered["values"]["f"] == {"enabled": True, **values}
    jsonschema.validate(rendered, FEATURE_FLAGS_SCHEMA)
    assert feature_flag_problems(rendered) == []  # and the fake, as AWS, accepts it


def test_unset_attribute_values_are_left_out():
    rendered = render_document(
        document(
            f=entry(
                attributes={"a": attribute("string"), "b": attribute("number")},
                attribute_values={"a": None, "b": 4, "gone": "x"},
            )
        )
    )
    assert rendered["values"]["f"] == {"enabled": False, "b": 4}


def test_a_multi_variant_flag_carries_its_default_variant():
    rendered = render_document(
        document(
            theme=entry(
                name="Checkout theme",
                kind="multivariant",
                value_type="object",
                attributes={"size": attribute("number")},
                attribute_values={"size": 2},
                enabled=True,
                variants=[
                    {"name": "light", "value": {"bg": "#fff"}},
                    {"name": "dark", "value": {"bg": "#000"}},
                ],
                default_variant="dark",
            ),
            limit=entry(
                kind="multivariant",
                value_type="integer",
                variants=[{"name": "low", "value": 5}, {"name": "high", "value": 50}],
                default_variant="high",
            ),
        )
    )
    theme = rendered["values"]["theme"]
    # The default variant only, as plain attributes every client reads; AWS's own ``_variants``
    # (shape unconfirmed, evaluated only by the AppConfig Agent) are not written.
    assert theme == {
        "enabled": True,
        "size": 2,
        "variantValue": '{"bg":"#000"}',
        "variantName": "dark",
    }
    assert rendered["flags"]["theme"]["attributes"]["variantValue"]["constraints"] == {
        "type": "string"
    }
    assert rendered["flags"]["theme"]["attributes"]["variantName"]["constraints"] == {
        "type": "string"
    }
    assert rendered["values"]["limit"]["variantName"] == "high"
    assert all("_variants" not in value for value in rendered["values"].values())
    assert rendered["flags"]["limit"]["attributes"]["variantValue"]["constraints"] == {
        "type": "number"
    }
    assert rendered["values"]["limit"]["variantValue"] == 50
    jsonschema.validate(rendered, FEATURE_FLAGS_SCHEMA)
    assert feature_flag_problems(rendered) == []


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        ({"Bad.Key": entry()}, "flag Bad.Key: the key does not match AWS's pattern"),
        ({"f": entry(name="x" * 65)}, "flag f: the name must be 1–64 characters on one line"),
        ({"f": entry(name="two\nlines")}, "flag f: the name must be 1–64 characters on one line"),
        ({"f": entry(description="d" * 1025)}, "flag f: the description is longer than 1024"),
        (
            {"f": entry(attributes={f"a{n}": attribute("boolean") for n in range(26)})},
            "flag f: 26 attributes; AWS allows at most 25",
        ),
        (
            {"f": entry(attributes={"Bad": attribute("string")})},
            "flag f, attribute Bad: the name does not match AWS's key pattern",
        ),
        (
            {"f": entry(attributes={"a": attribute("string", pattern="x" * 1025)})},
            "flag f, attribute a: the pattern is longer than AWS's 1024 characters",
        ),
        (
            {"f": entry(attributes={"a": attribute("string", enum=[str(n) for n in range(101)])})},
            "flag f, attribute a: AWS allows at most 100 allowed values",
        ),
        (
            {"f": entry(attributes={"a": attribute("string", pattern="x", enum=["x"])})},
            "flag f, attribute a: AWS takes a pattern or allowed values, not both",
        ),
        (
            {"f": entry(attributes={"a": attribute("number", minimum=1.5)})},
            "flag f, attribute a: AWS takes whole numbers as minimum and maximum",
        ),
        (
            {"f": entry(attributes={"a": attribute("money")})},
            "flag f, attribute a: AWS has no attribute type for 'money'",
        ),
        (
            {"f": entry(attributes={"a": attribute("string")}, attribute_values={"a": "v" * 1025})},
            "flag f, attribute a: AWS takes string values of at most 1024 characters",
        ),
        (
            {
                "f": entry(
                    attributes={"a": attribute("string_list")},
                    attribute_values={"a": ["ok", "v" * 1025]},
                )
            },
            "flag f, attribute a: AWS takes string values of at most 1024 characters",
        ),
        (
            {
                "f": entry(
                    kind="multivariant",
                    value_type="string",
                    attributes={f"a{n}": attribute("boolean") for n in range(24)},
                    variants=[{"name": "on", "value": "x"}],
                    default_variant="on",
                )
            },
            "flag f: 26 attributes; AWS allows at most 25",
        ),
        (
            {
                "f": entry(
                    kind="multivariant",
                    value_type="string",
                    variants=[{"name": "on", "value": "x"}],
                    default_variant="off",
                )
            },
            "flag f: the default variant 'off' is not one of its variants",
        ),
    ],
)
def test_each_broken_aws_rule_is_one_line_naming_the_flag(flags, line):
    details = refused(document(**flags))
    assert len(details) == 1 and details[0].startswith(line), details


def test_every_problem_is_listed_not_only_the_first():
    details = refused(
        document(
            **{
                "Bad.Key": entry(),
                "f": entry(description="d" * 2000, attributes={"a": attribute("boolean")}),
            }
        )
    )
    assert len(details) == 2


def test_a_document_over_awss_size_limit_is_refused():
    big = {f"flag-{n}": entry(description="d" * 1000) for n in range(1100)}
    details = refused(document(**big))
    assert details == ["the document is 1175 KB; AWS stores at most 1024 KB"]


def test_what_aws_serves_reads_back_as_flagdash_flags():
    original = document(
        f=entry(
            description="Pay in BTC",
            short_term=True,
            remove_by="2027-03-31",
            enabled=True,
            attributes={
                "color": attribute("string", pattern="^#[0-9a-f]{6}$"),
                "limit": attribute("number", minimum=1, required=True),
                "regions": attribute("string_list", enum=["eu"]),
                "launch": attribute("date"),
            },
            attribute_values={
                "color": "#000000",
                "limit": 2,
                "regions": ["eu"],
                "launch": "2027-01-01",
            },
        )
    )
    back = parse_document(render_document(original), "checkout", "beta")
    assert back == original


def test_a_multi_variant_flag_reads_back_with_its_default_variant():
    original = document(
        limit=entry(
            kind="multivariant",
            value_type="integer",
            enabled=True,
            variants=[{"name": "low", "value": 5}, {"name": "high", "value": 50}],
            default_variant="high",
        )
    )
    back = parse_document(render_document(original), "checkout", "beta")["flags"]["limit"]
    assert back["kind"] == "multivariant" and back["value_type"] == "integer"
    assert back["variants"] == [{"name": "high", "value": 50}] and back["default_variant"] == "high"


def test_a_document_written_by_an_earlier_flagdash_with_variants_still_reads_back():
    """Earlier versions wrote the default variant's name in ``_variants``; what AWS still serves
    from them reads back with that name."""
    rendered = render_document(
        document(
            limit=entry(
                kind="multivariant",
                value_type="integer",
                enabled=True,
                variants=[{"name": "low", "value": 5}, {"name": "high", "value": 50}],
                default_variant="high",
            )
        )
    )
    value = rendered["values"]["limit"]
    del value["variantName"]
    del rendered["flags"]["limit"]["attributes"]["variantName"]
    value["_variants"] = [{"name": "high", "enabled": True, "attributeValues": {}}]
    back = parse_document(rendered, "checkout", "beta")["flags"]["limit"]
    assert back["default_variant"] == "high" and back["variants"] == [{"name": "high", "value": 50}]
    assert back["attribute_values"] == {} and back["attributes"] == {}


def test_awss_own_checks_refuse_what_breaks_its_schema():
    """The fake, standing in for AWS, refuses documents the schema refuses (keeps it honest)."""
    good = render_document(document(f=entry(attributes={"n": attribute("number", maximum=3)})))
    broken = copy.deepcopy(good)
    broken["values"]["f"]["n"] = 9
    broken["flags"]["f"]["attributes"]["n"]["constraints"]["pattern"] = "x"
    broken["values"]["ghost"] = {"enabled": True}
    problems = feature_flag_problems(broken)
    locations = sorted(p["Location"] for p in problems)
    assert locations == [
        "/flags/f/attributes/n/constraints/pattern",
        "/values/f/n",
        "/values/ghost",
    ]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, FEATURE_FLAGS_SCHEMA)
