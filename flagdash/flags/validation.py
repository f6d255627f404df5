"""Validation of attribute definitions, attribute values and variants.

Every function raises ``django.core.exceptions.ValidationError`` with a code and a message a
person can act on; services turn the errors into field errors (HTML) or coded JSON errors (API).
The limits follow AWS AppConfig's feature-flag document so a valid flag is valid in every backend.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import regex
from django.core.exceptions import ValidationError

from flagdash.flags.models import AttributeType, FlagAttribute, ValueType

MAX_STRING = 1024
MAX_LIST_ITEMS = 100
MAX_ENUM = 100
MAX_ATTRIBUTES = 25
MAX_VARIANTS = 20
MAX_OBJECT_BYTES = 8192
INT64 = 2**63
MAX_OBJECT_DEPTH = 32
# Patterns are written by editors and run on every save: the `regex` engine lets a
# catastrophically backtracking pattern time out instead of blocking a worker.
PATTERN_TIMEOUT_SECONDS = 0.05
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

STRING_TYPES = {AttributeType.STRING, AttributeType.STRING_LIST}
NUMBER_TYPES = {AttributeType.NUMBER, AttributeType.NUMBER_LIST}


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (not isinstance(value, float) or math.isfinite(value))
        and abs(value) < INT64
    )


def _check_text(value: str, what: str) -> None:
    if len(value) > MAX_STRING:
        raise ValidationError(
            f"{what} is {len(value)} characters long; the limit is {MAX_STRING}.", code="too_long"
        )
    if "\x00" in value:
        raise ValidationError(f"{what} contains a NUL character.", code="invalid")


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


def compile_pattern(pattern: str) -> Any:
    if "\x00" in pattern:
        raise ValidationError("The pattern contains a NUL character.", code="invalid")
    try:
        return _compiled(pattern)
    except (regex.error, RecursionError, OverflowError) as exc:
        raise ValidationError(
            f"Not a valid regular expression: {exc}.", code="invalid_regex"
        ) from exc


def pattern_matches(pattern: str, value: str, what: str) -> bool:
    try:
        found = compile_pattern(pattern).search(value, timeout=PATTERN_TIMEOUT_SECONDS)
    except TimeoutError as exc:
        raise ValidationError(
            f"{what}: the pattern {pattern} takes too long to check; simplify it.",
            code="pattern_too_slow",
        ) from exc
    return found is not None


def contains_nul(value: Any, depth: int = 0) -> bool:
    """True if a NUL character hides in any string or key (PostgreSQL cannot store it)."""
    if depth > MAX_OBJECT_DEPTH:
        return False
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(
            contains_nul(k, depth + 1) or contains_nul(v, depth + 1) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(contains_nul(v, depth + 1) for v in value)
    return False


def nesting_depth(value: Any, limit: int = MAX_OBJECT_DEPTH + 1) -> int:
    """How deeply lists and objects nest (counting stops past ``limit``)."""
    depth, level = 0, [value]
    while level and depth <= limit:
        children: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                children.extend(item.values())
            elif isinstance(item, list):
                children.extend(item)
        if not children:
            break
        depth += 1
        level = children
    return depth


def validate_attribute_definition(
    *,
    type: str,
    pattern: str,
    enum: list[Any],
    minimum: int | None,
    maximum: int | None,
) -> None:
    """Check that the constraint fits the type (raises a dict of field errors)."""
    errors: dict[str, ValidationError] = {}
    if type not in AttributeType.values:
        errors["type"] = ValidationError(f"Unknown attribute type {type!r}.", code="invalid_choice")
    if pattern:
        if type not in STRING_TYPES:
            errors["pattern"] = ValidationError(
                "A pattern applies only to strings and string lists.", code="not_applicable"
            )
        elif len(pattern) > MAX_STRING:
            errors["pattern"] = ValidationError(
                f"The pattern is longer than {MAX_STRING} characters.", code="too_long"
            )
        else:
            try:
                compile_pattern(pattern)
            except ValidationError as exc:
                errors["pattern"] = exc
    if enum:
        if type not in STRING_TYPES:
            errors["enum"] = ValidationError(
                "Allowed values apply only to strings and string lists.", code="not_applicable"
            )
        elif pattern:
            errors["enum"] = ValidationError(
                "Use either a pattern or a list of allowed values, not both.", code="exclusive"
            )
        elif len(enum) > MAX_ENUM:
            errors["enum"] = ValidationError(f"At most {MAX_ENUM} allowed values.", code="too_many")
        elif not all(
            isinstance(v, str) and 0 < len(v) <= MAX_STRING and "\x00" not in v for v in enum
        ):
            errors["enum"] = ValidationError(
                "Allowed values must be non-empty strings.", code="invalid"
            )
        elif len(set(enum)) != len(enum):
            errors["enum"] = ValidationError("Allowed values repeat.", code="duplicate")
    for bound_name, bound in (("minimum", minimum), ("maximum", maximum)):
        if bound is not None and (
            not isinstance(bound, int) or isinstance(bound, bool) or abs(bound) >= INT64
        ):
            errors[bound_name] = ValidationError(
                "A whole number between -2^63 and 2^63 is expected.", code="invalid"
            )
    bounds_are_numbers = "minimum" not in errors and "maximum" not in errors
    if bounds_are_numbers and (minimum is not None or maximum is not None):
        if type not in NUMBER_TYPES:
            errors["minimum"] = ValidationError(
                "Minimum and maximum apply only to numbers and number lists.",
                code="not_applicable",
            )
        elif minimum is not None and maximum is not None and minimum > maximum:
            errors["maximum"] = ValidationError(
                f"The maximum ({maximum}) is below the minimum ({minimum}).", code="invalid_range"
            )
    if errors:
        raise ValidationError(errors)


def _check_string(attr: FlagAttribute, value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text.", code="wrong_type")
    _check_text(value, what)
    if attr.enum and value not in attr.enum:
        allowed = ", ".join(str(v) for v in attr.enum)
        raise ValidationError(f"{what} must be one of: {allowed}.", code="not_in_enum")
    if attr.pattern and not pattern_matches(attr.pattern, value, what):
        raise ValidationError(
            f"{what} does not match the pattern {attr.pattern}.", code="pattern_mismatch"
        )
    return value


def _check_number(attr: FlagAttribute, value: Any, what: str) -> int | float:
    if not _is_number(value):
        raise ValidationError(f"{what} must be a number.", code="wrong_type")
    if attr.minimum is not None and value < attr.minimum:
        raise ValidationError(
            f"{what} must be at least {attr.minimum} (got {value}).", code="below_minimum"
        )
    if attr.maximum is not None and value > attr.maximum:
        raise ValidationError(
            f"{what} must be at most {attr.maximum} (got {value}).", code="above_maximum"
        )
    return value


def _check_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationError(f"{what} must be a list.", code="wrong_type")
    if len(value) > MAX_LIST_ITEMS:
        raise ValidationError(f"{what} has more than {MAX_LIST_ITEMS} items.", code="too_many")
    return value


def validate_attribute_value(attr: FlagAttribute, value: Any) -> Any:
    """Return the value if it has the attribute's type and meets its constraint."""
    what = f"“{attr.name}”"
    match attr.type:
        case AttributeType.STRING:
            return _check_string(attr, value, what)
        case AttributeType.NUMBER:
            return _check_number(attr, value, what)
        case AttributeType.BOOLEAN:
            if not isinstance(value, bool):
                raise ValidationError(f"{what} must be true or false.", code="wrong_type")
            return value
        case AttributeType.STRING_LIST:
            return [
                _check_string(attr, item, f"Item {i + 1} of {what}")
                for i, item in enumerate(_check_list(value, what))
            ]
        case AttributeType.NUMBER_LIST:
            return [
                _check_number(attr, item, f"Item {i + 1} of {what}")
                for i, item in enumerate(_check_list(value, what))
            ]
        case AttributeType.DATE:
            if not isinstance(value, str) or not DATE.match(value):
                raise ValidationError(f"{what} must be a date (YYYY-MM-DD).", code="wrong_type")
            try:
                dt.date.fromisoformat(value)
            except ValueError as exc:
                raise ValidationError(
                    f"{what}: {value} is not a real date.", code="invalid_date"
                ) from exc
            return value
    raise ValidationError(f"{what} has an unknown type {attr.type!r}.", code="invalid")


def validate_attribute_values(
    attributes: Iterable[FlagAttribute], values: Mapping[str, Any], *, enabled: bool
) -> dict[str, Any]:
    """Validate a whole set of attribute values; errors are keyed ``attribute_values.<name>``."""
    if not isinstance(values, Mapping):
        raise ValidationError(
            {
                "attribute_values": ValidationError(
                    "Attribute values must be an object.", code="wrong_type"
                )
            }
        )
    by_name = {a.name: a for a in attributes}
    errors: dict[str, ValidationError] = {}
    cleaned: dict[str, Any] = {}
    for name, value in values.items():
        attr = by_name.get(name)
        if attr is None:
            errors[f"attribute_values.{name}"] = ValidationError(
                f"The flag has no attribute “{name}”.", code="unknown_attribute"
            )
            continue
        if value is None:
            continue
        try:
            cleaned[name] = validate_attribute_value(attr, value)
        except ValidationError as exc:
            errors[f"attribute_values.{name}"] = exc
    if enabled:
        for attr in by_name.values():
            field = f"attribute_values.{attr.name}"
            if attr.required and attr.name not in cleaned and field not in errors:
                errors[field] = ValidationError(
                    f"“{attr.name}” is required before the flag can be enabled.", code="required"
                )
    if errors:
        raise ValidationError(errors)
    return cleaned


def validate_variant_value(value_type: str, value: Any, what: str) -> Any:
    match value_type:
        case ValueType.STRING:
            if not isinstance(value, str):
                raise ValidationError(f"{what} must be text.", code="wrong_type")
            _check_text(value, what)
            return value
        case ValueType.INTEGER:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= INT64:
                raise ValidationError(f"{what} must be a whole number.", code="wrong_type")
            return value
        case ValueType.FLOAT:
            if not _is_number(value):
                raise ValidationError(f"{what} must be a number.", code="wrong_type")
            return float(value)
        case ValueType.OBJECT:
            if not isinstance(value, dict):
                raise ValidationError(f"{what} must be a JSON object.", code="wrong_type")
            if nesting_depth(value) > MAX_OBJECT_DEPTH:
                raise ValidationError(
                    f"{what} nests deeper than {MAX_OBJECT_DEPTH} levels.", code="too_deep"
                )
            if contains_nul(value):
                raise ValidationError(f"{what} contains a NUL character.", code="invalid")
            size = len(json.dumps(value, separators=(",", ":")).encode())
            if size > MAX_OBJECT_BYTES:
                raise ValidationError(
                    f"{what} is {size} bytes; the limit is {MAX_OBJECT_BYTES}.", code="too_long"
                )
            return value
        case ValueType.BOOLEAN:
            if not isinstance(value, bool):
                raise ValidationError(f"{what} must be true or false.", code="wrong_type")
            return value
    raise ValidationError(f"Unknown value type {value_type!r}.", code="invalid")


def validate_variants(
    value_type: str, variants: Any, default_variant: str
) -> tuple[list[dict[str, Any]], str]:
    """A multi-variant flag's variants: named, unique, typed; the default must be one of them."""
    if not isinstance(variants, list) or not variants:
        raise ValidationError(
            {"variants": ValidationError("Give at least one variant.", code="required")}
        )
    if len(variants) > MAX_VARIANTS:
        raise ValidationError(
            {"variants": ValidationError(f"At most {MAX_VARIANTS} variants.", code="too_many")}
        )
    errors: dict[str, ValidationError] = {}
    cleaned: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, variant in enumerate(variants):
        field = f"variants.{i}"
        if not isinstance(variant, Mapping) or set(variant) - {"name", "value"}:
            errors[field] = ValidationError(
                "Each variant is an object with a name and a value.", code="invalid"
            )
            continue
        name = variant.get("name")
        if not isinstance(name, str) or not VARIANT_NAME.match(name):
            errors[field] = ValidationError(
                "A variant name is 1–64 letters, digits, '.', '-' or '_'.", code="invalid_name"
            )
            continue
        if name in seen:
            errors[field] = ValidationError(f"Variant “{name}” appears twice.", code="duplicate")
            continue
        seen.add(name)
        try:
            value = validate_variant_value(value_type, variant.get("value"), f"Variant “{name}”")
        except ValidationError as exc:
            errors[field] = exc
            continue
        cleaned.append({"name": name, "value": value})
    if not errors and default_variant not in seen:
        errors["default_variant"] = ValidationError(
            "The default variant must be one of the variants.", code="unknown_variant"
        )
    if errors:
        raise ValidationError(errors)
    return cleaned, default_variant
