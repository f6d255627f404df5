from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms

from flagdash.evaluation.services import MAX_NAME
from flagdash.flags.models import Environment


class ApiKeyForm(forms.Form):
    environment = forms.ChoiceField(
        label="Environment", help_text="The key reads this environment's flags, and only these."
    )
    name = forms.CharField(
        max_length=MAX_NAME, help_text="Which application uses it, e.g. “checkout-web”."
    )

    def __init__(self, *args: Any, environments: Sequence[Environment], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environments = {str(e.pk): e for e in environments}
        self.fields["environment"].choices = [  # type: ignore[attr-defined]
            (str(e.pk), f"{e.application.name} / {e.name}") for e in environments
        ]

    def chosen_environment(self) -> Environment:
        return self.environments[self.cleaned_data["environment"]]
