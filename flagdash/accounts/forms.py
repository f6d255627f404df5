from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.password_validation import password_validators_help_texts
from django.contrib.auth.validators import UnicodeUsernameValidator

from flagdash.accounts import throttle
from flagdash.accounts.models import Role
from flagdash.audit.models import Action
from flagdash.audit.services import audit_record_standalone
from flagdash.core.middleware import client_ip
from flagdash.deployments.models import GrowthType
from flagdash.flags.models import KEY_HELP


class LoginForm(AuthenticationForm):
    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request) if self.request else None
        if throttle.is_locked(username, ip):
            if throttle.first_refusal(username, ip):  # one event per lock-out, not per attempt
                audit_record_standalone(
                    actor=None,
                    actor_name=username[:150],
                    action=Action.LOGIN_FAILED,
                    target_type="user",
                    target_repr=username[:200],
                    after={"reason": "throttled"},
                )
            minutes = max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)
            raise forms.ValidationError(
                f"Too many failed attempts. Try again in {minutes} minutes.", code="throttled"
            )
        return super().clean()


ROLE_CHOICES = [("", "No access"), *Role.choices]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES, required=False)


# Forms parse what the browser posts; the services in flagdash.flags and flagdash.accounts
# decide what is valid (key format, duplicates, password strength) and their errors are put
# back next to the field with ``flagdash.flags.forms.apply_service_errors``.


class ApplicationForm(forms.Form):
    key = forms.CharField(max_length=64, help_text=KEY_HELP)
    name = forms.CharField(max_length=100)
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=1024
    )


class EnvironmentCreateForm(forms.Form):
    key = forms.CharField(max_length=64, help_text=KEY_HELP)
    name = forms.CharField(max_length=64)
    protected = forms.BooleanField(
        required=False, help_text="Only admins can change it, after a confirmation."
    )


class EnvironmentEditForm(forms.Form):
    """``strategies`` are ``(name, label)`` pairs (read once for the whole page)."""

    name = forms.CharField(max_length=64)
    protected = forms.BooleanField(required=False)
    default_strategy = forms.ChoiceField(
        required=False,  # not sent: unchanged (older clients, scripts)
        label="Default strategy",
        help_text="Toggles deploy with it; it is preselected when deploying a version.",
        error_messages={"invalid_choice": "There is no strategy “%(value)s”."},
    )

    def __init__(
        self, *args: Any, strategies: Sequence[tuple[str, str]] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["default_strategy"].choices = list(strategies)  # type: ignore[attr-defined]


class StrategyForm(forms.Form):
    """A deployment strategy of our own. The form parses; ``strategy_save`` checks the ranges."""

    name = forms.CharField(
        max_length=64,
        help_text="Unique; “AppConfig.” and “flagdash.” are reserved for the predefined ones.",
    )
    description = forms.CharField(max_length=500, required=False)
    duration_minutes = forms.IntegerField(
        label="Duration (minutes)",
        help_text="How long the rollout takes to reach 100 % (0–1440; 0 is all at once).",
    )
    growth_type = forms.ChoiceField(
        choices=GrowthType.choices,
        help_text="Linear: the same share every step. Exponential: the share doubles each step.",
    )
    growth_factor = forms.FloatField(
        label="Growth factor (%)",
        help_text="Percent of targets per step (linear) or the first step (exponential), 1–100.",
    )
    final_bake_minutes = forms.IntegerField(
        label="Final bake (minutes)",
        help_text="How long to watch for alarms at 100 % before it is complete (0–1440).",
    )


class UserCreateForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text="Letters, digits and @ . + - _ only.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    email = forms.EmailField(required=False)
    password = forms.CharField(
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    role = forms.ChoiceField(choices=ROLE_CHOICES, required=False, initial=Role.VIEWER)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The rules the service will apply (AUTH_PASSWORD_VALIDATORS), stated up front.
        self.fields["password"].help_text = " ".join(password_validators_help_texts())
