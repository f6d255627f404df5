"""Settings → API keys: list (every role), create and revoke (admins). The new key is shown
once, in the response to its creation: never stored, put in the session or in a message."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from flagdash.accounts import permissions
from flagdash.evaluation import selectors, services
from flagdash.evaluation.forms import ApiKeyForm
from flagdash.evaluation.models import ApiKey
from flagdash.flags.forms import apply_service_errors
from flagdash.flags.models import Environment


def _environments() -> list[Environment]:
    return list(
        Environment.objects.select_related("application").order_by(
            "application__name", "position", "id"
        )
    )


def _page(
    request: HttpRequest, form: ApiKeyForm | None, *, status: int = 200, **extra: Any
) -> HttpResponse:
    context = {
        "form": form,
        "keys": list(selectors.api_keys()),
        "can_admin": permissions.can_admin(request.user),
        # OFREP providers are configured with the server's base URL and add /ofrep/v1/… themselves.
        "ofrep_base_url": request.build_absolute_uri("/").rstrip("/"),
        "ofrep_url": request.build_absolute_uri(reverse("ofrep_evaluate_flags")),
        **extra,
    }
    return render(request, "evaluation/api_keys.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def api_key_list(request: HttpRequest) -> HttpResponse:
    """GET lists the keys; POST (admins) creates one and shows it this once."""
    permissions.require_view(request.user)
    admin = permissions.can_admin(request.user)
    environments = _environments()
    if request.method == "GET":
        return _page(request, ApiKeyForm(environments=environments) if admin else None)
    permissions.require_admin(request.user)
    form = ApiKeyForm(request.POST, environments=environments)
    if form.is_valid():
        environment = form.chosen_environment()
        try:
            key, plaintext = services.api_key_create(
                actor=request.user, environment=environment, name=form.cleaned_data["name"]
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            return _page(
                request,
                ApiKeyForm(environments=environments),
                status=201,
                created=key,
                plaintext=plaintext,
                example_url=request.build_absolute_uri(reverse("ofrep_evaluate_flags")),
            )
    return _page(request, form, status=422)


@require_http_methods(["GET", "POST"])
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    """GET asks for confirmation; POST revokes (admins only)."""
    permissions.require_admin(request.user)
    key = get_object_or_404(ApiKey.objects.select_related("environment__application"), pk=key_id)
    if request.method == "POST":
        try:
            services.api_key_revoke(actor=request.user, key=key)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request,
                f"Revoked “{key.name}” ({key.prefix}…): applications using it get 401 within "
                "seconds.",
            )
        return redirect("api_keys")
    return _page(request, None, confirm=key)
