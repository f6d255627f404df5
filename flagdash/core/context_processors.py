"""Navigation context: applications to switch between, the current one, the section, the role."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from flagdash.accounts.permissions import can_admin, can_edit_flags, can_view, role_of

SECTIONS = {
    "flag": "flags",
    "short_term": "short_term",
    "version": "versions",
    "deployment": "deployments",
    "rollback": "rollbacks",
    "audit": "audit",
    "settings": "settings",
    "api_token": "settings",
}


def _section(url_name: str) -> str:
    for prefix, section in SECTIONS.items():
        if url_name.startswith(prefix):
            return section
    return ""


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from flagdash.flags.models import Application

    match = request.resolver_match
    app_key = (match.kwargs.get("app_key") if match else None) or request.session.get("app_key")

    # Lazy: HTMX fragments never render the navigation, so they never pay for its query.
    def load() -> list[Application]:
        return list(Application.objects.only("key", "name")) if can_view(user) else []

    applications = SimpleLazyObject(load)

    def pick() -> Application | None:
        found = next((a for a in applications if a.key == app_key), None)
        return found or (applications[0] if applications else None)

    current = SimpleLazyObject(pick)
    return {
        "nav_applications": applications,
        "current_application": current,
        "nav_section": _section(match.url_name or "") if match else "",
        "user_role": role_of(user),
        "user_can_edit": can_edit_flags(user),
        "user_is_admin": can_admin(user),
    }
