"""Navigation context: the current application, the list to switch between, the user's role."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from flagdash.accounts.permissions import can_admin, can_edit_flags, role_of


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "user_role": role_of(user),
        "user_can_edit": can_edit_flags(user),
        "user_is_admin": can_admin(user),
    }
