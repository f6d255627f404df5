"""An environment's served flags as a flagd flag-definition file.

Teams that want flagd (or flagd's in-process providers) next to their services can sync this
file from flagdash. It describes the environment's stable version:

- boolean flags have the variants ``on: true`` and ``off: false``; multi-variant flags keep
  theirs; ``defaultVariant`` is what the flag serves when no rule matches;
- a disabled flag has ``state: DISABLED`` (flagd then behaves as if it were absent, so the
  application's code default applies; flagdash itself serves the off value);
- rules become one JsonLogic expression of nested ``if`` (first match wins), conditions map to
  ``===``, ``in``, ``starts_with``, ``ends_with``, ``<``…``>=``, ``sem_ver``; ``$now`` is
  ``$flagd.timestamp``; splits become ``fractional`` on flag key + targeting key.

What flagd cannot express is left out and said in the flag's metadata
(``flagdash.unsupported``): conditions with ``matches`` (flagd has no regular expressions) drop
their rule. Splits keep their weights, but flagd's murmur3 buckets differ from flagdash's
SHA-256 buckets, so one user may get a different variant from flagd than from flagdash's OFREP.
A gradual rollout in progress is not exported: the file holds the stable version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flagdash.evaluation.rules import parse_instant
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


class Unsupported(Exception):
    pass


def _var(attribute: str) -> dict[str, Any]:
    return {"var": "$flagd.timestamp" if attribute == "$now" else attribute}


def _present(attribute: str) -> dict[str, Any]:
    return {"!==": [_var(attribute), None]}


def condition_logic(condition: Mapping[str, Any]) -> dict[str, Any]:
    attribute, operator, value = condition["attribute"], condition["operator"], condition["value"]
    var = _var(attribute)
    if operator == "equals":
        return {"===": [var, value]}
    if operator == "not_equals":
        return {"and": [_present(attribute), {"!==": [var, value]}]}
    if operator == "in":
        return {"in": [var, list(value)]}
    if operator == "not_in":
        return {"and": [_present(attribute), {"!": [{"in": [var, list(value)]}]}]}
    if operator in ("starts_with", "ends_with"):
        return {operator: [var, value]}
    if operator == "contains":
        return {"in": [value, var]}
    if operator in NUMERIC_OPERATORS:
        return {NUMERIC_OPERATORS[operator]: [var, value]}
    if operator in SEMVER_OPERATORS:
        return {"sem_ver": [var, SEMVER_OPERATORS[operator], str(value).strip().removeprefix("v")]}
    if operator in ("before", "after"):
        symbol = "<" if operator == "before" else ">"
        if attribute == "$now":
            instant = parse_instant(value)
            return {symbol: [var, int(instant or 0)]}
        # ISO dates and date-times compare as text when written the same way.
        moment = value if len(str(value)) == 10 else _iso(value)
        return {symbol: [var, moment]}
    raise Unsupported(f"operator {operator} (flagd has no regular expressions)")


def _iso(value: Any) -> str:
    instant = parse_instant(value)
    return dt.datetime.fromtimestamp(instant or 0, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _serve_logic(serve: Mapping[str, Any]) -> Any:
    if "variant" in serve:
        return serve["variant"]
    parts = [p for p in serve["split"] if p["weight"] > 0]
    whole = all(float(p["weight"]).is_integer() for p in parts)
    scale = 1 if whole else 100
    return {
        "fractional": [
            {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
            *[[p["variant"], round(p["weight"] * scale)] for p in parts],
        ]
    }


def targeting(rules: list[Mapping[str, Any]]) -> tuple[dict[str, Any] | None, list[str]]:
    """The rules as one flagd targeting expression, and what had to be left out."""
    branches: list[tuple[dict[str, Any], Any]] = []
    skipped: list[str] = []
    for index, rule in enumerate(rules, start=1):
        try:
            conditions = [condition_logic(c) for c in rule["conditions"]]
        except Unsupported as exc:
            skipped.append(f"rule {index}: {exc}")
            continue
        joined = (
            conditions[0]
            if len(conditions) == 1
            else {"and" if rule.get("match", "all") == "all" else "or": conditions}
        )
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
        "state": "ENABLED" if flag.enabled else "DISABLED",
        "variants": variants,
        "defaultVariant": flag.default_variant if flag.enabled else flag.off_variant,
    }
    metadata: dict[str, Any] = dict(flag.metadata)
    if flag.enabled and flag.entry.get("rules"):
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
