"""What an htmx request wants back, decided in one place."""

from __future__ import annotations

from django.http import HttpRequest


def is_partial(request: HttpRequest) -> bool:
    """True for an htmx request that wants a fragment of the page.

    A boosted navigation and a history restore (the Back button, with htmx's history cache
    off) want the whole page.
    """
    htmx = getattr(request, "htmx", None)
    if htmx is None or not htmx:
        return False
    return not htmx.boosted and not htmx.history_restore_request
