"""Audit logins, logouts and failed logins (Django's auth signals are the only hook for them)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from flagdash.accounts import throttle
from flagdash.audit.models import Action
from flagdash.audit.services import audit_record_standalone
from flagdash.core.middleware import client_ip


@receiver(user_logged_in)
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None:
        throttle.clear(user.get_username(), client_ip(request))
    audit_record_standalone(
        actor=user,
        action=Action.LOGIN,
        target_type="user",
        target_id=user.pk,
        target_repr=user.get_username(),
    )


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    audit_record_standalone(
        actor=user,
        action=Action.LOGOUT,
        target_type="user",
        target_id=user.pk,
        target_repr=user.get_username(),
    )


@receiver(user_login_failed)
def _login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    username = str(credentials.get("username", ""))[:150]
    ip = client_ip(request) if request is not None else None
    throttle.record_failure(username, ip)
    audit_record_standalone(
        actor=None,
        actor_name=username,
        action=Action.LOGIN_FAILED,
        target_type="user",
        target_repr=username,
    )
