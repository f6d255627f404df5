"""The flag page's lifecycle parts: code references, and where an archived flag is still served."""

from __future__ import annotations

from typing import Any

from django import template

from flagdash.flags.models import Flag
from flagdash.lifecycle import selectors

register = template.Library()


@register.inclusion_tag("lifecycle/fragments/code_references.html", takes_context=True)
def code_references(context: template.Context, flag: Flag) -> dict[str, Any]:
    """The last scan's references to the flag, grouped by file (at most three queries)."""
    return {
        "flag": flag,
        "application": context.get("application"),
        "refs": selectors.references_of(flag),
    }


@register.inclusion_tag("lifecycle/fragments/served_notes.html")
def archived_served_notes(flag: Flag) -> dict[str, Any]:
    """For an archived flag: the environments that still serve it and why (none otherwise)."""
    return {"notes": selectors.archived_but_served(flag), "app_key": flag.application.key}
