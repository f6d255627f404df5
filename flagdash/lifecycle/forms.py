"""Forms of the short-term page."""

from __future__ import annotations

from typing import Any

from django import forms

from flagdash.flags.models import Flag


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
