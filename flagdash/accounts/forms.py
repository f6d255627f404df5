from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm

from flagdash.accounts import throttle
from flagdash.accounts.models import Role
from flagdash.core.middleware import client_ip


class LoginForm(AuthenticationForm):
    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request) if self.request else None
        if throttle.is_locked(username, ip):
            minutes = max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)
            raise forms.ValidationError(
                f"Too many failed attempts. Try again in {minutes} minutes.", code="throttled"
            )
        return super().clean()


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=[("", "No access"), *Role.choices], required=False)
