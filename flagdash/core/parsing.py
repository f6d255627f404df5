"""Parsing what people type into URLs and forms, without surprises."""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only ("²".isdigit() is true); fits in 64 bits


def positive_int(raw: str | None) -> int | None:
    """A whole number ≥ 1 written in ASCII digits, or None."""
    if raw is None or not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if value >= 1 else None


def has_lone_surrogate(text: str) -> bool:
    """JSON's \\ud800 escapes can produce text that is not valid UTF-8 (and cannot be stored)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
