"""HTML views for deployments and rollbacks.

Thin, like the flag views: find the object, check the permission, call one service, then
redirect (plain POST) or answer htmx (a fragment of the same template, or a client redirect).
Progress polls itself: an open deployment's fragment carries ``hx-trigger="every N ms"``, N from
``Deployment.ui_poll_ms`` (soon when the engine is about to act, every few seconds during a long
bake), and a terminal one is rendered without it, so polling stops.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from flagdash.accounts import permissions
from flagdash.core.htmx import is_partial
from flagdash.deployments import selectors, services
from flagdash.deployments.charts import deployment_chart
from flagdash.deployments.forms import CancelForm, RetryForm, RollbackForm
from flagdash.deployments.models import Deployment, DeploymentState
from flagdash.flags import selectors as flag_selectors
from flagdash.flags.forms import apply_service_errors
from flagdash.flags.models import Application, Environment

S = DeploymentState
ROLLBACKS_PER_PAGE = 20


def _app(request: HttpRequest, app_key: str) -> Application:
    permissions.require_view(request.user)
    app = flag_selectors.application_by_key(app_key)
    if request.session.get("app_key") != app.key:  # remembered for "/", written only on change
        request.session["app_key"] = app.key
    return app


def _env_filter(environments: list[Environment], key: str | None) -> Environment | None:
    return next((e for e in environments if e.key == key), None) if key else None


def _detail_url(d: Deployment) -> str:
    return reverse("deployment_detail", args=[d.environment.application.key, d.pk])


def _forbidden(request: HttpRequest, text: str) -> HttpResponse:
    """403: a toast for htmx (nothing else swapped), the error page otherwise."""
    if not is_partial(request):
        raise PermissionDenied(text)
    html = render_to_string(
        "core/fragments/oob_toast.html", {"text": text, "level": "error"}, request=request
    )
    return reswap(HttpResponse(html, status=403), "none")


def _denial(environment: Environment) -> str:
    if environment.protected:
        return f"{environment.name} is protected: only admins can roll back or cancel there."
    return "Only editors and admins can roll back or cancel deployments."


# --- the deployments page --------------------------------------------------------------------


@require_GET
def deployment_list(request: HttpRequest, app_key: str) -> HttpResponse:
    """What each environment is doing now, then every deployment, newest first."""
    app = _app(request, app_key)
    environments = selectors.environments_with_live_version(app)
    card = request.GET.get("card")
    if card is not None and is_partial(request):
        # An environment card polling itself.
        env = _env_filter(environments, card)
        if env is None:
            return HttpResponse(status=204)
        panel = selectors.environment_panels([env], request.user)[0]
        return render(
            request,
            "deployments/deployment_list.html#env_card",
            {"application": app, "panel": panel},
        )
    current = _env_filter(environments, request.GET.get("env"))
    page = selectors.recent_deployments(
        app, current, request.GET.get("page"), settings.FLAGDASH_PAGE_SIZE
    )
    context = {
        "application": app,
        "environments": environments,
        "current_env": current,
        "page": page,
    }
    if is_partial(request):
        return render(request, "deployments/deployment_list.html#recent", context)
    context["panels"] = selectors.environment_panels(environments, request.user)
    return render(request, "deployments/deployment_list.html", context)


# --- one deployment --------------------------------------------------------------------------


def _detail_context(request: HttpRequest, app: Application, d: Deployment) -> dict[str, Any]:
    events = selectors.events_of(d)
    can_edit = permissions.can_edit_environment(request.user, d.environment)
    now = timezone.now()
    return {
        "application": app,
        "deployment": d,
        "environment": d.environment,
        "events": events,
        "chart": deployment_chart(d, events, now=now),
        "elapsed": ((d.finished_at or now) - d.started_at) if d.started_at else None,
        "restored_by": selectors.restored_by(d) if d.state == S.COMPLETE else [],
        "can_edit": can_edit,
        "can_stop": can_edit and selectors.can_stop(d),
        "can_roll_back_live": can_edit
        and d.previous_version_id is not None
        and selectors.is_live(d),
        "can_cancel": can_edit and d.state == S.QUEUED,
        "can_retry": can_edit and d.state == S.FAILED,
        "trigger": selectors.trigger_label(d) if d.rollback_trigger else "",
    }


@require_GET
def deployment_detail(request: HttpRequest, app_key: str, pk: int) -> HttpResponse:
    app = _app(request, app_key)
    d = selectors.deployment_of(app, pk)
    context = _detail_context(request, app, d)
    if is_partial(request):
        return render(request, "deployments/deployment_detail.html#live", context)
    return render(request, "deployments/deployment_detail.html", context)


# --- actions ---------------------------------------------------------------------------------


def _rollback_effect(d: Deployment) -> str | None:
    """What rolling back will do, in words (None: there is nothing to roll back)."""
    before = f"v{d.previous_version.number}" if d.previous_version else "nothing"
    if selectors.can_stop(d):
        return (
            f"Stops the rollout of v{d.version.number} (now at {d.percentage:g} %) and serves "
            f"{before} again to every target."
        )
    if selectors.is_live(d):
        if d.previous_version is None:
            return None
        return (
            f"Deploys {before} to {d.environment.name} at once, replacing v{d.version.number}. "
            "It is recorded as a rollback."
        )
    return None


def _confirm(
    request: HttpRequest, template: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """The confirmation: a dialog in #modal for htmx, a page of its own otherwise."""
    if is_partial(request):
        response = render(request, f"{template}#dialog", context, status=status)
        return reswap(retarget(response, "#modal"), "innerHTML")
    return render(request, template, context, status=status)


def _done(request: HttpRequest, url: str) -> HttpResponse:
    if is_partial(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)


@require_http_methods(["GET", "POST"])
def deployment_rollback(request: HttpRequest, app_key: str, pk: int) -> HttpResponse:
    """Stop and roll back a running deployment, or roll back the live completed one."""
    app = _app(request, app_key)
    d = selectors.deployment_of(app, pk)
    if not permissions.can_edit_environment(request.user, d.environment):
        return _forbidden(request, _denial(d.environment))
    form = RollbackForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                result = services.deployment_rollback(
                    actor=request.user, deployment=d, reason=form.cleaned_data["reason"]
                )
            except PermissionDenied as exc:
                return _forbidden(request, str(exc) or _denial(d.environment))
            except ValidationError as exc:
                apply_service_errors(form, exc)
            else:
                if result.pk == d.pk:
                    text = f"Rolling back deployment #{d.pk}: v{d.version.number} is being stopped."
                else:
                    text = (
                        f"Rolling back to v{result.version.number} in {d.environment.name} "
                        f"(deployment #{result.pk})."
                    )
                messages.success(request, text)
                return _done(request, _detail_url(result))
        status = 422
    return _confirm(
        request,
        "deployments/rollback_confirm.html",
        {
            "application": app,
            "deployment": d,
            "form": form,
            "effect": _rollback_effect(d),
            "back": _detail_url(d),
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
def deployment_cancel(request: HttpRequest, app_key: str, pk: int) -> HttpResponse:
    """Take a queued deployment out of the queue, after a confirmation."""
    app = _app(request, app_key)
    d = selectors.deployment_of(app, pk)
    if not permissions.can_edit_environment(request.user, d.environment):
        return _forbidden(request, _denial(d.environment))
    form = CancelForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        try:
            services.deployment_cancel(actor=request.user, deployment=d)
        except PermissionDenied as exc:
            return _forbidden(request, str(exc) or _denial(d.environment))
        except ValidationError as exc:
            form.is_valid()
            apply_service_errors(form, exc)
        else:
            messages.success(request, f"Cancelled deployment #{d.pk} of v{d.version.number}.")
            return _done(request, _detail_url(d))
        status = 422
    return _confirm(
        request,
        "deployments/cancel_confirm.html",
        {"application": app, "deployment": d, "form": form, "back": _detail_url(d)},
        status=status,
    )


@require_http_methods(["GET", "POST"])
def deployment_retry(request: HttpRequest, app_key: str, pk: int) -> HttpResponse:
    """Deploy a failed deployment's version again (overwriting drift if the person says so)."""
    app = _app(request, app_key)
    d = selectors.deployment_of(app, pk)
    if not permissions.can_edit_environment(request.user, d.environment):
        return _forbidden(request, _denial(d.environment))
    form = RetryForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                retry = services.deployment_retry(
                    actor=request.user,
                    deployment=d,
                    overwrite_drift=form.cleaned_data["overwrite_drift"],
                )
            except PermissionDenied as exc:
                return _forbidden(request, str(exc) or _denial(d.environment))
            except ValidationError as exc:
                apply_service_errors(form, exc)
            else:
                messages.success(
                    request, f"Deploying v{retry.version.number} again (deployment #{retry.pk})."
                )
                return _done(request, _detail_url(retry))
        status = 422
    return _confirm(
        request,
        "deployments/retry_confirm.html",
        {"application": app, "deployment": d, "form": form, "back": _detail_url(d)},
        status=status,
    )


# --- the rollbacks page ----------------------------------------------------------------------


@require_GET
def rollback_list(request: HttpRequest, app_key: str) -> HttpResponse:
    """Every rollback, newest first, with what it changed and how long the bad version lived."""
    app = _app(request, app_key)
    environments = flag_selectors.environments_of(app)
    current = _env_filter(environments, request.GET.get("env"))
    page, rows = selectors.rollback_page(
        app, current, request.GET.get("page"), ROLLBACKS_PER_PAGE, timezone.now()
    )
    context = {
        "application": app,
        "environments": environments,
        "current_env": current,
        "page": page,
        "rows": rows,
    }
    template = (
        "deployments/rollbacks.html#results"
        if is_partial(request)
        else "deployments/rollbacks.html"
    )
    return render(request, template, context)
