"""HTML views for flags, their values per environment, attributes and versions.

Views are thin: find the object, check the permission, call one service, then redirect (plain
POST) or render a partial of the same template (htmx). Every page works without JavaScript.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from flagdash.accounts import permissions
from flagdash.core.canonical import canonical_json, sha256_hex
from flagdash.core.htmx import is_partial
from flagdash.core.parsing import positive_int
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import Deployment, DeploymentState
from flagdash.evaluation import rules as targeting
from flagdash.evaluation import selectors as evaluation_selectors
from flagdash.flags import documents, selectors, services
from flagdash.flags.forms import (
    AttributeForm,
    DeployForm,
    FlagCreateForm,
    FlagDefinitionForm,
    SettingForm,
    VersionForm,
    VersionRollbackForm,
    apply_service_errors,
)
from flagdash.flags.models import (
    Application,
    ConfigVersion,
    Environment,
    Flag,
    FlagAttribute,
    FlagSetting,
)
from flagdash.flags.rule_builder import ACTION_FIELD, attribute_names


def _safe_next(request: HttpRequest, default: str) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default


def _app(request: HttpRequest, app_key: str) -> Application:
    permissions.require_view(request.user)
    app = selectors.application_by_key(app_key)
    if request.session.get("app_key") != app.key:  # remembered for "/", written only on change
        request.session["app_key"] = app.key
    return app


def _toast(request: HttpRequest, text: str, level: str = "info") -> str:
    return render_to_string(
        "core/fragments/oob_toast.html", {"text": text, "level": level}, request=request
    )


def _error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _deployment_url(d: Deployment) -> str:
    return reverse("deployment_detail", args=[d.environment.application.key, d.pk])


def _deploy_note(d: Deployment) -> str:
    """What happens to a new deployment: deploying with its strategy, or queued behind another."""
    ahead = selectors.blocking_deployment(d)
    if ahead is not None:
        return f"v{d.version.number} queued behind #{ahead.pk}"
    return f"deploying v{d.version.number} with {d.strategy.name}"


# --- flag list -------------------------------------------------------------------------------


@require_GET
def flag_list(request: HttpRequest, app_key: str) -> HttpResponse:
    app = _app(request, app_key)
    filters = selectors.FlagFilters.from_query(request.GET)
    environments = selectors.environments_of(app)
    page = selectors.flag_page(app, filters, request.GET.get("page"), settings.FLAGDASH_PAGE_SIZE)
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "application": app,
        "environments": environments,
        "filters": filters,
        "page": page,
        "rows": selectors.flag_rows(page, environments, request.user),
        "query": query.urlencode(),
        "choices": selectors.filter_choices(app),
        "today": selectors.today(),
        "list_url": request.get_full_path(),
    }
    template = "flags/flag_list.html#results" if is_partial(request) else "flags/flag_list.html"
    return render(request, template, context)


# --- toggling --------------------------------------------------------------------------------


def _switch_response(
    request: HttpRequest,
    flag: Flag,
    environment: Environment,
    *,
    status: int = 200,
    toast: tuple[str, str] | None = None,
) -> HttpResponse:
    setting = FlagSetting.objects.select_related("environment", "updated_by").get(
        flag=flag, environment=environment
    )
    html: str = render_to_string(
        "flags/fragments/switch.html",
        {
            "flag": flag,
            "environment": environment,
            "application": flag.application,
            "setting": setting,
            "can_edit": permissions.can_edit_environment(request.user, environment),
            "next": _safe_next(request, ""),
            "rollout": selectors.rollout_for(flag, environment),
        },
        request=request,
    )
    if toast:
        html += _toast(request, *toast)
    html += '<div id="modal" hx-swap-oob="innerHTML"></div>'
    if _on_flag_page(request, flag):
        setting.flag = flag
        draft = _draft_state(
            environment,
            flag,
            setting,
            selectors.attributes_of(flag),
            services.latest_version(environment),
        )
        html += render_to_string(
            "flags/fragments/setting_oob.html",
            {"setting": setting, "draft": draft, "environment": environment},
            request=request,
        )
    return HttpResponse(html, status=status)


def _on_flag_page(request: HttpRequest, flag: Flag) -> bool:
    """The switch was used on the flag's own page (whose values form carries the revision)."""
    htmx = getattr(request, "htmx", None)
    current = (htmx.current_url_abs_path if htmx else None) or ""
    return current.split("?", 1)[0] == reverse("flag_detail", args=[flag.application.key, flag.key])


@require_http_methods(["GET", "POST"])
def flag_toggle(request: HttpRequest, app_key: str, flag_key: str, env_key: str) -> HttpResponse:
    """Turn a flag on or off in one environment (protected ones ask for confirmation first)."""
    app = _app(request, app_key)
    flag = selectors.flag_by_key(app, flag_key)
    environment = selectors.environment_by_key(app, env_key)
    back = _safe_next(request, reverse("flag_detail", args=[app.key, flag.key]))
    partial = is_partial(request)
    if not permissions.can_edit_environment(request.user, environment):
        reason = (
            f"{environment.name} is protected: only admins can change it."
            if environment.protected
            else "Only editors and admins can change flags."
        )
        if partial:
            return _switch_response(request, flag, environment, status=403, toast=(reason, "error"))
        raise PermissionDenied(reason)
    setting = FlagSetting.objects.get(flag=flag, environment=environment)
    if request.method == "GET" or (environment.protected and request.POST.get("confirm") != "yes"):
        wanted = request.POST.get("enabled", request.GET.get("enabled", ""))
        context = {
            "application": app,
            "flag": flag,
            "environment": environment,
            "setting": setting,
            "enabled": (wanted == "true") if wanted in ("true", "false") else not setting.enabled,
            "revision": request.POST.get("revision", request.GET.get("revision", setting.revision)),
            "next": back,
        }
        if partial:
            response = render(request, "flags/toggle_confirm.html#dialog", context)
            return reswap(retarget(response, "#modal"), "innerHTML")
        return render(request, "flags/toggle_confirm.html", context)

    enabled = request.POST.get("enabled") == "true"
    try:
        revision = int(request.POST.get("revision", ""))
    except ValueError:
        revision = None
    verb = "Enabled" if enabled else "Disabled"
    try:
        result = services.flag_set_enabled(
            actor=request.user,
            flag=flag,
            environment=environment,
            enabled=enabled,
            expected_revision=revision,
        )
    except services.RevisionConflict as exc:
        if partial:
            return _switch_response(
                request, flag, environment, status=409, toast=(str(exc), "error")
            )
        messages.error(request, str(exc))
        return redirect(back)
    except ValidationError as exc:
        if partial:
            return _switch_response(
                request, flag, environment, status=422, toast=(_error_text(exc), "error")
            )
        messages.error(request, _error_text(exc))
        return redirect(back)
    if result.deployment is not None:
        text = f"{verb} {flag.key} in {environment.name}: {_deploy_note(result.deployment)}."
    else:
        text = f"{verb} {flag.key} in {environment.name} (version {result.version.number})."
    if partial:
        return _switch_response(request, flag, environment, toast=(text, "success"))
    messages.success(request, text)
    return redirect(back)


# --- creating and editing flags --------------------------------------------------------------


def _usernames() -> list[str]:
    return list(selectors.active_users().values_list("username", flat=True))


@require_http_methods(["GET", "POST"])
def flag_create(request: HttpRequest, app_key: str) -> HttpResponse:
    app = _app(request, app_key)
    permissions.require_edit_flags(request.user)
    form = FlagCreateForm(request.POST or None, usernames=_usernames())
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                flag = services.flag_create(
                    actor=request.user,
                    application=app,
                    key=data["key"],
                    name=data["name"],
                    description=data["description"],
                    kind=data["kind"],
                    value_type=data["value_type"] or None,
                    short_term=data["short_term"],
                    owner=data["owner"] or None,
                    remove_by=data["remove_by"],
                    tags=data["tags"],
                )
            except ValidationError as exc:
                apply_service_errors(form, exc)
            else:
                messages.success(request, f"Created {flag.key}. It is off in every environment.")
                return redirect("flag_detail", app_key=app.key, flag_key=flag.key)
        status = 422
    return render(
        request,
        "flags/flag_form.html",
        {"application": app, "form": form, "creating": True},
        status=status,
    )


@require_http_methods(["GET", "POST"])
def flag_edit(request: HttpRequest, app_key: str, flag_key: str) -> HttpResponse:
    app = _app(request, app_key)
    flag = selectors.flag_by_key(app, flag_key)
    permissions.require_edit_flags(request.user)
    initial = {
        "name": flag.name,
        "description": flag.description,
        "short_term": flag.short_term,
        "owner": flag.owner.username if flag.owner else "",
        "remove_by": flag.remove_by,
        "tags": ", ".join(t.name for t in flag.tags.all()),
    }
    form = FlagDefinitionForm(
        request.POST or None,
        initial=initial,
        usernames=_usernames(),
        current_owner=flag.owner.username if flag.owner else "",
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.flag_update(
                    actor=request.user,
                    flag=flag,
                    name=data["name"],
                    description=data["description"],
                    short_term=data["short_term"],
                    owner=data["owner"] or None,
                    remove_by=data["remove_by"],
                    tags=data["tags"],
                )
            except ValidationError as exc:
                apply_service_errors(form, exc)
            else:
                messages.success(request, f"Saved {flag.key}.")
                return redirect("flag_detail", app_key=app.key, flag_key=flag.key)
        status = 422
    return render(
        request,
        "flags/flag_form.html",
        {"application": app, "form": form, "flag": flag, "creating": False},
        status=status,
    )


# --- the flag page ---------------------------------------------------------------------------


def _version_touches(environment: Environment, flag: Flag, limit: int = 10) -> list[dict[str, Any]]:
    """The environment's latest versions, each with what it did to this flag.

    Compares the per-flag digests stored with each version: no document is loaded.
    """
    versions = list(selectors.versions_of(environment, limit + 1).defer(None).defer("document"))
    rows: list[dict[str, Any]] = []
    for newer, older in zip(versions, [*versions[1:], None], strict=False):
        if len(rows) == limit:
            break
        new = newer.flag_digests.get(flag.key)
        old = older.flag_digests.get(flag.key) if older else None
        if new == old:
            status = None
        elif old is None:
            status = "added"
        elif new is None:
            status = "removed"
        else:
            status = "changed"
        rows.append({"version": newer, "status": status})
    return rows


def _draft_state(
    environment: Environment,
    flag: Flag,
    setting: FlagSetting,
    attributes: list[Any],
    latest: ConfigVersion | None,
) -> dict[str, Any]:
    """Whether the flag's values here are a draft, saved in a version, or live.

    Compares digests of the flag's entry (at most one small query, for the live version's
    digests when it is not the latest version).
    """
    if flag.archived_at:
        return {"state": "archived"}
    entry = documents.flag_entry(flag, setting, attributes)
    working = sha256_hex(canonical_json(entry))
    if latest is None or latest.flag_digests.get(flag.key) != working:
        return {"state": "draft", "latest": latest}
    live_id = environment.live_version_id
    if live_id == latest.pk:
        return {"state": "live", "latest": latest}
    live = (
        ConfigVersion.objects.filter(pk=live_id).only("id", "number", "flag_digests").first()
        if live_id
        else None
    )
    if live is not None and live.flag_digests.get(flag.key) == working:
        return {"state": "live", "latest": latest, "live": live}
    return {"state": "saved", "latest": latest, "live": live}


def _flag_page_context(
    request: HttpRequest,
    app: Application,
    flag: Flag,
    env_key: str | None,
    form: SettingForm | None = None,
    conflict: services.RevisionConflict | None = None,
) -> dict[str, Any]:
    environments = selectors.environments_of(app)
    if not environments:
        raise Http404("This application has no environments yet.")
    current = next((e for e in environments if e.key == env_key), environments[0])
    flag_settings = selectors.settings_of(flag, environments)
    setting = next(s for s in flag_settings if s.environment_id == current.pk)
    setting.flag = flag
    setting.environment = current
    attributes = selectors.attributes_of(flag)
    if form is None:
        form = SettingForm(setting=setting, attributes=attributes)
    deployments = selectors.open_deployments(environments)
    evaluations = evaluation_selectors.sparklines(flag.key, environments)
    cells = [
        selectors.Cell(
            env,
            s,
            permissions.can_edit_environment(request.user, env),
            selectors.rollout_of(flag, deployments[env.pk]),
        )
        for env, s in zip(environments, flag_settings, strict=True)
    ]
    version_rows = _version_touches(current, flag)
    return {
        "application": app,
        "flag": flag,
        "environments": environments,
        "env_cells": cells,
        "draft": _draft_state(
            current, flag, setting, attributes, version_rows[0]["version"] if version_rows else None
        ),
        "env_rows": [(cell, evaluations[cell.environment.pk]) for cell in cells],
        "rule_lines": [targeting.describe(rule) for rule in setting.rules],
        "rule_attributes": attribute_names(s.rules for s in flag_settings),
        "current_env": current,
        "setting": setting,
        "form": form,
        "conflict": conflict,
        "attributes": attributes,
        "attribute_form": AttributeForm(),
        "history": selectors.flag_history(flag),
        "version_rows": version_rows,
        "can_edit_env": permissions.can_edit_environment(request.user, current),
        "today": selectors.today(),
    }


@require_GET
def flag_detail(request: HttpRequest, app_key: str, flag_key: str) -> HttpResponse:
    app = _app(request, app_key)
    flag = selectors.flag_by_key(app, flag_key)
    context = _flag_page_context(request, app, flag, request.GET.get("env"))
    template = (
        "flags/flag_detail.html#environment" if is_partial(request) else "flags/flag_detail.html"
    )
    return render(request, template, context)


@require_POST
def flag_setting_save(
    request: HttpRequest, app_key: str, flag_key: str, env_key: str
) -> HttpResponse:
    """Save a flag's values in one environment (refused if someone saved meanwhile)."""
    app = _app(request, app_key)
    flag = selectors.flag_by_key(app, flag_key)
    environment = selectors.environment_by_key(app, env_key)
    permissions.require_edit_environment(request.user, environment)
    setting = get_object_or_404(
        FlagSetting.objects.select_related("flag", "environment"),
        flag=flag,
        environment=environment,
    )
    setting.flag = flag
    form = SettingForm(request.POST, setting=setting, attributes=selectors.attributes_of(flag))
    if ACTION_FIELD in request.POST:  # a rule builder button: re-render, save nothing
        form.rearrange_rules(request.POST[ACTION_FIELD])
        if is_partial(request):
            return _rule_builder_fragment(request, app, flag, environment, form)
        context = _flag_page_context(request, app, flag, environment.key, form=form)
        return render(request, "flags/flag_detail.html", context)
    conflict = None
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.flag_setting_update(
                actor=request.user,
                flag=flag,
                environment=environment,
                expected_revision=data["revision"],
                attribute_values=data["attribute_values"],
                variants=data.get("variants"),
                default_variant=data.get("default_variant") or "",
                rules=data.get("rules"),
            )
        except services.RevisionConflict as exc:
            conflict = exc
            # Show the user's own values again, now based on the current revision: saving
            # again is a deliberate overwrite of what they have just been shown.
            post = request.POST.copy()
            post[form.add_prefix("revision")] = str(exc.setting.revision)
            form = SettingForm(post, setting=exc.setting, attributes=selectors.attributes_of(flag))
            form.is_valid()
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(
                request,
                f"Saved {flag.key}'s values in {environment.name}. "
                "Review and save a version to make them live.",
            )
            url = reverse("flag_detail", args=[app.key, flag.key]) + f"?env={environment.key}"
            return redirect(url)
    context = _flag_page_context(request, app, flag, environment.key, form=form, conflict=conflict)
    status = 409 if conflict else 422
    template = (
        "flags/flag_detail.html#environment" if is_partial(request) else "flags/flag_detail.html"
    )
    return render(request, template, context, status=status)


def _rule_builder_fragment(
    request: HttpRequest, app: Application, flag: Flag, environment: Environment, form: SettingForm
) -> HttpResponse:
    """The targeting-rules part of the values form alone (what its htmx buttons swap)."""
    return render(
        request,
        "flags/fragments/rule_builder.html",
        {
            "application": app,
            "flag": flag,
            "current_env": environment,
            "setting": form.setting,
            "form": form,
            "can_edit_env": True,
            "rule_attributes": attribute_names(evaluation_selectors.rule_lists(app)),
            "rule_attributes_complete": True,
        },
    )


@require_GET
def rule_attribute_options(request: HttpRequest, app_key: str) -> HttpResponse:
    """The context attributes used in the application's rules, as <option>s for a <datalist>.

    The rule builder loads them when an attribute input first gets the focus, so the flag page
    itself runs no query for them.
    """
    app = _app(request, app_key)
    return render(
        request,
        "flags/fragments/rule_attribute_options.html",
        {"rule_attributes": attribute_names(evaluation_selectors.rule_lists(app))},
    )


# --- attributes ------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def attribute_edit(
    request: HttpRequest, app_key: str, flag_key: str, attribute_id: int | None = None
) -> HttpResponse:
    app = _app(request, app_key)
    flag = selectors.flag_by_key(app, flag_key)
    permissions.require_edit_flags(request.user)
    attribute = (
        get_object_or_404(FlagAttribute, pk=attribute_id, flag=flag) if attribute_id else None
    )
    initial = AttributeForm.initial_for(attribute) if attribute else None
    form = AttributeForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.attribute_save(
                    actor=request.user, flag=flag, attribute=attribute, **form.service_kwargs()
                )
            except ValidationError as exc:
                apply_service_errors(form, exc)
            else:
                messages.success(request, f"Saved attribute {form.cleaned_data['name']}.")
                return redirect(reverse("flag_detail", args=[app.key, flag.key]) + "#attributes")
        status = 422
    return render(
        request,
        "flags/attribute_form.html",
        {"application": app, "flag": flag, "attribute": attribute, "form": form},
        status=status,
    )


@require_http_methods(["GET", "POST"])
def attribute_delete(
    request: HttpRequest, app_key: str, flag_key: str, attribute_id: int
) -> HttpResponse:
    app = _app(request, app_key)
    flag = selectors.flag_by_key(app, flag_key)
    permissions.require_edit_flags(request.user)
    attribute = get_object_or_404(FlagAttribute, pk=attribute_id, flag=flag)
    if request.method == "POST":
        services.attribute_delete(actor=request.user, attribute=attribute)
        messages.success(request, f"Removed attribute {attribute.name} and its values.")
        return redirect(reverse("flag_detail", args=[app.key, flag.key]) + "#attributes")
    environments = selectors.environments_of(app)
    holders = [
        s for s in selectors.settings_of(flag, environments) if attribute.name in s.attribute_values
    ]
    for s in holders:
        s.environment = next(e for e in environments if e.pk == s.environment_id)
    return render(
        request,
        "flags/attribute_delete.html",
        {"application": app, "flag": flag, "attribute": attribute, "holders": holders},
    )


# --- versions --------------------------------------------------------------------------------


@require_GET
def version_list(request: HttpRequest, app_key: str) -> HttpResponse:
    app = _app(request, app_key)
    environments = selectors.environments_of(app)
    if not environments:
        return render(request, "flags/versions.html", {"application": app, "environments": []})
    current = next((e for e in environments if e.key == request.GET.get("env")), environments[0])
    latest = services.latest_version(current)
    pending = documents.document_diff(
        documents.load(latest.document) if latest else documents.empty_document(current),
        documents.working_document(current),
    )
    page = Paginator(selectors.versions_of(current).select_related("author"), 25).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "flags/versions.html",
        {
            "application": app,
            "environments": environments,
            "current_env": current,
            "latest": latest,
            "pending": pending,
            "page": page,
            "form": VersionForm(),
            "can_edit_env": permissions.can_edit_environment(request.user, current),
            "live_version_id": current.live_version_id,
        },
    )


@require_POST
def version_create(request: HttpRequest, app_key: str, env_key: str) -> HttpResponse:
    app = _app(request, app_key)
    environment = selectors.environment_by_key(app, env_key)
    permissions.require_edit_environment(request.user, environment)
    form = VersionForm(request.POST)
    url = reverse("versions", args=[app.key]) + f"?env={environment.key}"
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errs in form.errors.values() for e in errs))
        return redirect(url)
    try:
        version = services.config_version_create(
            actor=request.user, environment=environment, message=form.cleaned_data["message"]
        )
    except ValidationError as exc:
        messages.error(request, _error_text(exc))
        return redirect(url)
    messages.success(
        request,
        f"Saved version {version.number} of {environment.name}. Review what changes against "
        "the live version, choose a strategy and deploy it.",
    )
    return redirect(
        "version_deploy", app_key=app.key, env_key=environment.key, number=version.number
    )


@require_GET
def version_detail(request: HttpRequest, app_key: str, env_key: str, number: int) -> HttpResponse:
    """A version and its diff against the previous one, or against ``?against=N``."""
    app = _app(request, app_key)
    environment = selectors.environment_by_key(app, env_key)
    version = selectors.version_by_number(environment, number)
    against_number = positive_int(request.GET.get("against"))
    against = None
    if against_number is not None:
        against = selectors.version_by_number(environment, against_number)
    elif number > 1:
        against = selectors.versions_of(environment).filter(number__lt=number).first()
    changes = documents.document_diff(
        documents.load(against.document) if against else None, documents.load(version.document)
    )
    numbers = list(selectors.versions_of(environment).values_list("number", flat=True)[:200])
    live = _live_number(environment)
    can_edit = permissions.can_edit_environment(request.user, environment)
    return render(
        request,
        "flags/version_detail.html",
        {
            "application": app,
            "environment": environment,
            "version": version,
            "against": against,
            "changes": changes,
            "numbers": numbers,
            "document": documents.load(version.document),
            "live_number": live,
            "is_live": environment.live_version_id == version.pk,
            "can_deploy": can_edit and environment.live_version_id != version.pk,
            "can_roll_back": can_edit and live is not None and version.number < live,
            "rollback_form": VersionRollbackForm(auto_id="id_rollback_%s"),
        },
    )


def _live_number(environment: Environment) -> int | None:
    """The number of the version the environment serves (None: nothing deployed yet)."""
    if environment.live_version_id is None:
        return None
    number: int | None = (
        ConfigVersion.objects.filter(pk=environment.live_version_id)
        .values_list("number", flat=True)
        .first()
    )
    return number


# --- deploying a version and rolling back to one ---------------------------------------------


def _refuse(request: HttpRequest, environment: Environment, action: str) -> HttpResponse:
    """403: a toast for htmx (nothing swapped), the error page otherwise."""
    text = (
        f"{environment.name} is protected: only admins can {action} there."
        if environment.protected
        else f"Only editors and admins can {action}."
    )
    if is_partial(request):
        return reswap(HttpResponse(_toast(request, text, "error"), status=403), "none")
    raise PermissionDenied(text)


def _done(request: HttpRequest, url: str) -> HttpResponse:
    if is_partial(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)


def _deploy_field(key: str) -> str | None:
    """Where a deployment service's error shows: strategy errors at the strategy, else on top."""
    return "strategy" if key == "strategy" else None


@require_http_methods(["GET", "POST"])
def version_deploy(request: HttpRequest, app_key: str, env_key: str, number: int) -> HttpResponse:
    """Deploy a version: its diff against what the environment serves, a strategy, Confirm."""
    app = _app(request, app_key)
    environment = selectors.environment_by_key(app, env_key)
    version = selectors.version_by_number(environment, number)
    if not permissions.can_edit_environment(request.user, environment):
        return _refuse(request, environment, "deploy")
    live = environment.live_version
    live_number = live.number if live is not None else 0
    strategies = selectors.strategies()
    by_name = {s.name: s for s in strategies}
    default = next(
        (s for s in strategies if s.pk == environment.default_strategy_id),
        by_name.get(deployment_services.DEFAULT_STRATEGY),
    )
    choices = [(s.name, selectors.strategy_label(s)) for s in strategies]
    initial = {"strategy": default.name if default else "", "live": live_number}
    form = DeployForm(request.POST or None, initial=initial, strategies=choices)
    status = 200
    if request.method == "POST":
        if form.is_valid() and form.cleaned_data["live"] != live_number:
            # The diff the user confirmed is not what would change now: show the new one.
            seen = form.cleaned_data["live"]
            post = request.POST.copy()
            post["live"] = str(live_number)
            form = DeployForm(post, initial=initial, strategies=choices)
            form.is_valid()
            form.add_error(
                "live",
                f"{environment.name} changed while you were reviewing: it served "
                f"{f'v{seen}' if seen else 'nothing'} then and serves "
                f"{f'v{live_number}' if live_number else 'nothing'} now. Nothing was deployed: "
                "review the changes below and confirm again.",
            )
        elif form.is_valid():
            try:
                d = deployment_services.deployment_create(
                    actor=request.user,
                    environment=environment,
                    version=version,
                    strategy=by_name[form.cleaned_data["strategy"]],
                    message=form.cleaned_data["message"],
                )
            except ValidationError as exc:
                apply_service_errors(form, exc, _deploy_field)
            else:
                messages.success(
                    request, f"Deployment #{d.pk} to {environment.name}: {_deploy_note(d)}."
                )
                return _done(request, _deployment_url(d))
        status = 422
    changes = documents.document_diff(
        documents.load(live.document) if live is not None else None,
        documents.load(version.document),
    )
    return render(
        request,
        "flags/version_deploy.html",
        {
            "application": app,
            "environment": environment,
            "version": version,
            "live": live,
            "changes": changes,
            "form": form,
            "open_deployments": selectors.open_deployments([environment])[environment.pk],
            "strategies": strategies,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
def version_rollback(request: HttpRequest, app_key: str, env_key: str, number: int) -> HttpResponse:
    """Roll back to version N: a new deployment of it, at once, recorded as a rollback.

    The version page posts the reason here; the answer is a confirmation (a dialog for htmx)
    that says what will happen, and only its ``confirm=yes`` post rolls back.
    """
    app = _app(request, app_key)
    environment = selectors.environment_by_key(app, env_key)
    version = selectors.version_by_number(environment, number)
    if not permissions.can_edit_environment(request.user, environment):
        return _refuse(request, environment, "roll back")
    form = VersionRollbackForm(
        request.POST if request.method == "POST" else None, auto_id="id_confirm_%s"
    )
    status = 200
    if request.method == "POST":
        if not form.is_valid():
            status = 422
        elif request.POST.get("confirm") == "yes":
            try:
                d = deployment_services.version_restore(
                    actor=request.user,
                    environment=environment,
                    version=version,
                    reason=form.cleaned_data["reason"],
                )
            except ValidationError as exc:
                apply_service_errors(form, exc, lambda k: "reason" if k == "reason" else None)
                status = 422
            else:
                messages.success(
                    request,
                    f"Rolling back {environment.name} to v{version.number} (deployment #{d.pk}).",
                )
                return _done(request, _deployment_url(d))
    live = environment.live_version
    context = {
        "application": app,
        "environment": environment,
        "version": version,
        "live": live,
        "running": [
            d
            for d in selectors.open_deployments([environment])[environment.pk]
            if d.state != DeploymentState.QUEUED
        ],
        "changes": documents.document_diff(
            documents.load(live.document) if live is not None else None,
            documents.load(version.document),
        ),
        "form": form,
        "back": reverse("version_detail", args=[app.key, environment.key, version.number]),
    }
    if is_partial(request):
        response = render(request, "flags/version_rollback.html#dialog", context, status=status)
        return reswap(retarget(response, "#modal"), "innerHTML")
    return render(request, "flags/version_rollback.html", context, status=status)


@require_GET
def environment_rollout_status(request: HttpRequest, app_key: str, env_key: str) -> HttpResponse:
    """The rollout beside one switch (``?flag=<key>``), polling itself while it is open."""
    app = _app(request, app_key)
    environment = selectors.environment_by_key(app, env_key)
    flag = selectors.flag_ref(app, request.GET.get("flag", ""))
    return render(
        request,
        "flags/fragments/rollout_status.html",
        {
            "application": app,
            "environment": environment,
            "flag": flag,
            "rollout": selectors.rollout_for(flag, environment),
        },
    )
