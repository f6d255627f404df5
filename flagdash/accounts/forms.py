from __future__ import annotations

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
    name = forms.CharField(max_length=64)
    protected = forms.BooleanField(required=False)


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
