"""Template helpers for the deployment pages, and the recent-rollback banner for the home page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.utils import timezone

from flagdash.deployments import selectors
from flagdash.deployments.charts import format_percentage, format_seconds

register = template.Library()


@register.filter
def duration(value: dt.timedelta | float | None) -> str:
    """A timedelta (or seconds) as "4 min 05 s"; "—" when unknown."""
    if value is None or value == "":
        return "—"
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    return format_seconds(seconds)


@register.filter
def pct(value: float | None) -> str:
    """A share served as "42 %" (one decimal when needed)."""
    return "—" if value is None or value == "" else format_percentage(float(value))


@register.filter
def took(deployment: Any) -> str:
    """How long a finished deployment ran (started → finished); "—" otherwise."""
    started, finished = deployment.started_at, deployment.finished_at
    return format_seconds((finished - started).total_seconds()) if started and finished else "—"


@register.inclusion_tag("deployments/fragments/rollback_banner.html")
def recent_rollback_banner(application: Any) -> dict[str, Any]:
    """The application's most recent rollback of the last seven days, as a banner (or nothing)."""
    if not application or not getattr(application, "pk", None):
        return {"row": None}
    return {
        "application": application,
        "row": selectors.latest_rollback(application, timezone.now()),
    }
