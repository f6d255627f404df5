"""The personal API tokens page: list, create (the token is shown once), revoke."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from flagdash.accounts import permissions, tokens
from flagdash.accounts.models import ApiToken

EXPIRY_CHOICES = [
    ("7", "7 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "1 year"),
    ("never", "Never"),
]


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=tokens.MAX_NAME,
        help_text="What will use it, e.g. “deploy pipeline”.",
    )
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="90", label="Expires in")

    def expires_at(self) -> dt.datetime | None:
        value = self.cleaned_data["expires"]
        return None if value == "never" else timezone.now() + dt.timedelta(days=int(value))


def _apply_errors(form: forms.Form, exc: ValidationError) -> None:
    by_field = exc.error_dict if hasattr(exc, "error_dict") else {None: exc.error_list}
    for field, errors in by_field.items():
        target = field if field in form.fields else None
        for error in errors:
            form.add_error(target, error)


def _page(
    request: HttpRequest, form: TokenForm, *, status: int = 200, **extra: Any
) -> HttpResponse:
    context = {
        "form": form,
        "tokens": tokens.tokens_of(request.user),
        "others": tokens.other_active_tokens(request.user)
        if permissions.can_admin(request.user)
        else [],
        **extra,
    }
    return render(request, "accounts/tokens.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    """GET lists your tokens; POST creates one and shows it this once (never stored)."""
    permissions.require_view(request.user)
    if request.method == "GET":
        return _page(request, TokenForm())
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            token, plaintext = tokens.api_token_create(
                actor=request.user,
                user=request.user,
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
            )
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            # Rendered, not redirected: the plaintext must not pass through the session.
            return _page(request, TokenForm(), status=201, created=token, plaintext=plaintext)
    return _page(request, form, status=422)


@require_http_methods(["GET", "POST"])
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    """GET asks for confirmation; POST revokes (your own token, or anyone's if admin)."""
    permissions.require_view(request.user)
    token = get_object_or_404(ApiToken.objects.select_related("user"), pk=token_id)
    if token.user_id != request.user.pk and not permissions.can_admin(request.user):
        raise PermissionDenied("You can revoke only your own tokens.")
    if request.method == "POST":
        try:
            tokens.api_token_revoke(actor=request.user, token=token)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request, f"Revoked “{token.name}” ({token.prefix}…): it no longer works."
            )
        return redirect("api_tokens")
    return _page(request, TokenForm(), confirm=token)
