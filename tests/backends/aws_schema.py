"""AWS's published rules for ``AWS.AppConfig.FeatureFlags`` documents, as a JSON Schema (draft 7)
written for these tests from the AppConfig user guide's type reference: the flag and attribute
key pattern, name and description lengths, at most 25 attributes, the constraint shapes (string:
pattern or enum; number: integer bounds; array of string or number elements; boolean), string
values of at most 1024 characters. Documents flagdash renders are checked with it.

AWS's multi-variant ``_variants`` are left out on purpose: their stored shape is not confirmed
(docs/aws.md), and flagdash does not write them (a multi-variant flag goes as its default
variant, in the attributes ``variantValue`` and ``variantName``), so a document carrying
``_variants`` fails this schema.
"""

from __future__ import annotations

from typing import Any

KEY = r"^[a-z][a-zA-Z\d_-]{0,63}$"
NAME = {"type": "string", "pattern": r"^[^\n]{1,64}$"}
DESCRIPTION = {"type": "string", "maxLength": 1024}
SHORT_STRING = {"type": "string", "maxLength": 1024}


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


STRING_CONSTRAINT = {
    **_closed(
        {
            "type": {"const": "string"},
            "required": {"type": "boolean"},
            "pattern": {"type": "string", "maxLength": 1024, "format": "regex"},
            "enum": {
                "type": "array",
                "maxItems": 100,
                "items": {"anyOf": [SHORT_STRING, {"type": "integer"}]},
            },
        },
        ("type",),
    ),
    "not": {"required": ["pattern", "enum"]},
}
NUMBER_CONSTRAINT = _closed(
    {
        "type": {"const": "number"},
        "required": {"type": "boolean"},
        "minimum": {"type": "integer"},
        "maximum": {"type": "integer"},
    },
    ("type",),
)
ARRAY_CONSTRAINT = _closed(
    {
        "type": {"const": "array"},
        "required": {"type": "boolean"},
        "elements": {"oneOf": [STRING_CONSTRAINT, NUMBER_CONSTRAINT]},
    },
    ("type",),
)
BOOLEAN_CONSTRAINT = _closed(
    {"type": {"const": "boolean"}, "required": {"type": "boolean"}}, ("type",)
)
ATTRIBUTE_VALUE = {
    "oneOf": [
        SHORT_STRING,
        {"type": "number"},
        {"type": "boolean"},
        {"type": "array", "items": SHORT_STRING},
        {"type": "array", "items": {"type": "number"}, "minItems": 1},
    ]
}
ATTRIBUTE_VALUES = {
    "type": "object",
    "maxProperties": 25,
    "patternProperties": {KEY: ATTRIBUTE_VALUE},
    "additionalProperties": False,
}
FLAG = _closed(
    {
        "name": NAME,
        "description": DESCRIPTION,
        "_createdAt": {"type": "string"},
        "_updatedAt": {"type": "string"},
        "_deprecation": _closed(
            {"status": {"enum": ["planned"]}, "date": {"type": "string", "format": "date"}}
        ),
        "attributes": {
            "type": "object",
            "maxProperties": 25,
            "patternProperties": {
                KEY: _closed(
                    {
                        "description": DESCRIPTION,
                        "constraints": {
                            "oneOf": [
                                STRING_CONSTRAINT,
                                NUMBER_CONSTRAINT,
                                ARRAY_CONSTRAINT,
                                BOOLEAN_CONSTRAINT,
                            ]
                        },
                    }
                )
            },
            "additionalProperties": False,
        },
    }
)
VALUE = {
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean"},
        "_createdAt": {"type": "string"},
        "_updatedAt": {"type": "string"},
    },
    "patternProperties": {KEY: ATTRIBUTE_VALUE},
    "additionalProperties": False,
}
FEATURE_FLAGS_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    **_closed(
        {
            "version": {"const": "1"},
            "flags": {
                "type": "object",
                "patternProperties": {KEY: FLAG},
                "additionalProperties": False,
            },
            "values": {
                "type": "object",
                "patternProperties": {KEY: VALUE},
                "additionalProperties": False,
            },
        },
        ("version",),
    ),
}
