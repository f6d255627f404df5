"""Who and where a change comes from, carried implicitly through one request or task.

The audit log records a request id, a source and the client address for every event. Views,
tasks and commands bind them once here; services read them without threading them through
every call.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

SOURCES = ("web", "api", "worker", "cli", "alarm", "system")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


@dataclass(frozen=True)
class ChangeContext:
    request_id: str
    source: str = "system"
    client_ip: str | None = None


_current: contextvars.ContextVar[ChangeContext | None] = contextvars.ContextVar(
    "flagdash_change_context", default=None
)


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str:
    """Accept a caller's X-Request-ID only if it is short and plain; otherwise make one."""
    if value and _REQUEST_ID.match(value):
        return value
    return new_request_id()


def current() -> ChangeContext:
    ctx = _current.get()
    if ctx is None:
        ctx = ChangeContext(request_id=new_request_id())
        _current.set(ctx)
    return ctx


@contextmanager
def bind(
    *, source: str, request_id: str | None = None, client_ip: str | None = None
) -> Iterator[ChangeContext]:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    ctx = ChangeContext(
        request_id=request_id or new_request_id(), source=source, client_ip=client_ip
    )
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


@contextmanager
def override_source(source: str) -> Iterator[ChangeContext]:
    """Keep the request id but record another source (an alarm arriving over HTTP)."""
    ctx = replace(current(), source=source)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
