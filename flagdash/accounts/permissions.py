"""Server-side permission checks used by every view, API endpoint, command and task.

viewer: reads everything. editor: changes flags in environments that are not protected.
admin: everything, including protected environments and settings. A user without a role
(an outsider) may not even read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied

from flagdash.accounts.models import ROLE_RANK, Role

if TYPE_CHECKING:
    from flagdash.flags.models import Environment


def role_of(user: Any) -> Role | None:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    if user.is_superuser:
        return Role.ADMIN
    try:
        return Role(user.membership.role)
    except ObjectDoesNotExist:
        return None


def has_role(user: Any, role: Role) -> bool:
    current = role_of(user)
    return current is not None and ROLE_RANK[current] >= ROLE_RANK[role]


def can_view(user: Any) -> bool:
    return has_role(user, Role.VIEWER)


def can_edit_environment(user: Any, environment: Environment) -> bool:
    if environment.protected:
        return has_role(user, Role.ADMIN)
    return has_role(user, Role.EDITOR)


def can_edit_flags(user: Any) -> bool:
    """May change flag definitions (they apply to every environment's next version)."""
    return has_role(user, Role.EDITOR)


def can_admin(user: Any) -> bool:
    return has_role(user, Role.ADMIN)


def require_view(user: Any) -> None:
    if not can_view(user):
        raise PermissionDenied("You have no role in flagdash; ask an admin for access.")


def require_edit_flags(user: Any) -> None:
    if not can_edit_flags(user):
        raise PermissionDenied("Only editors and admins can change flags.")


def require_edit_environment(user: Any, environment: Environment) -> None:
    if not can_edit_environment(user, environment):
        if environment.protected:
            raise PermissionDenied(f"{environment.name} is protected: only admins can change it.")
        raise PermissionDenied("Only editors and admins can change flags.")


def require_admin(user: Any) -> None:
    if not can_admin(user):
        raise PermissionDenied("Only admins can do this.")
