"""Personal API tokens: create, revoke, and authenticate a request's bearer token.

A token is ``fdp_`` followed by 40 URL-safe random characters (240 bits). Only its SHA-256 is
stored, so a database dump reveals no usable token; the plaintext is returned once, by
``api_token_create``, and is never logged or audited. A user manages their own tokens; admins
may also revoke anyone's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from flagdash.accounts import permissions
from flagdash.accounts.models import ApiToken
from flagdash.audit.models import Action
from flagdash.audit.services import audit_record
from flagdash.core.errors import field_error
from flagdash.core.parsing import single_line_name

TOKEN_PREFIX = "fdp_"  # noqa: S105 (a public marker, not a secret)
TOKEN_RANDOM_CHARS = 40
TOKEN_PATTERN = re.compile(r"^fdp_[A-Za-z0-9_-]{40}$")
MAX_NAME = 100
MAX_ACTIVE_TOKENS = 50
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def token_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _new_plaintext() -> str:
    # 30 random bytes are exactly 40 URL-safe base64 characters (no padding).
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_RANDOM_CHARS * 3 // 4)


def _snapshot(token: ApiToken) -> dict[str, Any]:
    """What the audit log keeps of a token: never the token or its hash."""
    return {
        "user": token.user.get_username(),
        "name": token.name,
        "prefix": token.prefix,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked": token.revoked_at is not None,
    }


def _clean_name(name: Any) -> str:
    return single_line_name(
        name, max_length=MAX_NAME, required="Give the token a name (what will use it?)."
    )


def _active(user: Any, now: dt.datetime) -> Any:
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).exclude(expires_at__lte=now)


@transaction.atomic(durable=True)
def api_token_create(
    *, actor: Any, user: Any, name: str, expires_at: dt.datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the plaintext (shown once, never stored).

    People create tokens only for themselves, and only with a role (a token acts as its user).
    ``actor=None`` is the trusted command line (``manage.py create_api_token``).
    """
    if actor is not None:
        if actor.pk != user.pk:
            raise PermissionDenied("You can create API tokens only for yourself.")
        permissions.require_view(actor)
    if not user.is_active:
        raise field_error("user", f"{user.get_username()} is not active.", "inactive_user")
    name = _clean_name(name)
    now = timezone.now()
    if expires_at is not None:
        if timezone.is_naive(expires_at):
            raise field_error("expires_at", "Give a time zone with the expiry.", "invalid")
        if expires_at <= now:
            raise field_error("expires_at", "The expiry must be in the future.", "in_past")
    active = _active(user, now)
    if active.filter(name=name).exists():
        raise field_error("name", f"You already have an active token named “{name}”.", "duplicate")
    if active.count() >= MAX_ACTIVE_TOKENS:
        raise field_error(
            "name", f"At most {MAX_ACTIVE_TOKENS} active tokens; revoke one first.", "too_many"
        )
    plaintext = _new_plaintext()
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=plaintext[:8],
        token_hash=token_hash(plaintext),
        expires_at=expires_at,
    )
    audit_record(
        actor=actor,
        action=Action.API_TOKEN_CREATED,
        target_type="api_token",
        target_id=token.pk,
        target_repr=f"{user.get_username()}: {name} ({token.prefix}…)",
        after=_snapshot(token),
    )
    return token, plaintext


@transaction.atomic(durable=True)
def api_token_revoke(*, actor: Any, token: ApiToken) -> ApiToken:
    """Revoke a token at once (its owner, or an admin)."""
    token = ApiToken.objects.select_for_update().select_related("user").get(pk=token.pk)
    if actor is not None and actor.pk != token.user_id and not permissions.can_admin(actor):
        raise PermissionDenied("You can revoke only your own tokens.")
    if token.revoked_at is not None:
        raise field_error("token", f"“{token.name}” is already revoked.", "no_change")
    before = _snapshot(token)
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action=Action.API_TOKEN_REVOKED,
        target_type="api_token",
        target_id=token.pk,
        target_repr=f"{token.user.get_username()}: {token.name} ({token.prefix}…)",
        before=before,
        after=_snapshot(token),
    )
    return token


def api_token_authenticate(plaintext: str) -> ApiToken | None:
    """The live token for ``plaintext`` (its user attached), or None.

    None for a malformed, unknown, revoked or expired token, or an inactive user. Records
    ``last_used_at`` at most once a minute (bookkeeping, not audited).
    """
    if not TOKEN_PATTERN.match(plaintext):
        return None
    digest = token_hash(plaintext)
    token = ApiToken.objects.select_related("user").filter(token_hash=digest).first()
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    now = timezone.now()
    if token.revoked_at is not None or token.is_expired(now) or not token.user.is_active:
        return None
    if token.last_used_at is None or token.last_used_at <= now - LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).exclude(
            last_used_at__gt=now - LAST_USED_RESOLUTION
        ).update(last_used_at=now)
        token.last_used_at = now
    return token


def tokens_of(user: Any) -> list[ApiToken]:
    return list(ApiToken.objects.filter(user=user).order_by("-created_at", "-id"))


def other_active_tokens(user: Any) -> list[ApiToken]:
    """Everyone else's live tokens (the admin's view, to revoke a leaked one)."""
    now = timezone.now()
    return list(
        ApiToken.objects.filter(revoked_at__isnull=True)
        .exclude(user=user)
        .exclude(expires_at__lte=now)
        .select_related("user")
        .order_by("user__username", "-created_at")
    )
