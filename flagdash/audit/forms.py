"""The audit log's filter form: it reads the query string of the page and of the exports."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, cast

from django import forms
from django.http import QueryDict

from flagdash.audit.models import Action, Source
from flagdash.audit.selectors import AuditFilters, FilterChoices
from flagdash.flags.models import KEY_PATTERN

FLAG_KEY = re.compile(KEY_PATTERN)
# Dates outside this span are typos; refusing them also keeps day arithmetic from overflowing.
MIN_DATE = dt.date(1970, 1, 1)
MAX_DATE = dt.date(9999, 12, 30)
FILTER_FIELDS = ("actor", "action", "application", "environment", "flag", "from", "to", "source")


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%d", **kwargs)


class AuditFilterForm(forms.Form):
    """Filters kept in the URL. ``from`` and ``to`` are Python keywords, so they are added in
    ``__init__``; ``before`` is the keyset cursor of the page (not a filter, never exported)."""

    actor = forms.CharField(
        required=False,
        max_length=150,
        label="Actor",
        widget=forms.TextInput(
            attrs={"list": "audit-actors", "autocomplete": "off", "placeholder": "username"}
        ),
    )
    action = forms.ChoiceField(
        required=False, label="Action", choices=[("", "Any action"), *Action.choices]
    )
    application = forms.ChoiceField(required=False, label="Application")
    environment = forms.ChoiceField(required=False, label="Environment")
    flag = forms.CharField(
        required=False,
        max_length=64,
        label="Flag key",
        widget=forms.TextInput(attrs={"placeholder": "flag-key", "spellcheck": "false"}),
    )
    source = forms.ChoiceField(
        required=False, label="Source", choices=[("", "Any source"), *Source.choices]
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, data: Any = None, *, choices: FilterChoices, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.fields["from"] = forms.DateField(
            required=False, label="From", widget=DateInput(), input_formats=["%Y-%m-%d"]
        )
        self.fields["to"] = forms.DateField(
            required=False, label="To", widget=DateInput(), input_formats=["%Y-%m-%d"]
        )
        self.order_fields([*FILTER_FIELDS, "before"])
        application = cast(forms.ChoiceField, self.fields["application"])
        application.choices = [("", "Any application"), *choices.applications]
        environment = cast(forms.ChoiceField, self.fields["environment"])
        environment.choices = [("", "Any environment"), *choices.environments]
        self.actor_suggestions = choices.actors

    def clean_actor(self) -> str:
        return self.cleaned_data["actor"].strip()

    def clean_flag(self) -> str:
        key = self.cleaned_data["flag"].strip().lower()
        if key and not FLAG_KEY.match(key):
            raise forms.ValidationError(
                "Not a flag key: lowercase letter first, then letters, digits, '-' or '_'.",
                code="invalid_key",
            )
        return key

    def _clean_date(self, name: str) -> dt.date | None:
        value: dt.date | None = self.cleaned_data.get(name)
        if value is not None and not MIN_DATE <= value <= MAX_DATE:
            raise forms.ValidationError(
                "Enter a date between %(min)s and %(max)s.",
                code="out_of_range",
                params={"min": MIN_DATE.isoformat(), "max": MAX_DATE.isoformat()},
            )
        return value

    def clean_from(self) -> dt.date | None:
        return self._clean_date("from")

    def clean_to(self) -> dt.date | None:
        return self._clean_date("to")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("from"), cleaned.get("to")
        if start and end and start > end:
            self.add_error("to", "The end date is before the start date.")
        return cleaned

    def filters(self) -> AuditFilters:
        """The cleaned filters; call only when the form is valid."""
        data = self.cleaned_data
        return AuditFilters(
            actor=data.get("actor", ""),
            action=data.get("action", ""),
            application=data.get("application", ""),
            environment=data.get("environment", ""),
            flag=data.get("flag", ""),
            date_from=data.get("from"),
            date_to=data.get("to"),
            source=data.get("source", ""),
        )

    def filter_query(self) -> str:
        """The valid, non-empty filters as a query string (no cursor), for links and exports."""
        query = QueryDict(mutable=True)
        data = self.cleaned_data if self.is_bound and not self.errors else {}
        for name in FILTER_FIELDS:
            value = data.get(name)
            if value:
                query[name] = value.isoformat() if isinstance(value, dt.date) else str(value)
        return query.urlencode()

    def error_dict(self) -> dict[str, list[str]]:
        return {name: [str(m) for m in errors] for name, errors in self.errors.items()}
