"""Errors services raise: one field, one code, one message a person can act on."""

from __future__ import annotations

from django.core.exceptions import ValidationError


def field_error(field_name: str, message: str, code: str) -> ValidationError:
    """A ValidationError for one field, shown next to it (HTML) or under it (JSON)."""
    return ValidationError({field_name: ValidationError(message, code=code)})
