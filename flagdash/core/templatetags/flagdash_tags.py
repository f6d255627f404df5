"""Small template helpers shared by the pages."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from flagdash.core.diff import Change, diff

register = template.Library()


@register.filter
def json_inline(value: Any) -> str:
    """A JSON value as compact text: strings unquoted, the rest as JSON (autoescaped)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@register.filter
def json_pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2)


@register.simple_tag(takes_context=True)
def query_with(context: template.Context, **changes: Any) -> str:
    """The current query string with some parameters replaced (empty values dropped)."""
    query = context["request"].GET.copy()
    for key, value in changes.items():
        query.pop(key, None)
        if value not in (None, ""):
            query[key] = value
    return query.urlencode()


@register.filter
def event_changes(event: Any) -> list[Change]:
    """The field-level changes an audit event records (before → after)."""
    return diff(event.before, event.after)


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def ago(value: dt.datetime | None) -> str:
    """“3 hours, 2 minutes ago”, or “just now” under a minute (never “0 minutes ago”)."""
    if value is None:
        return ""
    if (timezone.now() - value).total_seconds() < 60:
        return "just now"
    return f"{timesince(value)} ago"
