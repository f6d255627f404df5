"""Environment API keys: create (the key is returned once), revoke.

A key is ``fdk_`` followed by 40 URL-safe random characters (240 bits). Only its SHA-256 is
stored: a database dump reveals no usable key. The plaintext is never logged or audited. Keys
are managed by admins in Settings or with ``manage.py create_api_key`` (``actor=None``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from flagdash.accounts import permissions
from flagdash.audit.models import Action
from flagdash.audit.services import audit_record
from flagdash.core.errors import field_error
from flagdash.core.parsing import single_line_name
from flagdash.evaluation.models import ApiKey
from flagdash.flags.models import Environment

KEY_PREFIX = "fdk_"
KEY_RANDOM_CHARS = 40
KEY_PATTERN = re.compile(r"^fdk_[A-Za-z0-9_-]{40}$")
MAX_NAME = 100
MAX_ACTIVE_KEYS = 50
# Evaluating processes keep the active keys in memory; a change replaces this token.
KEYS_TOKEN_CACHE_KEY = "evaluation-keys-token"  # noqa: S105 (a cache key name)


def key_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def new_plaintext() -> str:
    # 30 random bytes are exactly 40 URL-safe base64 characters (no padding).
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_CHARS * 3 // 4)


def keys_changed() -> None:
    """After commit, tell every evaluating process to reload its keys (within a second)."""

    def bump() -> None:
        cache.set(KEYS_TOKEN_CACHE_KEY, secrets.token_hex(8), timeout=None)

    transaction.on_commit(bump, robust=True)


def _snapshot(key: ApiKey) -> dict[str, Any]:
    """What the audit log keeps of a key: never the key or its hash."""
    return {"name": key.name, "prefix": key.prefix, "revoked": key.revoked_at is not None}


def _clean_name(name: Any) -> str:
    return single_line_name(
        name, max_length=MAX_NAME, required="Give the key a name (which application uses it?)."
    )


def _repr(environment: Environment, key: ApiKey) -> str:
    return f"{environment.application.key}/{environment.key}: {key.name} ({key.prefix}…)"


@transaction.atomic(durable=True)
def api_key_create(
    *, actor: Any, environment: Environment, name: str, plaintext: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key for ``environment``; returns the row and the plaintext (shown once).

    Admins only (``actor=None``: the trusted command line and the demo seeder). ``plaintext``
    is for the demo seeder, which keeps its key under var/ so every `make run` prints the same.
    """
    if actor is not None:
        permissions.require_admin(actor)
    environment = Environment.objects.select_related("application").get(pk=environment.pk)
    name = _clean_name(name)
    active = ApiKey.objects.filter(environment=environment, revoked_at__isnull=True)
    if active.filter(name=name).exists():
        raise field_error(
            "name", f"{environment.name} already has an active key named “{name}”.", "duplicate"
        )
    if active.count() >= MAX_ACTIVE_KEYS:
        raise field_error(
            "name", f"At most {MAX_ACTIVE_KEYS} active keys per environment.", "too_many"
        )
    plaintext = plaintext or new_plaintext()
    if not KEY_PATTERN.match(plaintext):
        raise field_error("key", "Not a flagdash API key.", "invalid")
    digest = key_hash(plaintext)
    if ApiKey.objects.filter(key_hash=digest).exists():
        raise field_error("key", "This key exists already.", "duplicate")
    key = ApiKey.objects.create(
        environment=environment,
        name=name,
        prefix=plaintext[:12],
        key_hash=digest,
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action=Action.API_KEY_CREATED,
        target_type="api_key",
        target_id=key.pk,
        target_repr=_repr(environment, key),
        application=environment.application_id,
        environment=environment,
        after=_snapshot(key),
    )
    keys_changed()
    return key, plaintext


@transaction.atomic(durable=True)
def api_key_revoke(*, actor: Any, key: ApiKey) -> ApiKey:
    """Revoke a key: every process refuses it within about a second. Admins only."""
    if actor is not None:
        permissions.require_admin(actor)
    key = (
        ApiKey.objects.select_for_update(of=("self",))
        .select_related("environment__application")
        .get(pk=key.pk)
    )
    if key.revoked_at is not None:
        raise field_error("key", f"“{key.name}” is already revoked.", "no_change")
    before = _snapshot(key)
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action=Action.API_KEY_REVOKED,
        target_type="api_key",
        target_id=key.pk,
        target_repr=_repr(key.environment, key),
        application=key.environment.application_id,
        environment=key.environment,
        before=before,
        after=_snapshot(key),
    )
    keys_changed()
    return key
