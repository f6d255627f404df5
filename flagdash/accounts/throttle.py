"""Pause logins after repeated failures, per username and per client address (cache-backed).

Each key holds (failures, time of the first failure) and expires a fixed window after that
first failure, on every cache backend (an ``incr`` would reset the expiry on some of them).
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache


def _keys(username: str, ip: str | None) -> list[str]:
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    keys = [f"login-fail:user:{name}"]
    if ip:
        keys.append(f"login-fail:ip:{ip}")
    return keys


def _failures(key: str) -> int:
    entry = cache.get(key)
    return entry[0] if isinstance(entry, tuple) else 0


def is_locked(username: str, ip: str | None) -> bool:
    limit = settings.LOGIN_FAILURE_LIMIT
    return any(_failures(k) >= limit for k in _keys(username, ip))


def record_failure(username: str, ip: str | None) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    now = time.time()
    for key in _keys(username, ip):
        entry = cache.get(key)
        count, first = entry if isinstance(entry, tuple) else (0, now)
        remaining = max(1, int(first + window - now))
        cache.set(key, (count + 1, first), remaining)


def first_refusal(username: str, ip: str | None) -> bool:
    """True once per client address (or username, without one) and window.

    The audit log records the lock-out, not every refused attempt: a client hammering the
    login form, even with a new username each time, adds one event per window.
    """
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    return bool(cache.add(f"{_keys(username, ip)[-1]}:refused", 1, window))


def clear(username: str, ip: str | None) -> None:
    user_key = _keys(username, ip)[0]
    cache.delete_many([user_key, f"{user_key}:refused"])
