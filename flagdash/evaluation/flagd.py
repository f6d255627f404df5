"""An environment's served flags as a flagd flag-definition file.

Teams that want flagd (or flagd's in-process providers) next to their services can sync this
file from flagdash. It describes the environment's stable version, and flagd serves from it
what flagdash's OFREP serves: ``tests/evaluation/test_flagd_core.py`` loads the file into
flagd's own Python evaluator (``openfeature-flagd-core``) and checks, over 47 flags (every
operator, every value type, disabled flags, all/any) and 151 contexts (right types,
boundaries, wrong types, missing attributes, odd spellings), that flagd answers the same value
and variant for everything but percentage splits, whose shares over 10,000 keys it checks
instead (within 2 points of the weights).

- Boolean flags have the variants ``on: true`` and ``off: false``; multi-variant flags keep
  theirs; ``defaultVariant`` is what the flag serves when no rule matches.
- A disabled flag serves its off value in flagdash, so it is exported as ``ENABLED`` with the
  off variant as default and no targeting (and ``flagdash.disabled: true`` in its metadata):
  flagd's own ``DISABLED`` would hand the application its code default instead, and no variant.
- Rules become one JsonLogic expression of nested ``if`` (first match wins). JsonLogic coerces
  types (``null < 18`` is true, ``"21" >= 21`` too, and flagd's Python evaluator finds
  ``true == 1``) where flagdash compares only values of the right type, so each condition
  carries a guard: a number for ``lt``…``gte`` (``x + 0 === x`` and not a boolean), a text for
  ``contains`` and the ``sem_ver`` comparisons (``starts_with(x, "")``), a real boolean or a
  real number where ``true``/``false`` and ``0``/``1`` could be confused; ``not_equals`` and
  ``not_in`` also need the attribute to be present. ``$now`` is ``$flagd.timestamp``.
- ``before``/``after`` on an attribute: a number is epoch seconds; a text must be shaped
  ``YYYY-MM-DD``, or ``YYYY-MM-DD[T ]HH:MM:SS`` optionally followed by a fraction and by ``Z``
  or ``+00:00`` (UTC; no zone also means UTC), and is compared as text after padding a date
  to midnight.
- Splits become ``fractional`` with flagd's default bucketing (flag key and targeting key).

Known differences (``test_documented_differences_are_the_only_ones_found`` pins them):

- Splits keep their weights, but flagd's murmur3 buckets differ from flagdash's SHA-256
  buckets, so one user may get another variant from flagd than from flagdash's OFREP. Without
  a targeting key flagd serves the default variant where flagdash answers
  ``TARGETING_KEY_MISSING``. flagd reports ``TARGETING_MATCH`` for splits and ``STATIC`` for
  a disabled flag (flagdash: ``SPLIT``, ``DISABLED``).
- Conditions with ``matches`` (flagd has no regular expressions) drop their rule; the flag's
  metadata says so (``flagdash.unsupported``).
- Dates: flagd ignores date-times with another UTC offset than ``+00:00``, without seconds, or
  in other ISO 8601 spellings (week dates, basic format), which flagdash converts; it compares
  to the second, and does not check that a well-shaped date exists (``2025-02-30``).
- A context key containing a dot (``"user.email": …``) is a path into nested objects for
  flagd; flagdash reads such a key first, then the path.
- A gradual rollout in progress is not exported: the file holds the stable version.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from flagdash.evaluation.rules import in_date_range, parse_instant
from flagdash.evaluation.snapshot import CompiledFlag, ServedEnvironment
from flagdash.flags.models import ValueType

SCHEMA = "https://flagd.dev/schema/v0/flags.json"
SEMVER_OPERATORS = {
    "semver_eq": "=",
    "semver_lt": "<",
    "semver_lte": "<=",
    "semver_gt": ">",
    "semver_gte": ">=",
}
NUMERIC_OPERATORS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
# How a boolean reads as text in JsonLogic's "cat": "true" in JavaScript and Go, "True" in flagd's
# Python evaluator (a text in the context is told apart by the other half of each guard).
BOOLEAN_TEXTS = ["true", "false", "True", "False"]

Logic = Any  # a JsonLogic expression: a dict, or a literal


class Unsupported(Exception):
    pass


# --- guards ------------------------------------------------------------------------------------


def _var(attribute: str) -> dict[str, Any]:
    return {"var": "$flagd.timestamp" if attribute == "$now" else attribute}


def _present(var: Logic) -> Logic:
    return {"!==": [var, None]}


def _is_text(var: Logic) -> Logic:
    """True for a text; flagd's ``starts_with`` gives null for anything else."""
    return {"starts_with": [var, ""]}


def _is_boolean(var: Logic) -> Logic:
    """True only for true/false (``1 in [true, false]`` holds in Python, ``"1"`` is no boolean
    text, and the text ``"true"`` is not in ``[true, false]``)."""
    return {"and": [{"in": [var, [True, False]]}, {"in": [{"cat": [var]}, BOOLEAN_TEXTS]}]}


def _is_number(var: Logic) -> Logic:
    """True only for numbers: ``x + 0`` is x itself for a number only (not for "21", [21] or
    null), and a boolean is caught by its text."""
    return {
        "and": [
            {"===": [{"+": [var, 0]}, var]},
            {"!": [{"in": [{"cat": [var]}, BOOLEAN_TEXTS]}]},
        ]
    }


def _confusable_with_boolean(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value in (0, 1)


def _joined(operator: str, parts: Sequence[Logic]) -> Logic:
    """``and``/``or`` of the parts, nested ones of the same kind flattened (same meaning)."""
    flat: list[Logic] = []
    for part in parts:
        if isinstance(part, dict) and list(part) == [operator]:
            flat.extend(part[operator])
        else:
            flat.append(part)
    return flat[0] if len(flat) == 1 else {operator: flat}


def _all(*parts: Logic) -> Logic:
    return _joined("and", parts)


def _any(*parts: Logic) -> Logic:
    return _joined("or", parts)


# --- conditions --------------------------------------------------------------------------------


def _equals(var: Logic, value: Any) -> Logic:
    same: Logic = {"===": [var, value]}
    if isinstance(value, bool):
        return _all(same, _is_boolean(var))
    if _confusable_with_boolean(value):
        return _all(same, {"!": [_is_boolean(var)]})
    return same


def _member(var: Logic, values: Sequence[Any]) -> Logic:
    booleans = [v for v in values if isinstance(v, bool)]
    others = [v for v in values if not isinstance(v, bool)]
    if not booleans and not any(_confusable_with_boolean(v) for v in others):
        return {"in": [var, list(values)]}
    branches = []
    if others:
        branches.append(_all({"!": [_is_boolean(var)]}, {"in": [var, others]}))
    if booleans:
        branches.append(_all(_is_boolean(var), {"in": [var, booleans]}))
    return _any(*branches)


def _char(var: Logic, index: int, allowed: str) -> Logic:
    piece = {"substr": [var, index, 1]}
    if allowed == "digit":
        return {"<=": ["0", piece, "9"]}  # one character between "0" and "9": a digit
    if len(allowed) == 1:
        return {"===": [piece, allowed]}
    return {"in": [piece, list(allowed)]}


def _shaped(var: Logic, shape: Sequence[str], start: int = 0) -> list[Logic]:
    """Checks that the text at ``var`` has ``shape`` from character ``start`` on: ``D`` is a
    digit, anything else the characters allowed there."""
    return [
        _char(var, start + offset, "digit" if allowed == "D" else allowed)
        for offset, allowed in enumerate(shape)
    ]


DATE_SHAPE = ("D", "D", "D", "D", "-", "D", "D", "-", "D", "D")  # characters 0–9
TIME_SHAPE = ("T ", "D", "D", ":", "D", "D", ":", "D", "D")  # characters 10–18


def _date_text(var: Logic) -> tuple[Logic, Logic]:
    """(is a UTC date or date-time text flagd can compare, the text as ``YYYY-MM-DDTHH:MM:SS``:
    a date padded to midnight, a date-time cut after its seconds)."""
    rest = {"substr": [var, 19]}
    zone_ok = _any(
        {"in": [rest, ["", "Z", "+00:00"]]},
        _all(
            {"starts_with": [rest, "."]},
            _any(
                {"ends_with": [rest, "Z"]},
                {"ends_with": [rest, "+00:00"]},
                _all({"!": [{"in": ["+", rest]}]}, {"!": [{"in": ["-", rest]}]}),
            ),
        ),
    )
    shape = _all(
        _is_text(var),
        *_shaped(var, DATE_SHAPE),
        _any({"===": [{"substr": [var, 10]}, ""]}, _all(*_shaped(var, TIME_SHAPE, 10), zone_ok)),
    )
    padded = {
        "cat": [
            {"substr": [var, 0, 10]},
            "T",
            {"if": [{"===": [{"substr": [var, 10]}, ""]}, "00:00:00", {"substr": [var, 11, 8]}]},
        ]
    }
    return shape, padded


def _moment(attribute: str, operator: str, value: Any) -> Logic:
    instant = None if isinstance(value, bool) else parse_instant(value)
    if instant is None or not in_date_range(instant):
        # Validated rules always have a date of the years 1 to 9999; a version saved before
        # dates were checked may not (flagdash's own evaluation never matches it either).
        raise Unsupported(f"{str(value)[:40]!r} is not a date of the years 1 to 9999")
    symbol = "<" if operator == "before" else ">"
    var = _var(attribute)
    if attribute == "$now":
        return {symbol: [var, math.floor(instant)]}
    when = dt.datetime.fromtimestamp(math.floor(instant), tz=dt.UTC)
    shape, padded = _date_text(var)
    as_number = int(instant) if float(instant).is_integer() else instant
    return _any(
        _all(_is_number(var), {symbol: [var, as_number]}),
        _all(shape, {symbol: [padded, when.isoformat()[:19]]}),  # zero-padded year
    )


def condition_logic(condition: Mapping[str, Any]) -> Logic:
    attribute, operator, value = condition["attribute"], condition["operator"], condition["value"]
    var = _var(attribute)
    if operator == "equals":
        return _equals(var, value)
    if operator == "not_equals":
        return _all(_present(var), {"!": [_equals(var, value)]})
    if operator == "in":
        return _member(var, list(value))
    if operator == "not_in":
        return _all(_present(var), {"!": [_member(var, list(value))]})
    if operator in ("starts_with", "ends_with"):
        return {operator: [var, value]}
    if operator == "contains":
        return _all(_is_text(var), {"in": [value, var]})
    if operator in NUMERIC_OPERATORS:
        return _all(_is_number(var), {NUMERIC_OPERATORS[operator]: [var, value]})
    if operator in SEMVER_OPERATORS:
        target = str(value).strip().removeprefix("v")
        return _all(_is_text(var), {"sem_ver": [var, SEMVER_OPERATORS[operator], target]})
    if operator in ("before", "after"):
        return _moment(attribute, operator, value)
    raise Unsupported(f"operator {operator} (flagd has no regular expressions)")


def _serve_logic(serve: Mapping[str, Any]) -> Any:
    if "variant" in serve:
        return serve["variant"]
    parts = [p for p in serve["split"] if p["weight"] > 0]
    if len(parts) == 1:  # 100 % to one variant (flagd's fractional needs two)
        return parts[0]["variant"]
    whole = all(float(p["weight"]).is_integer() for p in parts)
    scale = 1 if whole else 100
    # No bucketing expression: flagd buckets by flag key and targeting key, and without a
    # targeting key serves the default variant (never one bucket for everyone without a key).
    return {"fractional": [[p["variant"], round(p["weight"] * scale)] for p in parts]}


def targeting(rules: list[Mapping[str, Any]]) -> tuple[dict[str, Any] | None, list[str]]:
    """The rules as one flagd targeting expression, and what had to be left out."""
    branches: list[tuple[Logic, Any]] = []
    skipped: list[str] = []
    for index, rule in enumerate(rules, start=1):
        try:
            conditions = [condition_logic(c) for c in rule["conditions"]]
        except Unsupported as exc:
            skipped.append(f"rule {index}: {exc}")
            continue
        joined = _all(*conditions) if rule.get("match", "all") == "all" else _any(*conditions)
        branches.append((joined, _serve_logic(rule["serve"])))
    expression: Any = None
    for condition, serve in reversed(branches):
        expression = {"if": [condition, serve, expression]}
    return expression, skipped


def flag_definition(flag: CompiledFlag) -> dict[str, Any]:
    variants: dict[str, Any] = dict(flag.variants)
    if flag.value_type == ValueType.FLOAT:
        variants = {k: float(v) for k, v in variants.items()}
    definition: dict[str, Any] = {
        "state": "ENABLED",
        "variants": variants,
        "defaultVariant": flag.default_variant if flag.enabled else flag.off_variant,
    }
    metadata: dict[str, Any] = dict(flag.metadata)
    if not flag.enabled:
        metadata["flagdash.disabled"] = True
    elif flag.entry.get("rules"):
        expression, skipped = targeting(list(flag.entry["rules"]))
        if expression is not None:
            definition["targeting"] = expression
        if skipped:
            metadata["flagdash.unsupported"] = "; ".join(skipped)
    definition["metadata"] = metadata
    return definition


def export(environment: ServedEnvironment | None) -> dict[str, Any]:
    """The flagd document of what the environment serves to everyone."""
    document: dict[str, Any] = {"$schema": SCHEMA, "flags": {}}
    if environment is None:
        return document
    stable = environment.stable
    document["metadata"] = {
        "flagSetId": f"{environment.application_key}/{environment.environment_key}",
        "version": str(stable.number) if stable else "0",
    }
    if stable is not None:
        document["flags"] = {
            key: flag_definition(stable.flags[key]) for key in sorted(stable.flags)
        }
    return document
