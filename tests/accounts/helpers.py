"""Helpers for the settings tests: what the database holds, and the text of one element."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from django.contrib.auth import get_user_model

from flagdash.accounts.models import Membership
from flagdash.audit.models import AuditEvent
from flagdash.flags.models import Application, ConfigVersion, Environment, FlagSetting

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


def state() -> dict[str, Any]:
    """Everything a settings write could change, to compare before and after a request."""
    return {
        "applications": list(Application.objects.order_by("pk").values_list("key", "name")),
        "environments": list(
            Environment.objects.order_by("pk").values_list("key", "name", "protected")
        ),
        "users": list(get_user_model().objects.order_by("pk").values_list("username", "email")),
        "roles": list(Membership.objects.order_by("user_id").values_list("user_id", "role")),
        "settings": FlagSetting.objects.count(),
        "versions": ConfigVersion.objects.count(),
        "audit_events": AuditEvent.objects.count(),
    }


class _TextOf(HTMLParser):
    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id = element_id
        self.depth = 0
        self.found = False
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            if tag not in VOID:
                self.depth += 1
        elif dict(attrs).get("id") == self.element_id and not self.found:
            self.found = True
            self.depth = 0 if tag in VOID else 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


def text_of(html: str, element_id: str) -> str | None:
    """The text inside the element with this id, or None when there is no such element."""
    parser = _TextOf(element_id)
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split()) if parser.found else None


def attribute_of(html: str, element_id: str, attribute: str) -> str | None:
    """One attribute of the element with this id."""
    found: dict[str, str | None] = {}

    class _Attr(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = dict(attrs)
            if values.get("id") == element_id and "done" not in found:
                found["done"] = ""
                found["value"] = values.get(attribute)

    _Attr().feed(html)
    return found.get("value")
