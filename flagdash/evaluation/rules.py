"""Targeting rules: their shape, their validation, and their compiled form.

A flag has, per environment, an ordered list of rules. The first rule whose conditions match
the evaluation context decides what is served; when none matches, the flag serves its default
(``on`` for a boolean flag, the default variant for a multi-variant one). A rule is::

    {
      "name": "Staff in the US",              # optional label (shown in diffs and metadata)
      "match": "all",                          # "all" (and) or "any" (or) of the conditions
      "conditions": [
        {"attribute": "email", "operator": "ends_with", "value": "@example.com"},
        {"attribute": "country", "operator": "in", "value": ["US", "CA"]}
      ],
      "serve": {"variant": "on"}              # or a percentage split:
      # "serve": {"split": [{"variant": "blue", "weight": 50}, {"variant": "green", "weight": 50}]}
    }

Operators (``value`` type in brackets): ``equals``, ``not_equals`` [text, number or boolean];
``in``, ``not_in`` [list of them]; ``starts_with``, ``ends_with``, ``contains`` [text];
``matches`` [regular expression]; ``lt``, ``lte``, ``gt``, ``gte`` [number];
``semver_eq``, ``semver_lt``, ``semver_lte``, ``semver_gt``, ``semver_gte`` [semantic version];
``before``, ``after`` [date ``YYYY-MM-DD`` or ISO date-time of the years 1 to 9999 UTC, or
epoch seconds]. The attribute ``targetingKey`` is the context's targeting key; ``$now`` is the
time of the evaluation (for time-boxed rules). An attribute missing from the context matches
no condition, negated ones included. A condition compares values of its type only: ``"21"`` is
not a number and ``true`` is not ``1``; a list or an object in the context is therefore
``not_equals`` and ``not_in`` anything. Versions in the context may be partial or start with
``V`` (``2.4`` is ``2.4.0``), as flagd reads them.
A context value that cannot be compared (a date that does not exist, a number JSON reads as
infinity, a version too long) matches nothing; evaluating never raises. Texts in rules must be
storable: no NUL, no lone UTF-16 surrogate.

A split hashes the targeting key and the flag key with ``sticky_bucket`` (salt ``"split"``):
the same key always lands in the same variant, in every process.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from flagdash.backends.local import sticky_bucket
from flagdash.flags.validation import PATTERN_TIMEOUT_SECONDS, compile_pattern

BOOLEAN_VARIANTS = {"on": True, "off": False}
SPLIT_SALT = "split"
MAX_RULES = 50
MAX_CONDITIONS = 20
MAX_LIST_VALUES = 500
MAX_TEXT = 1024
MAX_NAME = 100
ATTRIBUTE = re.compile(r"\$now|[A-Za-z_][A-Za-z0-9_.:-]{0,127}")  # used with fullmatch
# ASCII digits only (semver.org; flagd's sem_ver does not read "١.٢.٣" either).
SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$",
    re.ASCII,
)
# The moments a rule may name: what a datetime holds (years 1 to 9999, UTC), so that every
# accepted date can be written out again (flagd export, descriptions).
EARLIEST_INSTANT = int(dt.datetime(1, 1, 1, tzinfo=dt.UTC).timestamp())
LATEST_INSTANT = int(dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp())
_YEAR_OUT_OF_RANGE = re.compile(r"\s*[+-]?(0000|\d{5,})-\d\d-\d\d", re.ASCII)

EQUALITY = ("equals", "not_equals")
MEMBERSHIP = ("in", "not_in")
TEXT = ("starts_with", "ends_with", "contains")
NUMERIC = ("lt", "lte", "gt", "gte")
SEMVER_OPS = ("semver_eq", "semver_lt", "semver_lte", "semver_gt", "semver_gte")
DATES = ("before", "after")
OPERATORS = (*EQUALITY, *MEMBERSHIP, *TEXT, "matches", *NUMERIC, *SEMVER_OPS, *DATES)
OPERATOR_LABELS = {
    "equals": "equals",
    "not_equals": "does not equal",
    "in": "is one of",
    "not_in": "is not one of",
    "starts_with": "starts with",
    "ends_with": "ends with",
    "contains": "contains",
    "matches": "matches the regular expression",
    "lt": "<",
    "lte": "≤",
    "gt": ">",
    "gte": "≥",
    "semver_eq": "is version",
    "semver_lt": "is a version before",
    "semver_lte": "is a version at or before",
    "semver_gt": "is a version after",
    "semver_gte": "is a version at or after",
    "before": "is before",
    "after": "is after",
}


# --- values ---------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (not isinstance(value, float) or math.isfinite(value))
    )


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or is_number(value)


SemVer = tuple[int, int, int, tuple[tuple[int, int | str], ...]]


def parse_semver(text: Any, *, partial: bool = False) -> SemVer | None:
    """A comparable key of a semantic version (``1.2.3``, ``v1.2.3-rc.1+build``), or None.

    Pre-releases sort before their release, numeric identifiers before alphanumeric ones, as
    semver.org §11 says; build metadata is ignored. With ``partial`` (versions sent in a
    context), the text is read as flagd reads it: a ``v`` or ``V`` prefix, and a missing minor
    or patch number is 0 (``2.4`` is ``2.4.0``, ``2`` is ``2.0.0``); no surrounding spaces.
    """
    if not isinstance(text, str) or len(text) > 256:
        return None
    if partial:
        text = text[1:] if text[:1] in ("v", "V") else text
        if text[:1] in ("v", "V"):
            return None
        numbers = text.split("-", 1)[0].split("+", 1)[0]
        if numbers.count(".") < 2:
            text = numbers + ".0" * (2 - numbers.count(".")) + text[len(numbers) :]
    else:
        text = text.strip()
    found = SEMVER.fullmatch(text)
    if found is None:
        return None
    major, minor, patch, pre = found.groups()
    if pre is None:
        # A release sorts after all of its pre-releases: (1,) > any (0, ...) tuple.
        return int(major), int(minor), int(patch), ((2, 0),)
    parts: list[tuple[int, int | str]] = []
    for piece in pre.split("."):
        parts.append((0, int(piece)) if piece.isdigit() else (1, piece))
    return int(major), int(minor), int(patch), tuple(parts)


def parse_instant(value: Any) -> int | float | None:
    """Seconds since the epoch of a date (``YYYY-MM-DD``, midnight UTC) or an ISO date-time.

    A date-time without a time zone is read as UTC; a number is taken as epoch seconds, as it
    is: an integer too large for a float (``10**400``) stays an integer, and Python compares it
    with a float exactly, so it is after every date (flagd compares it the same way). Never
    raises: anything else is None.
    """
    if is_number(value):
        return int(value) if isinstance(value, int) else float(value)
    if not isinstance(value, str) or not 8 <= len(value) <= 40:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        return None


def in_date_range(instant: float) -> bool:
    """Whether the instant is a moment of the years 1 to 9999 (UTC).

    As a float, 9999-12-31T23:59:59.99999 already rounds up to 10000-01-01: it is out too.
    """
    return EARLIEST_INSTANT <= instant < LATEST_INSTANT + 1


def text_problem(value: Any) -> str | None:
    """Why a text in a value (a string, or one in a list) cannot be stored, or None.

    PostgreSQL's jsonb refuses NUL, and a lone UTF-16 surrogate (``"\\ud800"`` in JSON) is not
    a character: UTF-8 cannot encode it, so saving, hashing or answering it would fail.
    """
    for text in value if isinstance(value, list) else [value]:
        if not isinstance(text, str):
            continue
        if "\x00" in text:
            return "contains a NUL character"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains half of a UTF-16 surrogate pair (such as \\ud800), not a character"
    return None


# --- validation -----------------------------------------------------------------------------


def _error(path: str, message: str, code: str) -> ValidationError:
    return ValidationError({"rules": ValidationError(f"{path}: {message}", code=code)})


def _clean_condition(condition: Any, path: str) -> dict[str, Any]:
    if not isinstance(condition, Mapping) or set(condition) - {"attribute", "operator", "value"}:
        raise _error(
            path, "a condition is an object with attribute, operator and value.", "invalid"
        )
    attribute = condition.get("attribute")
    if not isinstance(attribute, str) or not ATTRIBUTE.fullmatch(attribute):
        raise _error(
            path,
            "the attribute is a context key such as “email” or “targetingKey” (letters, digits, "
            "'_', '.', ':', '-'), or “$now”.",
            "invalid_attribute",
        )
    operator = condition.get("operator")
    if operator not in OPERATORS:
        raise _error(
            path,
            f"unknown operator {_shown(operator)}; use one of {', '.join(OPERATORS)}.",
            "invalid_operator",
        )
    value = condition.get("value")
    if (problem := text_problem(value)) is not None:
        raise _error(path, f"the value {problem}.", "invalid_text")
    if operator in EQUALITY:
        if not _is_scalar(value) or (isinstance(value, str) and len(value) > MAX_TEXT):
            raise _error(path, "compare with a text, a number or true/false.", "invalid_value")
    elif operator in MEMBERSHIP:
        if not isinstance(value, list) or not value or len(value) > MAX_LIST_VALUES:
            raise _error(
                path,
                f'give a list of 1 to {MAX_LIST_VALUES} values, e.g. ["US", "CA"].',
                "invalid_value",
            )
        if not all(_is_scalar(v) and (not isinstance(v, str) or len(v) <= MAX_TEXT) for v in value):
            raise _error(path, "list items are texts, numbers or true/false.", "invalid_value")
    elif operator in TEXT:
        if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
            raise _error(
                path, f"give a non-empty text of at most {MAX_TEXT} characters.", "invalid_value"
            )
    elif operator == "matches":
        if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
            raise _error(path, "give a regular expression.", "invalid_regex")
        try:
            compile_pattern(value)
        except ValidationError as exc:
            raise _error(path, exc.messages[0], "invalid_regex") from exc
    elif operator in NUMERIC:
        if not is_number(value):
            raise _error(path, "compare with a number.", "invalid_value")
    elif operator in SEMVER_OPS:
        if parse_semver(value) is None:
            raise _error(
                path,
                f"{_shown(value)} is not a semantic version such as 2.1.0 or 2.1.0-beta.1.",
                "invalid_semver",
            )
    elif operator in DATES:
        instant = None if isinstance(value, bool) else parse_instant(value)
        if instant is None and isinstance(value, str) and _YEAR_OUT_OF_RANGE.match(value):
            instant = EARLIEST_INSTANT - 1  # well shaped, but year 0 or after 9999
        if instant is None:
            raise _error(
                path,
                f"{_shown(value)} is not a date (YYYY-MM-DD) or an ISO date-time "
                "(2026-05-01T12:00:00Z).",
                "invalid_date",
            )
        if not in_date_range(instant):
            raise _error(
                path,
                f"{_shown(value)} is out of range: dates run from 0001-01-01 to 9999-12-31 (UTC).",
                "invalid_date",
            )
    return {"attribute": attribute, "operator": operator, "value": value}


def _shown(value: Any) -> str:
    """A value as an error message quotes it: short, and always printable."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"{float(value):e}" if abs(value) < 10**308 else "a number this large"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


def _clean_serve(serve: Any, path: str, variant_names: Sequence[str]) -> dict[str, Any]:
    known = ", ".join(variant_names)
    if not isinstance(serve, Mapping) or len(serve) != 1 or set(serve) - {"variant", "split"}:
        raise _error(
            path,
            'serve is {"variant": NAME} or {"split": [{"variant": NAME, "weight": N}, …]}.',
            "invalid_serve",
        )
    if "variant" in serve:
        variant = serve["variant"]
        if variant not in variant_names:
            raise _error(
                path, f"unknown variant {_shown(variant)}; the flag has {known}.", "unknown_variant"
            )
        return {"variant": variant}
    split = serve["split"]
    if not isinstance(split, list) or not split or len(split) > len(variant_names):
        raise _error(path, "a split lists each variant once, with its weight.", "invalid_split")
    cleaned: list[dict[str, Any]] = []
    seen: set[str] = set()
    for part in split:
        if not isinstance(part, Mapping) or set(part) != {"variant", "weight"}:
            raise _error(
                path, 'each part of a split is {"variant": NAME, "weight": N}.', "invalid_split"
            )
        variant, weight = part["variant"], part["weight"]
        if variant not in variant_names:
            raise _error(
                path, f"unknown variant {_shown(variant)}; the flag has {known}.", "unknown_variant"
            )
        if variant in seen:
            raise _error(path, f"variant {variant!r} appears twice in the split.", "invalid_split")
        if not is_number(weight) or weight < 0:
            raise _error(path, f"the weight of {variant!r} must be a number ≥ 0.", "invalid_split")
        seen.add(variant)
        cleaned.append({"variant": variant, "weight": weight})
    total = sum(p["weight"] for p in cleaned)
    if abs(total - 100) > 1e-6:
        raise _error(
            path, f"the split's percentages add up to {total:g}, not 100.", "split_not_100"
        )
    return {"split": cleaned}


def validate_rules(rules: Any, *, variant_names: Sequence[str]) -> list[dict[str, Any]]:
    """Return the rules cleaned, or raise ``ValidationError({"rules": …})`` naming the place.

    ``variant_names`` are the variants a rule may serve (``on``/``off`` for boolean flags).
    """
    if rules is None:
        return []
    if not isinstance(rules, list):
        raise _error("Rules", "give a list of rules ([] for none).", "invalid")
    if len(rules) > MAX_RULES:
        raise _error("Rules", f"at most {MAX_RULES} rules.", "too_many")
    cleaned: list[dict[str, Any]] = []
    for i, rule in enumerate(rules, start=1):
        where = f"Rule {i}"
        if not isinstance(rule, Mapping) or set(rule) - {"name", "match", "conditions", "serve"}:
            raise _error(
                where, "a rule is an object with name, match, conditions and serve.", "invalid"
            )
        name = rule.get("name", "")
        if not isinstance(name, str) or len(name) > MAX_NAME or any(c in name for c in "\r\n\0"):
            raise _error(
                where, f"the name is one line of at most {MAX_NAME} characters.", "invalid_name"
            )
        if (problem := text_problem(name)) is not None:
            raise _error(where, f"the name {problem}.", "invalid_text")
        match = rule.get("match", "all")
        if match not in ("all", "any"):
            raise _error(where, 'match is "all" or "any".', "invalid_match")
        conditions = rule.get("conditions")
        if not isinstance(conditions, list) or not conditions:
            raise _error(where, "give at least one condition.", "required")
        if len(conditions) > MAX_CONDITIONS:
            raise _error(where, f"at most {MAX_CONDITIONS} conditions.", "too_many")
        if "serve" not in rule:
            raise _error(where, "say what the rule serves.", "required")
        clean: dict[str, Any] = {
            "match": match,
            "conditions": [
                _clean_condition(c, f"{where}, condition {j}")
                for j, c in enumerate(conditions, start=1)
            ],
            "serve": _clean_serve(rule["serve"], where, variant_names),
        }
        if name.strip():
            clean = {"name": name.strip(), **clean}
        cleaned.append(clean)
    return cleaned


# --- compiled rules ---------------------------------------------------------------------------

Predicate = Callable[[Mapping[str, Any], float], bool]


def _lookup(context: Mapping[str, Any], attribute: str, now: float) -> Any:
    if attribute == "$now":
        return now
    if attribute in context:
        return context[attribute]
    if "." in attribute:  # a path into nested objects: "company.size"
        value: Any = context
        for part in attribute.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return _MISSING
            value = value[part]
        return value
    return _MISSING


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    """Equality without JSON's traps: true is not 1, and 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    return type(a) is type(b) and a == b


def _compile_condition(condition: Mapping[str, Any]) -> Predicate:
    attribute: str = condition["attribute"]
    operator: str = condition["operator"]
    expected: Any = condition["value"]

    def value_of(context: Mapping[str, Any], now: float) -> Any:
        return _lookup(context, attribute, now)

    test: Callable[[Any], bool]
    if operator == "equals":
        test = lambda v: _same(v, expected)  # noqa: E731
    elif operator == "not_equals":
        test = lambda v: not _same(v, expected)  # noqa: E731
    elif operator in MEMBERSHIP:
        hashable = {(type(x) is bool, x) for x in expected}
        negate = operator == "not_in"

        def test(v: Any) -> bool:
            if not _is_scalar(v):
                return negate  # a list or an object is none of the listed values
            return ((type(v) is bool, v) in hashable) != negate

    elif operator == "starts_with":
        test = lambda v: isinstance(v, str) and v.startswith(expected)  # noqa: E731
    elif operator == "ends_with":
        test = lambda v: isinstance(v, str) and v.endswith(expected)  # noqa: E731
    elif operator == "contains":
        test = lambda v: isinstance(v, str) and expected in v  # noqa: E731
    elif operator == "matches":
        pattern = compile_pattern(expected)

        def test(v: Any) -> bool:
            if not isinstance(v, str) or len(v) > MAX_TEXT:
                return False
            try:
                return pattern.search(v, timeout=PATTERN_TIMEOUT_SECONDS) is not None
            except TimeoutError:
                return False  # a pathological input never blocks an evaluation

    elif operator in NUMERIC:
        compare = {
            "lt": lambda a: a < expected,
            "lte": lambda a: a <= expected,
            "gt": lambda a: a > expected,
            "gte": lambda a: a >= expected,
        }[operator]
        test = lambda v: is_number(v) and compare(v)  # noqa: E731
    elif operator in SEMVER_OPS:
        target = parse_semver(expected)
        versus = {
            "semver_eq": lambda a: a == target,
            "semver_lt": lambda a: a < target,
            "semver_lte": lambda a: a <= target,
            "semver_gt": lambda a: a > target,
            "semver_gte": lambda a: a >= target,
        }[operator]

        def test(v: Any) -> bool:
            key = parse_semver(v, partial=True)
            return key is not None and bool(versus(key))

    else:  # before / after
        bound = None if isinstance(expected, bool) else parse_instant(expected)
        if bound is not None and not in_date_range(bound):
            bound = None  # as the flagd export, which cannot write this date, leaves it out
        after = operator == "after"

        def test(v: Any) -> bool:
            if bound is None:  # a version saved before its dates were checked: never matches
                return False
            when = None if isinstance(v, bool) else parse_instant(v)
            return when is not None and (when > bound if after else when < bound)

    def predicate(context: Mapping[str, Any], now: float) -> bool:
        value = value_of(context, now)
        return value is not _MISSING and value is not None and test(value)

    return predicate


@dataclass(frozen=True)
class CompiledRule:
    index: int
    name: str
    conditions: tuple[Predicate, ...]
    match_all: bool
    variant: str | None  # a fixed variant, or None for a split
    split: tuple[tuple[float, str], ...]  # (cumulative upper bound, variant)

    def matches(self, context: Mapping[str, Any], now: float) -> bool:
        if self.match_all:
            return all(c(context, now) for c in self.conditions)
        return any(c(context, now) for c in self.conditions)

    def split_variant(self, targeting_key: str, flag_key: str) -> str:
        bucket = sticky_bucket(targeting_key, flag_key, SPLIT_SALT)
        for bound, variant in self.split:
            if bucket < bound:
                return variant
        return self.split[-1][1]


def compile_rules(rules: Sequence[Mapping[str, Any]]) -> tuple[CompiledRule, ...]:
    """Rules as closures, compiled once per deployed version (they are already validated)."""
    compiled = []
    for index, rule in enumerate(rules, start=1):
        serve = rule["serve"]
        split: list[tuple[float, str]] = []
        total = 0.0
        for part in serve.get("split", []):
            if part["weight"] > 0:
                total += float(part["weight"])
                split.append((total, part["variant"]))
        compiled.append(
            CompiledRule(
                index=index,
                name=rule.get("name", ""),
                conditions=tuple(_compile_condition(c) for c in rule["conditions"]),
                match_all=rule.get("match", "all") == "all",
                variant=serve.get("variant"),
                split=tuple(split),
            )
        )
    return tuple(compiled)


def describe(rule: Mapping[str, Any]) -> str:
    """One line a person can read: ``email ends with "@x.com" and plan = "pro" → on``."""
    joiner = " and " if rule.get("match", "all") == "all" else " or "
    parts = []
    for c in rule.get("conditions", []):
        value = c.get("value")
        shown = ", ".join(map(_literal, value)) if isinstance(value, list) else _literal(value)
        parts.append(f"{c.get('attribute')} {OPERATOR_LABELS.get(c.get('operator'), '?')} {shown}")
    serve = rule.get("serve", {})
    if "split" in serve:
        target = " / ".join(f"{p['variant']} {p['weight']:g} %" for p in serve["split"])
    else:
        target = str(serve.get("variant"))
    return f"{joiner.join(parts)} → {target}"


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return f"“{value}”"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)
