"""Forms of the short-term page, and the check of a selection of flags to archive or restore."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from flagdash.flags.models import Application, Flag

MAX_SELECTED = 500
_KEY = re.compile(r"[a-z][a-z0-9_-]{0,63}")  # KEY_PATTERN, whole string (``$`` allows a "\n")


class RowForm(forms.Form):
    """The inline edit of one row: lifetime, owner, remove-by date."""

    lifetime = forms.ChoiceField(
        choices=[("short_term", "Short-term"), ("permanent", "Permanent")], label="Lifetime"
    )
    owner = forms.CharField(required=False, max_length=150, label="Owner")
    remove_by = forms.DateField(
        required=False,
        label="Remove by",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )

    def __init__(self, *args: Any, flag: Flag, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", f"f{flag.pk}")
        kwargs.setdefault(
            "initial",
            {
                "lifetime": "short_term" if flag.short_term else "permanent",
                "owner": flag.owner.username if flag.owner else "",
                "remove_by": flag.remove_by,
            },
        )
        super().__init__(*args, **kwargs)


def _shown(key: str) -> str:
    """A key as it can be shown in a message: cut, with control characters escaped."""
    return ascii(key[:64])[1:-1] + ("…" if len(key) > 64 else "")


def selected_flags(application: Application, keys: Sequence[str], *, archived: bool) -> list[Flag]:
    """The application's flags with these keys, sorted by key, all archived (``archived``) or
    all active; raises ValidationError (see ``check_selection``) if any key is not."""
    flags, errors = check_selection(application, keys, archived=archived)
    if errors:
        raise ValidationError(errors)
    return flags


def check_selection(
    application: Application, keys: Sequence[str], *, archived: bool
) -> tuple[list[Flag], list[ValidationError]]:
    """The selected flags that are the application's and in the wanted state (sorted by key),
    and an error for every key that is not: not a flag key (code ``invalid``: a NUL, a space,
    capitals …), a flag of another application (``other_application``), not one of this
    application's flags in that state (``unknown_flag``); or for an empty or too long
    selection (``required``, ``too_many``). Two queries at most, whatever the size."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return [], [ValidationError("Select at least one flag.", code="required")]
    if len(wanted) > MAX_SELECTED:
        message = f"Select at most {MAX_SELECTED} flags at once (got {len(wanted)})."
        return [], [ValidationError(message, code="too_many")]
    errors: list[ValidationError] = []
    invalid = [k for k in wanted if not isinstance(k, str) or not _KEY.fullmatch(k)]
    if invalid:
        shown = ", ".join(f"“{_shown(k)}”" for k in invalid[:10])
        errors.append(
            ValidationError(
                f"Not a flag key: {shown} (lowercase letters, digits, - and _).", code="invalid"
            )
        )
    valid = [k for k in wanted if k not in invalid]
    found = {
        f.key: f
        for f in Flag.objects.filter(application=application, key__in=valid).select_related(
            "owner", "application"
        )
    }
    elsewhere: dict[str, str] = {}
    unknown = [k for k in valid if k not in found]
    if unknown:
        for key, app_name in (
            Flag.objects.filter(key__in=unknown)
            .exclude(application=application)
            .order_by("application__name")
            .values_list("key", "application__name")
        ):
            elsewhere.setdefault(key, app_name)
    for key in unknown:
        if key in elsewhere:
            errors.append(
                ValidationError(
                    f"{key} is a flag of {elsewhere[key]}, not of {application.name}.",
                    code="other_application",
                )
            )
    missing = [
        k
        for k in valid
        if (k not in found and k not in elsewhere)
        or (k in found and (found[k].archived_at is not None) != archived)
    ]
    if missing:
        state = "archived" if archived else "active"
        errors.append(
            ValidationError(
                f"No {state} flag {', '.join(missing[:10])} in {application.name} "
                "(changed meanwhile?).",
                code="unknown_flag",
            )
        )
    chosen = [f for k, f in sorted(found.items()) if (f.archived_at is not None) == archived]
    return chosen, errors
