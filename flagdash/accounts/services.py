"""Users and roles."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from flagdash.accounts import permissions
from flagdash.accounts.models import Membership, Role
from flagdash.audit.models import Action
from flagdash.audit.services import audit_record

User = get_user_model()


def _admin_count() -> int:
    return (
        User.objects.filter(is_active=True, membership__role=Role.ADMIN).count()
        + User.objects.filter(is_active=True, is_superuser=True)
        .exclude(membership__role=Role.ADMIN)
        .count()
    )


@transaction.atomic(durable=True)
def user_create(
    *,
    actor: Any,
    username: str,
    password: str,
    role: Role | str | None,
    email: str = "",
    check_password: bool = True,
) -> Any:
    if actor is not None:
        permissions.require_admin(actor)
    if User.objects.filter(username=username).exists():
        raise ValidationError(
            {"username": ValidationError(f"“{username}” is taken.", code="duplicate")}
        )
    user = User(username=username, email=email)
    if check_password:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise ValidationError({"password": exc}) from exc
    user.set_password(password)
    user.save()
    if role:
        Membership.objects.create(user=user, role=Role(role))
    audit_record(
        actor=actor,
        action=Action.USER_CREATED,
        target_type="user",
        target_id=user.pk,
        target_repr=username,
        after={"username": username, "email": email, "role": str(role) if role else None},
    )
    return user


@transaction.atomic(durable=True)
def user_set_password(*, actor: Any, user: Any, password: str, reason: str) -> Any:
    """Set a password (the demo seeder's reset); the password itself is never recorded."""
    if actor is not None:
        permissions.require_admin(actor)
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(
        actor=actor,
        action=Action.USER_PASSWORD_SET,
        target_type="user",
        target_id=user.pk,
        target_repr=user.get_username(),
        after={"reason": reason},
    )
    return user


@transaction.atomic(durable=True)
def user_set_role(*, actor: Any, user: Any, role: Role | str | None) -> Any:
    """Give a user a role, or none (no access). The last admin cannot be demoted."""
    if actor is not None:
        permissions.require_admin(actor)
    if role and role not in Role.values:
        raise ValidationError({"role": ValidationError("Unknown role.", code="invalid_choice")})
    # Lock every admin membership first, so two admins demoting each other at once cannot
    # both pass the last-admin check.
    list(Membership.objects.select_for_update().filter(role=Role.ADMIN).values_list("pk"))
    membership = Membership.objects.select_for_update().filter(user=user).first()
    before = membership.role if membership else None
    after = str(role) if role else None
    if before == after:
        return user
    if before == Role.ADMIN and not user.is_superuser and _admin_count() <= 1:
        raise ValidationError(
            {"role": ValidationError("flagdash needs at least one admin.", code="last_admin")}
        )
    if after is None:
        if membership:
            membership.delete()
    elif membership:
        membership.role = after
        membership.save(update_fields=["role", "updated_at"])
    else:
        Membership.objects.create(user=user, role=after)
    audit_record(
        actor=actor,
        action=Action.USER_ROLE_CHANGED,
        target_type="user",
        target_id=user.pk,
        target_repr=user.get_username(),
        before={"role": before},
        after={"role": after},
    )
    return user
