"""Login (throttled) and the settings pages (applications, environments, alarm webhooks,
deployment strategies, users and roles).

Every role may read /settings/; only admins get the forms and only admins may post. Each write
has its own URL: it checks the permission on the server, parses a form, calls one service, then
redirects back to /settings/ (plain POST) or re-renders its section of the page (htmx). A
refused change re-renders the form with the service's message at the field (422).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db.models import Count, IntegerField, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from flagdash.accounts import permissions
from flagdash.accounts.forms import (
    ApplicationForm,
    EnvironmentCreateForm,
    EnvironmentEditForm,
    LoginForm,
    RoleForm,
    StrategyForm,
    UserCreateForm,
)
from flagdash.accounts.models import Role
from flagdash.accounts.services import user_create, user_set_role
from flagdash.backends.models import BackendConnection
from flagdash.core.htmx import is_partial
from flagdash.deployments import alarms
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import DeploymentStrategy
from flagdash.flags import selectors as flag_selectors
from flagdash.flags import services as flag_services
from flagdash.flags.forms import apply_service_errors
from flagdash.flags.models import Application, Environment, Flag

User = get_user_model()

View = Callable[..., HttpResponse]


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True


# --- reading ---------------------------------------------------------------------------------


@dataclass
class EnvironmentRow:
    environment: Environment
    form: forms.Form | None
    webhook_url: str = ""

    @property
    def has_alarm_secret(self) -> bool:
        return bool(self.environment.alarm_secret_salt)


@dataclass
class StrategyRow:
    strategy: DeploymentStrategy
    schedule: str
    form: forms.Form | None  # None: read-only (predefined, or you are not an admin)


@dataclass
class ApplicationRow:
    application: Application
    environment_count: int
    flag_count: int
    archived_flag_count: int
    environments: list[EnvironmentRow]
    environment_form: forms.Form | None


@dataclass
class UserRow:
    user: Any
    role: str  # "" when the user has no access
    form: forms.Form | None


@dataclass
class SettingsData:
    can_admin: bool
    applications: list[ApplicationRow] = field(default_factory=list)
    users: list[UserRow] = field(default_factory=list)
    backends: list[BackendConnection] = field(default_factory=list)
    strategies: list[StrategyRow] = field(default_factory=list)
    application_form: forms.Form | None = None
    user_form: forms.Form | None = None
    strategy_form: forms.Form | None = None


def _count(queryset: QuerySet[Any]) -> Coalesce:
    """Count rows of ``queryset`` per application (correlated subquery; no row explosion)."""
    counted = (
        queryset.filter(application=OuterRef("pk"))
        .order_by()
        .values("application")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _applications_for_settings() -> QuerySet[Application]:
    """Applications with their counts and their environments (two queries, however many)."""
    return Application.objects.annotate(
        environment_count=_count(Environment.objects.all()),
        flag_count=_count(Flag.objects.filter(archived_at__isnull=True)),
        archived_flag_count=_count(Flag.objects.filter(archived_at__isnull=False)),
    ).prefetch_related(
        Prefetch(
            "environments",
            queryset=Environment.objects.select_related("backend", "default_strategy").order_by(
                "position", "id"
            ),
        )
    )


# Each form on the page has ids of its own (several forms share field names).
def _application_form(data: Mapping[str, Any] | None = None) -> ApplicationForm:
    return ApplicationForm(data, auto_id="id_app_new_%s")


def _environment_create_form(
    application: Application, data: Mapping[str, Any] | None = None
) -> EnvironmentCreateForm:
    return EnvironmentCreateForm(data, auto_id=f"id_env_new_{application.pk}_%s")


def _strategy_choices(strategies: Iterable[DeploymentStrategy]) -> list[tuple[str, str]]:
    return [(s.name, flag_selectors.strategy_label(s)) for s in strategies]


def _default_strategy_name(environment: Environment) -> str:
    if environment.default_strategy_id and environment.default_strategy is not None:
        return environment.default_strategy.name
    return deployment_services.DEFAULT_STRATEGY


def _environment_edit_form(
    environment: Environment,
    data: Mapping[str, Any] | None = None,
    *,
    strategies: Iterable[DeploymentStrategy],
) -> EnvironmentEditForm:
    return EnvironmentEditForm(
        data,
        initial={
            "name": environment.name,
            "protected": environment.protected,
            "default_strategy": _default_strategy_name(environment),
        },
        strategies=_strategy_choices(strategies),
        auto_id=f"id_env_{environment.pk}_%s",
    )


def _strategy_form(
    strategy: DeploymentStrategy | None = None, data: Mapping[str, Any] | None = None
) -> StrategyForm:
    initial = None
    if strategy is not None:
        initial = {
            "name": strategy.name,
            "description": strategy.description,
            "duration_minutes": strategy.duration_minutes,
            "growth_type": strategy.growth_type,
            "growth_factor": f"{strategy.growth_factor:g}",
            "final_bake_minutes": strategy.final_bake_minutes,
        }
    prefix = f"id_strategy_{strategy.pk}_%s" if strategy is not None else "id_strategy_new_%s"
    return StrategyForm(data, initial=initial, auto_id=prefix)


def webhook_url(request: HttpRequest, environment: Environment, app_key: str) -> str:
    """The absolute URL of the environment's alarm webhook."""
    try:
        path = reverse("alarm_webhook", args=[app_key, environment.key])
    except NoReverseMatch:
        path = f"/hooks/alarms/{app_key}/{environment.key}/"
    return request.build_absolute_uri(path)


def _role_form(user: Any, role: str, data: Mapping[str, Any] | None = None) -> RoleForm:
    return RoleForm(data, initial={"role": role}, auto_id=f"id_user_{user.pk}_%s")


def _user_form(data: Mapping[str, Any] | None = None) -> UserCreateForm:
    return UserCreateForm(data, auto_id="id_user_new_%s")


def _role_of(user: Any) -> str:
    try:
        return str(user.membership.role)
    except ObjectDoesNotExist:
        return ""


def _settings_data(
    request: HttpRequest,
    sections: Iterable[str] = ("applications", "environments", "strategies", "users", "backends"),
    bound: Mapping[str, forms.Form] | None = None,
) -> SettingsData:
    """What the page (or the named sections of it) shows; ``bound`` holds a failed form."""
    bound = bound or {}
    sections = set(sections)
    admin = permissions.can_admin(request.user)
    data = SettingsData(can_admin=admin)
    strategies: list[DeploymentStrategy] = []
    if sections & {"environments", "strategies"}:
        strategies = flag_selectors.strategies()
    if sections & {"applications", "environments"}:
        for app in _applications_for_settings():
            data.applications.append(
                ApplicationRow(
                    application=app,
                    environment_count=app.environment_count,  # type: ignore[attr-defined]
                    flag_count=app.flag_count,  # type: ignore[attr-defined]
                    archived_flag_count=app.archived_flag_count,  # type: ignore[attr-defined]
                    environments=[
                        EnvironmentRow(
                            env,
                            (
                                bound.get(f"env-{env.pk}")
                                or _environment_edit_form(env, strategies=strategies)
                            )
                            if admin
                            else None,
                            webhook_url(request, env, app.key),
                        )
                        for env in app.environments.all()
                    ],
                    environment_form=(
                        bound.get(f"env-new-{app.pk}") or _environment_create_form(app)
                    )
                    if admin
                    else None,
                )
            )
        if admin:
            data.application_form = bound.get("application") or _application_form()
    if "users" in sections:
        for user in User.objects.select_related("membership").order_by("username", "pk"):
            role = _role_of(user)
            form = (bound.get(f"role-{user.pk}") or _role_form(user, role)) if admin else None
            data.users.append(UserRow(user, role, form))
        if admin:
            data.user_form = bound.get("user") or _user_form()
    if "backends" in sections:
        data.backends = list(
            BackendConnection.objects.annotate(environment_count=Count("environments"))
        )
    if "strategies" in sections:
        for strategy in strategies:
            form = bound.get(f"strategy-{strategy.pk}")
            if form is None and admin and not strategy.predefined:
                form = _strategy_form(strategy)
            data.strategies.append(
                StrategyRow(strategy, flag_selectors.strategy_schedule(strategy), form)
            )
        if admin:
            data.strategy_form = bound.get("strategy") or _strategy_form()
    return data


@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    permissions.require_view(request.user)
    return render(request, "accounts/settings.html", {"data": _settings_data(request)})


# --- writing ---------------------------------------------------------------------------------


def _toast(request: HttpRequest, text: str, level: str) -> str:
    return render_to_string(
        "core/fragments/oob_toast.html", {"text": text, "level": level}, request=request
    )


def admin_write(view: View) -> View:
    """POST only, admins only. A refused htmx request gets a toast and swaps nothing."""

    @wraps(view)
    @require_POST
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            permissions.require_admin(request.user)
        except PermissionDenied as exc:
            if is_partial(request):
                return reswap(HttpResponse(_toast(request, str(exc), "error"), status=403), "none")
            raise
        return view(request, *args, **kwargs)

    return wrapped


def _sections(
    request: HttpRequest,
    sections: list[str],
    *,
    bound: Mapping[str, forms.Form] | None = None,
    status: int = 200,
    toast: tuple[str, str] | None = None,
) -> HttpResponse:
    """The first section replaces the htmx target; the others follow out of band."""
    data = _settings_data(request, sections, bound)
    html = "".join(
        render_to_string(
            f"accounts/settings.html#{name}", {"data": data, "oob": i > 0}, request=request
        )
        for i, name in enumerate(sections)
    )
    if toast:
        html += _toast(request, *toast)
    html += '<div id="modal" hx-swap-oob="innerHTML"></div>'  # closes a confirmation dialog
    return HttpResponse(html, status=status)


def _saved(request: HttpRequest, text: str, sections: list[str]) -> HttpResponse:
    if is_partial(request):
        return _sections(request, sections, toast=(text, "success"))
    messages.success(request, text)
    return redirect(f"{reverse('settings')}#settings-{sections[0]}")


def _refused(
    request: HttpRequest, sections: list[str], bound: Mapping[str, forms.Form]
) -> HttpResponse:
    if is_partial(request):
        return _sections(request, sections, bound=bound, status=422)
    context = {"data": _settings_data(request, bound=bound), "has_errors": True}
    return render(request, "accounts/settings.html", context, status=422)


@admin_write
def settings_application_create(request: HttpRequest) -> HttpResponse:
    form = _application_form(request.POST)
    if form.is_valid():
        try:
            app = flag_services.application_create(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            return _saved(
                request,
                f"Created application {app.name} ({app.key}).",
                ["applications", "environments"],
            )
    return _refused(request, ["applications"], {"application": form})


@admin_write
def settings_environment_create(request: HttpRequest, app_key: str) -> HttpResponse:
    app = get_object_or_404(Application, key=app_key)
    form = _environment_create_form(app, request.POST)
    if form.is_valid():
        try:
            env = flag_services.environment_create(
                actor=request.user, application=app, **form.cleaned_data
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            text = f"Added environment {env.name} ({env.key}) to {app.name}."
            return _saved(request, text, ["environments", "applications"])
    return _refused(request, ["environments"], {f"env-new-{app.pk}": form})


@admin_write
def settings_environment_edit(request: HttpRequest, app_key: str, env_key: str) -> HttpResponse:
    """Rename an environment or change its protection; removing protection asks first."""
    app = get_object_or_404(Application, key=app_key)
    env = get_object_or_404(
        Environment.objects.select_related("backend", "default_strategy"),
        application=app,
        key=env_key,
    )
    strategies = flag_selectors.strategies()
    form = _environment_edit_form(env, request.POST, strategies=strategies)
    if form.is_valid():
        name, protected = form.cleaned_data["name"], form.cleaned_data["protected"]
        strategy_name = form.cleaned_data["default_strategy"]
        strategy: Any = flag_services.UNSET
        if strategy_name:
            strategy = next(s for s in strategies if s.name == strategy_name)
        if env.protected and not protected and request.POST.get("confirm") != "yes":
            context = {
                "application": app,
                "environment": env,
                "name": name,
                "default_strategy": strategy_name,
            }
            if is_partial(request):
                response = render(request, "accounts/environment_confirm.html#dialog", context)
                return reswap(retarget(response, "#modal"), "innerHTML")
            return render(request, "accounts/environment_confirm.html", context)
        before = (env.name, env.protected, _default_strategy_name(env))
        try:
            env = flag_services.environment_update(
                actor=request.user,
                environment=env,
                name=name,
                protected=protected,
                default_strategy=strategy,
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            if before == (env.name, env.protected, _default_strategy_name(env)):
                text = f"Nothing to change in {env.name}."
            else:
                state = "protected" if env.protected else "not protected"
                text = (
                    f"Saved {app.name} / {env.name} ({state}, deploys with "
                    f"{_default_strategy_name(env)})."
                )
            return _saved(request, text, ["environments"])
    return _refused(request, ["environments"], {f"env-{env.pk}": form})


@admin_write
def settings_alarm_secret(request: HttpRequest, app_key: str, env_key: str) -> HttpResponse:
    """Issue the alarm webhook's secret, or rotate it (after a confirmation: the old one stops
    working at once). The new secret is in this response only: it is never stored, put in the
    session or in a message, and no later page shows it."""
    app = get_object_or_404(Application, key=app_key)
    env = get_object_or_404(Environment, application=app, key=env_key)
    context: dict[str, Any] = {
        "application": app,
        "environment": env,
        "webhook_url": webhook_url(request, env, app.key),
    }
    if env.alarm_secret_salt and request.POST.get("confirm") != "yes":
        template = "accounts/alarm_secret_confirm.html"
        if is_partial(request):
            response = render(request, f"{template}#dialog", context)
            return reswap(retarget(response, "#modal"), "innerHTML")
        return render(request, template, context)
    rotated = bool(env.alarm_secret_salt)
    context["secret"] = alarms.alarm_secret_rotate(actor=request.user, environment=env)
    context["rotated"] = rotated
    env.refresh_from_db(fields=["alarm_secret_rotated_at"])
    if is_partial(request):
        response = render(request, "accounts/alarm_secret.html#dialog", context)
        response = reswap(retarget(response, "#modal"), "innerHTML")
        response.write(
            render_to_string(
                "accounts/settings.html#environments",
                {"data": _settings_data(request, ["environments"]), "oob": True},
                request=request,
            )
        )
    else:
        response = render(request, "accounts/alarm_secret.html", context)
    add_never_cache_headers(response)
    return response


@admin_write
def settings_strategy_create(request: HttpRequest) -> HttpResponse:
    form = _strategy_form(None, request.POST)
    if form.is_valid():
        try:
            strategy = deployment_services.strategy_save(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            text = f"Added strategy {strategy.name}: {flag_selectors.strategy_schedule(strategy)}."
            return _saved(request, text, ["strategies", "environments"])
    return _refused(request, ["strategies"], {"strategy": form})


@admin_write
def settings_strategy_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change one of our strategies (AWS's predefined ones are read-only: the service refuses).

    Deployments keep the schedule they started with (``Deployment.plan``)."""
    strategy = get_object_or_404(DeploymentStrategy, pk=pk)
    form = _strategy_form(strategy, request.POST)
    if strategy.predefined:
        form.is_valid()
        form.add_error(None, f"{strategy.name} is one of AWS's predefined strategies: read-only.")
    elif form.is_valid():
        try:
            strategy = deployment_services.strategy_save(
                actor=request.user, strategy=strategy, **form.cleaned_data
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            text = f"Saved strategy {strategy.name}: {flag_selectors.strategy_schedule(strategy)}."
            return _saved(request, text, ["strategies", "environments"])
    return _refused(request, ["strategies"], {f"strategy-{strategy.pk}": form})


ROLE_LABELS = {"": "no access", **{value: label.lower() for value, label in Role.choices}}


@admin_write
def settings_user_role(request: HttpRequest, user_id: int) -> HttpResponse:
    user = get_object_or_404(User.objects.select_related("membership"), pk=user_id)
    before = _role_of(user)
    form = _role_form(user, before, request.POST)
    if form.is_valid():
        role = form.cleaned_data["role"]
        try:
            user_set_role(actor=request.user, user=user, role=role or None)
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            name = user.get_username()
            if role == before:
                text = f"{name} already has the role {ROLE_LABELS[role]}."
            else:
                text = f"{name}: {ROLE_LABELS[before]} → {ROLE_LABELS[role]}."
            if user.pk == request.user.pk and role != before and is_partial(request):
                # Your own role changed: reload the whole page, which now shows what you may do.
                messages.success(request, text)
                return HttpResponseClientRedirect(reverse("settings"))
            return _saved(request, text, ["users"])
    return _refused(request, ["users"], {f"role-{user.pk}": form})


@admin_write
def settings_user_create(request: HttpRequest) -> HttpResponse:
    form = _user_form(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            user = user_create(
                actor=request.user,
                username=data["username"],
                password=data["password"],
                role=data["role"] or None,
                email=data["email"],
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            role = ROLE_LABELS[data["role"]]
            return _saved(request, f"Created user {user.get_username()} ({role}).", ["users"])
    return _refused(request, ["users"], {"user": form})
