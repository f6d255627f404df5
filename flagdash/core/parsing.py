"""Parsing what people type into URLs and forms, without surprises."""

from __future__ import annotations

import math
import re
from typing import Any

from django.core.exceptions import ValidationError

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


_INTEGER = re.compile(r"[+-]?[0-9]+")


def form_number(raw: str) -> int | float:
    """A number typed into a form: an int when it is written as one, else a finite float.

    Raises ValidationError (code ``wrong_type``) with a message for the field.
    """
    text = raw.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        value = float(text)
    except ValueError as exc:
        raise ValidationError("Enter a number.", code="wrong_type") from exc
    if not math.isfinite(value):
        raise ValidationError("Enter a finite number.", code="wrong_type")
    return value


def single_line_name(name: Any, *, max_length: int, required: str) -> str:
    """A name a person gives a key or token: non-empty, one line, at most ``max_length``.

    Raises a field error on ``name`` (codes ``required``, ``too_long``, ``invalid``).
    """
    from flagdash.core.errors import field_error

    if not isinstance(name, str) or not name.strip():
        raise field_error("name", required, "required")
    name = name.strip()
    if len(name) > max_length:
        raise field_error(
            "name", f"At most {max_length} characters (this is {len(name)}).", "too_long"
        )
    if any(ch in name for ch in "\r\n\x00"):
        raise field_error("name", "A name is a single line.", "invalid")
    return name
