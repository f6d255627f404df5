"""The backend page of an environment: where its versions are deployed, test the connection,
change it (admins)."""

from __future__ import annotations

import os
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect, reswap

from flagdash.accounts import permissions
from flagdash.backends import services
from flagdash.backends.base import BackendError, CheckResult, PermanentBackendError
from flagdash.backends.forms import BackendForm, initial_for
from flagdash.backends.models import BackendKind
from flagdash.core.htmx import is_partial
from flagdash.flags.forms import apply_service_errors
from flagdash.flags.models import Application, Environment

NOTHING_TO_TEST = (
    "Nothing to test yet: saving creates the AppConfig resources (or finds them by name) and "
    "then tests them. To test existing resources, choose “Use existing” and enter their ids."
)


def _forbidden(request: HttpRequest, text: str) -> HttpResponse:
    if not is_partial(request):
        raise PermissionDenied(text)
    html = render_to_string(
        "core/fragments/oob_toast.html", {"text": text, "level": "error"}, request=request
    )
    return reswap(HttpResponse(html, status=403), "none")


def _page_url(environment: Environment) -> str:
    return reverse("environment_backend", args=[environment.application.key, environment.key])


def _credentials_note(kind: str, options: dict[str, Any]) -> str:
    """Which credentials the server's processes will use (never the secret itself)."""
    if kind == BackendKind.AZURE_APPCONFIG:
        var = options.get("connection_string_env") or ""
        if var and os.environ.get(var):
            return f"The connection string comes from ${var} (set in this web process)."
        return (
            f"${var or 'AZURE_APPCONFIG_CONNECTION_STRING'} is not set in this web process: "
            "flagdash signs in with DefaultAzureCredential (managed identity, workload identity, "
            "environment variables, az login). Workers need the same credentials."
        )
    if kind == BackendKind.AWS_APPCONFIG:
        return (
            "Credentials come from boto3's default chain: AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the instance or task role. Workers need the "
            "same credentials."
        )
    return ""


@require_http_methods(["GET", "POST"])
def environment_backend(request: HttpRequest, app_key: str, env_key: str) -> HttpResponse:
    if not permissions.can_view(request.user):
        return _forbidden(request, "You have no role in flagdash; ask an admin for access.")
    app = get_object_or_404(Application, key=app_key)
    env = get_object_or_404(
        Environment.objects.select_related("backend", "application", "live_version"),
        application=app,
        key=env_key,
    )
    if request.method == "GET" and request.GET.get("part") == "monitors":
        return _monitors(request, app, env)
    can_admin = permissions.can_admin(request.user)
    result: CheckResult | None = None
    status = 200
    if request.method == "POST":
        if not can_admin:
            return _forbidden(request, "Only admins can change or test backend connections.")
        form = BackendForm(request.POST, auto_id="id_backend_%s")
        if form.is_valid():
            kind, options = form.cleaned_data["kind"], form.options()
            if request.POST.get("action") == "check":
                if form.creates_aws_resources:
                    result = CheckResult(False, NOTHING_TO_TEST)
                else:
                    result = services.connection_check(
                        actor=request.user, kind=kind, options=options
                    )
            else:
                return _save(request, env, form) or _render(
                    request, app, env, form, None, status=422
                )
        else:
            status = 422
    else:
        form = BackendForm(
            initial=initial_for(env.backend.kind, env.backend.options or {}),
            auto_id="id_backend_%s",
        )
    return _render(request, app, env, form if can_admin else None, result, status=status)


def _monitors(request: HttpRequest, app: Application, env: Environment) -> HttpResponse:
    """The CloudWatch alarms of an AWS environment (loaded after the page: it calls AWS)."""
    monitors: list[str] = []
    error = ""
    if env.backend.kind == BackendKind.AWS_APPCONFIG:
        monitors, error = services.aws_monitors(env.backend)
    return render(
        request,
        "backends/environment_backend.html#monitors",
        {
            "application": app,
            "environment": env,
            "monitors": monitors,
            "monitors_error": error,
            "monitors_loaded": True,
        },
    )


def _save(request: HttpRequest, env: Environment, form: BackendForm) -> HttpResponse | None:
    """Provision (AWS, if asked), connect, test; None when the form got errors."""
    kind = form.cleaned_data["kind"]
    options = form.options()
    try:
        if form.creates_aws_resources:
            options = services.aws_provision(
                actor=request.user,
                region=options["region"],
                endpoint_url=options["endpoint_url"],
                application_id=options["application_id"],
                configuration_profile_id=options["configuration_profile_id"],
                **form.aws_names(),
            )
        env = services.environment_connect(
            actor=request.user, environment=env, kind=kind, options=options
        )
    except ValidationError as exc:
        apply_service_errors(form, exc)
        return None
    except BackendError as exc:
        form.add_error(None, exc.message)
        for line in exc.details if isinstance(exc, PermanentBackendError) else []:
            form.add_error(None, line)
        return None
    text = f"{env.name} deploys to {env.backend.get_kind_display()}."
    if kind != BackendKind.LOCAL:
        result = services.connection_check(actor=request.user, kind=kind, options=options)
        if result.ok:
            messages.success(request, f"{text} Connection test passed: {result.message}")
        else:
            messages.warning(
                request,
                f"{text} Saved, but the connection test failed: {result.message} Deployments "
                "to it will fail until this is fixed.",
            )
    else:
        messages.success(request, text)
    url = _page_url(env)
    return HttpResponseClientRedirect(url) if is_partial(request) else redirect(url)


def _render(
    request: HttpRequest,
    app: Application,
    env: Environment,
    form: BackendForm | None,
    result: CheckResult | None,
    *,
    status: int,
) -> HttpResponse:
    connection = env.backend
    context = {
        "application": app,
        "environment": env,
        "connection": connection,
        "options": sorted((connection.options or {}).items()),
        "credentials": _credentials_note(connection.kind, connection.options or {}),
        "form": form,
        "result": result,
    }
    template = "backends/environment_backend.html"
    if is_partial(request) and request.method == "POST":
        template += "#panel"
    return render(request, template, context, status=status)
