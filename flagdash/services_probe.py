"""Probe PostgreSQL and Redis for the test settings (kept apart so the probe is testable)."""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured


def _reachable(host: str, port: int, timeout: float = 1.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_or_fallback(
    databases: dict[str, Any], redis_url: str, var_dir: Path, *, ci: bool
) -> tuple[dict[str, Any], dict[str, Any], bool, bool]:
    """Return (DATABASES, CACHES, postgres_available, redis_available).

    With ``ci`` a missing service raises ImproperlyConfigured: CI must test the real thing.
    """
    db = databases["default"]
    postgres = "postgresql" in db["ENGINE"]
    pg_up = postgres and _reachable(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
    redis = urlparse(redis_url)
    redis_up = _reachable(redis.hostname or "127.0.0.1", redis.port or 6379)

    missing = [
        name for name, up in (("PostgreSQL", pg_up or not postgres), ("Redis", redis_up)) if not up
    ]
    if missing and ci:
        raise ImproperlyConfigured(
            f"CI=true but {', '.join(missing)} is not reachable: the suite needs the real services."
        )
    if postgres and not pg_up:
        warnings.warn("PostgreSQL unreachable: falling back to SQLite (not CI)", stacklevel=2)
        databases = {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(var_dir / "test.sqlite3"),
                "TEST": {"NAME": str(var_dir / "test-db.sqlite3")},
            }
        }
    if redis_up:
        caches = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url,
                "KEY_PREFIX": "flagdash-test" + os.environ.get("FLAGDASH_TEST_DB_SUFFIX", ""),
            }
        }
    else:
        warnings.warn(
            "Redis unreachable: using an in-memory cache and broker (not CI)", stacklevel=2
        )
        caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return databases, caches, pg_up, redis_up
