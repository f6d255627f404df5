"""Helpers to write audit events quickly, with a chosen time, source and content."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.db import transaction

from flagdash.audit.models import Action, AuditEvent
from flagdash.audit.services import audit_record
from flagdash.core import context


def _record(
    n: int = 1,
    *,
    at: dt.datetime | None = None,
    source: str = "web",
    client_ip: str | None = "192.0.2.10",
    request_id: str | None = None,
    **fields: Any,
) -> list[AuditEvent]:
    fields.setdefault("actor", None)
    fields.setdefault("action", Action.FLAG_UPDATED)
    fields.setdefault("target_type", "flag")
    events = []
    # audit_record stamps events with timezone.now(); pin it to write events in the past.
    patch = (
        mock.patch("flagdash.audit.services.timezone.now", return_value=at)
        if at
        else contextlib.nullcontext()
    )
    with (
        context.bind(source=source, request_id=request_id, client_ip=client_ip),
        patch,
        transaction.atomic(),
    ):
        for _ in range(n):
            events.append(audit_record(**fields))
    return events


@pytest.fixture
def record(db: Any) -> Callable[..., list[AuditEvent]]:
    """record(n, at=..., source=..., actor=..., action=..., flag=..., before=..., after=...)."""
    return _record
