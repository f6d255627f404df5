"""The canonical configuration document of an environment, as a ConfigVersion stores it.

A version is this document serialised as canonical JSON. Backends render it into their own
format (AWS feature-flag document, Azure feature-flag settings, the built-in store).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flagdash.core.canonical import canonical_json, sha256_hex
from flagdash.core.diff import Change, diff
from flagdash.flags.models import Environment, Flag, FlagAttribute, FlagSetting

SCHEMA_VERSION = 1


def attribute_definition(attr: FlagAttribute) -> dict[str, Any]:
    constraint: dict[str, Any] = {}
    if attr.pattern:
        constraint["pattern"] = attr.pattern
    if attr.enum:
        constraint["enum"] = list(attr.enum)
    if attr.minimum is not None:
        constraint["minimum"] = attr.minimum
    if attr.maximum is not None:
        constraint["maximum"] = attr.maximum
    return {
        "type": attr.type,
        "description": attr.description,
        "required": attr.required,
        "constraint": constraint,
    }


def flag_entry(
    flag: Flag, setting: FlagSetting, attributes: Iterable[FlagAttribute]
) -> dict[str, Any]:
    """One flag's definition and its values in one environment."""
    entry: dict[str, Any] = {
        "name": flag.name,
        "description": flag.description,
        "kind": flag.kind,
        "value_type": flag.value_type,
        "short_term": flag.short_term,
        "remove_by": flag.remove_by.isoformat() if flag.remove_by else None,
        "attributes": {a.name: attribute_definition(a) for a in attributes},
        "enabled": setting.enabled,
        "attribute_values": dict(sorted(setting.attribute_values.items())),
    }
    if flag.is_multivariant:
        entry["variants"] = list(setting.variants)
        entry["default_variant"] = setting.default_variant
    if setting.rules:
        # Only when there are rules, so versions saved before rules existed compare unchanged.
        entry["rules"] = list(setting.rules)
    return entry


def empty_document(environment: Environment) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "application": environment.application.key,
        "environment": environment.key,
        "flags": {},
    }


def working_document(environment: Environment) -> dict[str, Any]:
    """The environment's current working state: every flag that is not archived."""
    document = empty_document(environment)
    settings = (
        FlagSetting.objects.filter(environment=environment, flag__archived_at__isnull=True)
        .select_related("flag")
        .order_by("flag__key")
    )
    attributes: dict[int, list[FlagAttribute]] = {}
    for attr in FlagAttribute.objects.filter(
        flag__application_id=environment.application_id, flag__archived_at__isnull=True
    ).order_by("position", "id"):
        attributes.setdefault(attr.flag_id, []).append(attr)
    for setting in settings:
        document["flags"][setting.flag.key] = flag_entry(
            setting.flag, setting, attributes.get(setting.flag_id, [])
        )
    return document


def flag_digests(document: dict[str, Any]) -> dict[str, str]:
    """sha256 of each flag's canonical entry: equal digests, unchanged flag."""
    return {key: sha256_hex(canonical_json(entry)) for key, entry in document["flags"].items()}


def load(document_text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(document_text)
    return value


@dataclass(frozen=True)
class FlagDiff:
    key: str
    status: str  # "added" | "removed" | "changed"
    changes: list[Change]


def document_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[FlagDiff]:
    """Per-flag differences between two documents, flags sorted by key."""
    old_flags = (old or {}).get("flags", {})
    new_flags = (new or {}).get("flags", {})
    result: list[FlagDiff] = []
    for key in sorted(set(old_flags) | set(new_flags)):
        before, after = old_flags.get(key), new_flags.get(key)
        if before is None:
            result.append(FlagDiff(key, "added", diff(None, after)))
        elif after is None:
            result.append(FlagDiff(key, "removed", diff(before, None)))
        else:
            changes = diff(before, after)
            if changes:
                result.append(FlagDiff(key, "changed", changes))
    return result
