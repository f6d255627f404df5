"""Evaluating one flag for one context, from the compiled snapshot (no database, no I/O).

The order of decisions, for a flag in an environment:

1. Which version: during a gradual rollout on the built-in backend, a targeting key whose
   ``sticky_bucket(targeting key, flag key)`` is below the rollout percentage gets the
   candidate version's definition of the flag, everyone else the stable one. No targeting
   key: the stable version. A flag in neither: ``FLAG_NOT_FOUND``.
2. Disabled: the flag's off value (``false``/``off`` for boolean flags, the default variant for
   multi-variant flags), reason ``DISABLED``.
3. The first rule whose conditions match: its variant (``TARGETING_MATCH``) or, for a split,
   the variant the targeting key's split bucket falls in (``SPLIT``; a split needs a
   targeting key: ``TARGETING_KEY_MISSING`` otherwise).
4. No rule matches: the default (``on``/``true`` for boolean flags, the default variant), with
   reason ``STATIC`` when the flag has no rules and ``DEFAULT`` when it has some.

A flag whose definition could not be compiled (see ``snapshot.py``) answers ``PARSE_ERROR``
(400) in the version that holds it, whatever the context.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flagdash.backends.local import sticky_bucket
from flagdash.evaluation.snapshot import CompiledFlag, ServedEnvironment


@dataclass(frozen=True)
class Success:
    key: str
    value: Any
    variant: str
    reason: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "reason": self.reason,
            "variant": self.variant,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class Failure:
    key: str
    error_code: str  # FLAG_NOT_FOUND, TARGETING_KEY_MISSING, INVALID_CONTEXT, PARSE_ERROR, GENERAL
    details: str
    status: int

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "errorCode": self.error_code, "errorDetails": self.details}


Result = Success | Failure


def not_found(key: str, environment: ServedEnvironment | None) -> Failure:
    where = (
        f" in {environment.application_key}/{environment.environment_key}" if environment else ""
    )
    return Failure(key, "FLAG_NOT_FOUND", f"No flag “{key[:64]}” is deployed{where}.", 404)


def choose_flag(
    environment: ServedEnvironment, key: str, targeting_key: str | None
) -> CompiledFlag | None:
    """The flag's definition this targeting key is served (stable or rollout candidate)."""
    stable = environment.stable.flags.get(key) if environment.stable else None
    candidate_version = environment.candidate
    if candidate_version is None or not targeting_key or environment.candidate_percentage <= 0:
        return stable
    if sticky_bucket(targeting_key, key) < environment.candidate_percentage:
        return candidate_version.flags.get(key)
    return stable


def _serve(flag: CompiledFlag, variant: str, reason: str) -> Result:
    if variant not in flag.variants:  # a version saved before its rules were checked
        return Failure(
            flag.key, "GENERAL", f"“{flag.key}” serves an unknown variant “{variant}”.", 500
        )
    return Success(flag.key, flag.variants[variant], variant, reason, flag.metadata)


def evaluate_flag(
    flag: CompiledFlag,
    context: Mapping[str, Any],
    targeting_key: str | None,
    now: float | None = None,
) -> Result:
    if flag.error:  # its definition could not be compiled (logged when the snapshot loaded)
        return Failure(flag.key, "PARSE_ERROR", flag.error, 400)
    if not flag.enabled:
        return _serve(flag, flag.off_variant, "DISABLED")
    if flag.rules:
        moment = time.time() if now is None else now
        for rule in flag.rules:
            if not rule.matches(context, moment):
                continue
            if rule.variant is not None:
                return _serve(flag, rule.variant, "TARGETING_MATCH")
            if not targeting_key:
                return Failure(
                    flag.key,
                    "TARGETING_KEY_MISSING",
                    f"Rule {rule.index} of “{flag.key}” splits by percentage: send a "
                    "targetingKey in the context.",
                    400,
                )
            variant = rule.split_variant(targeting_key, flag.key)
            return _serve(flag, variant, "SPLIT")
    reason = "DEFAULT" if flag.rules else "STATIC"
    return _serve(flag, flag.default_variant, reason)


def evaluate(
    environment: ServedEnvironment,
    key: str,
    context: Mapping[str, Any],
    targeting_key: str | None,
    now: float | None = None,
) -> Result:
    flag = choose_flag(environment, key, targeting_key)
    if flag is None:
        return not_found(key, environment)
    return evaluate_flag(flag, context, targeting_key, now)


def evaluate_all(
    environment: ServedEnvironment,
    context: Mapping[str, Any],
    targeting_key: str | None,
    now: float | None = None,
) -> list[Result]:
    """Every flag the environment serves this targeting key, sorted by key."""
    moment = time.time() if now is None else now
    results: list[Result] = []
    for key in environment.flag_keys:
        flag = choose_flag(environment, key, targeting_key)
        if flag is not None:
            results.append(evaluate_flag(flag, context, targeting_key, moment))
    return results
