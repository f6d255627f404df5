"""The JSON API (``/api/v1/``): the same reads and writes as the dashboard, for scripts and CI.

Handlers are thin, like the HTML views: find the object (404), check the caller's role before
reading the body (403 changes nothing), check the JSON shape (400), call one service (422 for
what it refuses, 409 for a revision conflict), then answer with the resource. Authentication,
CSRF, the error format and dispatch live in ``api_base``; docs/api.md describes every endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.paginator import EmptyPage, Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.urls import reverse

from flagdash.accounts import permissions
from flagdash.core.diff import Change
from flagdash.core.parsing import positive_int
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import Deployment, DeploymentStrategy
from flagdash.flags import documents, selectors, services
from flagdash.flags.api_base import (
    ApiError,
    FieldErrors,
    Payload,
    json_response,
    not_found,
    payload,
)
from flagdash.flags.models import (
    Application,
    ConfigVersion,
    Environment,
    Flag,
    FlagAttribute,
    FlagKind,
    FlagSetting,
    ValueType,
)

MAX_PAGE_SIZE = 100


# --- lookups (404 with a message that names what is missing) ---------------------------------


def _app(app_key: str) -> Application:
    try:
        return selectors.application_by_key(app_key)
    except Http404:
        raise not_found(f"No application “{app_key}”.") from None


def _env(app: Application, env_key: str) -> Environment:
    try:
        return selectors.environment_by_key(app, env_key)
    except Http404:
        raise not_found(f"{app.name} has no environment “{env_key}”.") from None


def _flag(app: Application, flag_key: str) -> Flag:
    try:
        return selectors.flag_by_key(app, flag_key)
    except Http404:
        raise not_found(f"{app.name} has no flag “{flag_key}”.") from None


def _attribute(flag: Flag, name: str) -> FlagAttribute:
    attr = FlagAttribute.objects.filter(flag=flag, name=name).first()
    if attr is None:
        raise not_found(f"{flag.key} has no attribute “{name}”.")
    return attr


def _setting(flag: Flag, environment: Environment) -> FlagSetting:
    setting = (
        FlagSetting.objects.select_related("flag__application", "environment", "updated_by")
        .filter(flag=flag, environment=environment)
        .first()
    )
    if setting is None:
        raise not_found(f"{flag.key} has no setting in {environment.name}.")
    return setting


def _version(environment: Environment, number: int) -> ConfigVersion:
    try:
        return selectors.version_by_number(environment, number)
    except Http404:
        raise not_found(f"{environment.name} has no version {number}.") from None


# --- representations -------------------------------------------------------------------------


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def application_data(app: Application) -> dict[str, Any]:
    return {
        "key": app.key,
        "name": app.name,
        "description": app.description,
        "created_at": app.created_at,
    }


def environment_data(env: Environment, user: Any) -> dict[str, Any]:
    return {
        "key": env.key,
        "name": env.name,
        "position": env.position,
        "protected": env.protected,
        "backend": {"name": env.backend.name, "kind": env.backend.kind},
        "can_edit": permissions.can_edit_environment(user, env),
    }


def flag_data(flag: Flag, env_keys: Mapping[int, str]) -> dict[str, Any]:
    """A flag's definition and its state per environment (tags, owner, settings prefetched)."""
    states = {
        env_keys[s.environment_id]: {"enabled": s.enabled, "revision": s.revision}
        for s in flag.settings.all()
        if s.environment_id in env_keys
    }
    return {
        "key": flag.key,
        "name": flag.name,
        "description": flag.description,
        "kind": flag.kind,
        "value_type": flag.value_type,
        "short_term": flag.short_term,
        "owner": _username(flag.owner),
        "remove_by": flag.remove_by,
        "tags": sorted(t.name for t in flag.tags.all()),
        "archived": flag.archived_at is not None,
        "archived_at": flag.archived_at,
        "created_at": flag.created_at,
        "updated_at": flag.updated_at,
        "environments": {key: states[key] for key in env_keys.values() if key in states},
    }


def attribute_data(attr: FlagAttribute) -> dict[str, Any]:
    return {
        "name": attr.name,
        "type": attr.type,
        "description": attr.description,
        "required": attr.required,
        "pattern": attr.pattern,
        "enum": list(attr.enum),
        "minimum": attr.minimum,
        "maximum": attr.maximum,
    }


def _env_keys(environments: Iterable[Environment]) -> dict[int, str]:
    return {env.pk: env.key for env in environments}


def flag_detail_data(flag: Flag) -> dict[str, Any]:
    fresh = (
        selectors.with_row_data(Flag.objects.filter(pk=flag.pk))
        .select_related("application")
        .prefetch_related("attributes")
        .get()
    )
    data = flag_data(fresh, _env_keys(selectors.environments_of(fresh.application)))
    data["application"] = fresh.application.key
    data["attributes"] = [
        attribute_data(a) for a in sorted(fresh.attributes.all(), key=lambda a: (a.position, a.pk))
    ]
    return data


def setting_data(setting: FlagSetting) -> dict[str, Any]:
    multivariant = setting.flag.is_multivariant
    return {
        "flag": setting.flag.key,
        "environment": setting.environment.key,
        "enabled": setting.enabled,
        "attribute_values": dict(setting.attribute_values),
        "variants": list(setting.variants) if multivariant else None,
        "default_variant": setting.default_variant if multivariant else None,
        "revision": setting.revision,
        "updated_at": setting.updated_at,
        "updated_by": _username(setting.updated_by),
    }


def version_data(version: ConfigVersion, *, document: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "number": version.number,
        "environment": version.environment.key,
        "sha256": version.sha256,
        "message": version.message,
        "author": version.author_name or None,
        "created_at": version.created_at,
    }
    if document:
        data["document"] = documents.load(version.document)
    return data


def deployment_summary(d: Deployment) -> dict[str, Any]:
    return {"id": d.pk, "state": d.state, "strategy": d.strategy.name}


def deployment_data(d: Deployment, *, events: bool = True) -> dict[str, Any]:
    """A deployment: where it stands, what it deploys over what, how, and (optionally) its log."""
    env = d.environment
    data: dict[str, Any] = {
        "id": d.pk,
        "application": env.application.key,
        "environment": env.key,
        "kind": d.kind,
        "state": d.state,
        "percentage": d.percentage,
        "version": d.version.number,
        "previous_version": d.previous_version.number if d.previous_version else None,
        "strategy": d.strategy.name,
        "plan": dict(d.plan),
        "message": d.message,
        "created_by": d.created_by_name or None,
        "created_at": d.created_at,
        "started_at": d.started_at,
        "finished_at": d.finished_at,
        "waiting_reason": d.waiting_reason or None,
        "error": d.error or None,
        "error_details": d.error_details,
        "drifted": d.drifted,
        "rollback": {
            "requested_at": d.rollback_requested_at,
            "reason": d.rollback_reason,
            "trigger": d.rollback_trigger,
            "by": d.rollback_by_name or None,
            "alarm": d.alarm_name or None,
        }
        if d.rollback_requested_at or d.rollback_trigger
        else None,
        "restores": d.restores_id,
    }
    if events:
        data["events"] = [
            {
                "at": e.occurred_at,
                "type": e.type,
                "percentage": e.percentage,
                "message": e.message,
                "triggered_by": e.triggered_by or None,
            }
            for e in d.events.order_by("occurred_at", "id")
        ]
    return data


def _deployment(pk: int) -> Deployment:
    d = (
        Deployment.objects.select_related(
            "environment__application", "version", "previous_version", "strategy"
        )
        .defer(
            "version__document",
            "version__flag_digests",
            "previous_version__document",
            "previous_version__flag_digests",
        )
        .filter(pk=pk)
        .first()
    )
    if d is None:
        raise not_found(f"No deployment #{pk}.")
    return d


def change_data(change: Change) -> dict[str, Any]:
    return {"path": change.path, "kind": change.kind, "old": change.old, "new": change.new}


def conflict_error(exc: services.RevisionConflict) -> ApiError:
    """409 with the setting as it is now and every save since the caller's revision."""
    current = _setting(exc.setting.flag, exc.setting.environment)
    return ApiError(
        409,
        exc.code,
        str(exc),
        extra={
            "expected_revision": exc.expected_revision,
            "current": setting_data(current),
            "changes_since": [
                {
                    "actor": c.actor_name or None,
                    "at": c.occurred_at,
                    "revision": c.revision,
                    "changes": [change_data(ch) for ch in c.changes],
                }
                for c in exc.changes_since
            ],
        },
    )


# --- query strings and pages -----------------------------------------------------------------


def _query_error(fields: FieldErrors, name: str, message: str) -> None:
    fields.setdefault(name, []).append({"code": "invalid", "message": message})


def _page_params(query: QueryDict, fields: FieldErrors) -> tuple[int, int]:
    number, size = 1, settings.FLAGDASH_PAGE_SIZE
    raw_page, raw_size = query.get("page", "1"), query.get("page_size", str(size))
    page = positive_int(raw_page)
    if page is not None:
        number = page
    else:
        _query_error(fields, "page", "A page number (1, 2, …).")
    wanted = positive_int(raw_size)
    if wanted is not None and wanted <= MAX_PAGE_SIZE:
        size = wanted
    else:
        _query_error(fields, "page_size", f"A whole number from 1 to {MAX_PAGE_SIZE}.")
    return number, size


def _check_query(fields: FieldErrors) -> None:
    if fields:
        message = "; ".join(f"{k}: {v[0]['message']}" for k, v in fields.items())
        raise ApiError(400, "invalid", message, fields=fields)


def _paginate(qs: QuerySet[Any], number: int, size: int) -> Page[Any]:
    paginator = Paginator(qs, size)
    try:
        return paginator.page(number)
    except EmptyPage:
        raise not_found(f"There is no page {number} (the last is {paginator.num_pages}).") from None


def _page_links(request: HttpRequest, page: Page[Any]) -> dict[str, Any]:
    def link(number: int) -> str:
        query = request.GET.copy()
        query["page"] = str(number)
        return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")

    return {
        "count": page.paginator.count,
        "page": page.number,
        "pages": page.paginator.num_pages,
        "page_size": page.paginator.per_page,
        "next": link(page.next_page_number()) if page.has_next() else None,
        "previous": link(page.previous_page_number()) if page.has_previous() else None,
    }


YES_NO = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


def _flag_filters(query: QueryDict, fields: FieldErrors) -> selectors.FlagFilters:
    short_term = query.get("short_term", "").lower()
    if short_term and short_term not in YES_NO:
        _query_error(fields, "short_term", "One of yes, no (or true, false).")
    archived = query.get("archived", "")
    if archived not in ("", "active", "only", "all"):
        _query_error(fields, "archived", "One of active (default), only, all.")
    sort = query.get("sort", "key")
    if sort not in selectors.SORTS:
        _query_error(fields, "sort", f"One of {', '.join(selectors.SORTS)}.")
    for name, limit in (("q", 100), ("tag", 32), ("owner", 150)):
        if len(query.get(name, "")) > limit:
            _query_error(fields, name, f"At most {limit} characters.")
    return selectors.FlagFilters(
        q=query.get("q", "").strip(),
        short_term=YES_NO.get(short_term, ""),
        tag=query.get("tag", "").strip(),
        owner=query.get("owner", "").strip(),
        archived="" if archived == "active" else archived,
        sort=sort if sort in selectors.SORTS else "key",
    )


# --- root, applications, environments --------------------------------------------------------


def api_root(request: HttpRequest) -> HttpResponse:
    """Who am I: the caller, their role and how they authenticated (a CI smoke test)."""
    token = getattr(request, "api_token", None)
    return json_response(
        {
            "api": "v1",
            "user": request.user.get_username(),
            "role": permissions.role_of(request.user),
            "auth": "token" if token else "session",
            "token": {"name": token.name, "prefix": token.prefix, "expires_at": token.expires_at}
            if token
            else None,
            "applications": request.build_absolute_uri(reverse("api_apps")),
        }
    )


def apps_list(request: HttpRequest) -> HttpResponse:
    apps = Application.objects.order_by("key")
    return json_response({"results": [application_data(a) for a in apps]})


def environments_list(request: HttpRequest, app_key: str) -> HttpResponse:
    app = _app(app_key)
    envs = selectors.environments_of(app)
    return json_response({"results": [environment_data(e, request.user) for e in envs]})


# --- flags -----------------------------------------------------------------------------------


def flags_list(request: HttpRequest, app_key: str) -> HttpResponse:
    """One page of flags, filtered and sorted as in the dashboard; a fixed number of queries."""
    app = _app(app_key)
    fields: FieldErrors = {}
    filters = _flag_filters(request.GET, fields)
    number, size = _page_params(request.GET, fields)
    _check_query(fields)
    env_keys = _env_keys(selectors.environments_of(app))
    page = _paginate(selectors.with_row_data(selectors.flag_queryset(app, filters)), number, size)
    return json_response(
        {**_page_links(request, page), "results": [flag_data(f, env_keys) for f in page]}
    )


FLAG_WRITABLE = ("name", "description", "short_term", "owner", "remove_by", "tags")


def flag_create(request: HttpRequest, app_key: str) -> HttpResponse:
    app = _app(app_key)
    permissions.require_edit_flags(request.user)
    body = payload(
        request,
        allowed=("key", "kind", "value_type", "variants", "default_variant", *FLAG_WRITABLE),
    )
    values = {
        "key": body.string("key", required=True),
        "name": body.string("name", required=True),
        "description": body.string("description", default=""),
        "kind": body.string("kind", default=FlagKind.BOOLEAN),
        "value_type": body.string("value_type", nullable=True),
        "short_term": body.boolean("short_term", default=False),
        "owner": body.string("owner", nullable=True),
        "remove_by": body.date("remove_by", nullable=True),
        "tags": body.string_list("tags", default=[]),
        "variants": body.object_list("variants", nullable=True),
        "default_variant": body.string("default_variant", nullable=True),
    }
    body.check()
    errors: dict[str, ValidationError] = {}
    if values["kind"] == FlagKind.BOOLEAN:
        if values["value_type"] not in (None, ValueType.BOOLEAN):
            errors["value_type"] = ValidationError(
                "A boolean flag serves booleans; set kind to “multivariant” for other values.",
                code="not_applicable",
            )
        for name in ("variants", "default_variant"):
            if values[name] is not None:
                errors[name] = ValidationError(
                    "Only multi-variant flags have variants.", code="not_applicable"
                )
    elif values["variants"] == []:
        errors["variants"] = ValidationError("Give at least one variant.", code="required")
    if errors:
        raise ValidationError(errors)
    flag = services.flag_create(
        actor=request.user,
        application=app,
        key=values["key"],
        name=values["name"],
        description=values["description"],
        kind=values["kind"],
        value_type=values["value_type"],
        short_term=values["short_term"],
        owner=values["owner"],
        remove_by=values["remove_by"],
        tags=values["tags"],
        variants=values["variants"],
        default_variant=values["default_variant"] or "",
    )
    response = json_response(flag_detail_data(flag), status=201)
    response["Location"] = reverse("api_flag", args=[app.key, flag.key])
    return response


def flag_detail(request: HttpRequest, app_key: str, flag_key: str) -> HttpResponse:
    flag = _flag(_app(app_key), flag_key)
    return json_response(flag_detail_data(flag))


def flag_update(request: HttpRequest, app_key: str, flag_key: str) -> HttpResponse:
    """PATCH: change the given fields; the key, kind and value type never change."""
    flag = _flag(_app(app_key), flag_key)
    permissions.require_edit_flags(request.user)
    body = payload(request, allowed=(*FLAG_WRITABLE, "key", "kind", "value_type"))
    # Fields not sent stay UNSET: the service keeps them, merged under its row lock, so two
    # PATCHes of different fields at once both land.
    unset = services.UNSET
    values = {
        "name": body.string("name", default=unset),
        "description": body.string("description", default=unset),
        "short_term": body.boolean("short_term", default=unset),
        "owner": body.string("owner", nullable=True, default=unset),
        "remove_by": body.date("remove_by", nullable=True, default=unset),
        "tags": body.string_list("tags", default=unset),
    }
    immutable = {
        name: body.string(name, default=getattr(flag, name))
        for name in ("key", "kind", "value_type")
    }
    body.check()
    errors = {
        name: ValidationError(f"The {name.replace('_', ' ')} of a flag cannot change.", "read_only")
        for name, value in immutable.items()
        if value != getattr(flag, name)
    }
    if errors:
        raise ValidationError(errors)
    services.flag_update(actor=request.user, flag=flag, **values)
    return json_response(flag_detail_data(flag))


def _set_archived(request: HttpRequest, app_key: str, flag_key: str, archived: bool) -> Any:
    """Archive or restore one flag the way the dashboard does: with a version saved and
    deployed in every environment that serves it (``flagdash.lifecycle.services``)."""
    from flagdash.lifecycle import services as lifecycle_services

    app = _app(app_key)
    flag = _flag(app, flag_key)
    permissions.require_edit_flags(request.user)
    payload(request, allowed=()).check()
    if (flag.archived_at is not None) == archived:
        state = "archived" if archived else "active"
        raise ValidationError(
            {"archived": ValidationError(f"{flag.key} is already {state}.", code="no_change")}
        )
    action = lifecycle_services.flags_archive if archived else lifecycle_services.flags_restore
    result = action(actor=request.user, application=app, flags=[flag])
    data = flag_detail_data(flag)
    data["deployments"] = [deployment_summary(d) for d in result.deployments]
    return json_response(data)


def flag_archive(request: HttpRequest, app_key: str, flag_key: str) -> HttpResponse:
    return _set_archived(request, app_key, flag_key, True)


def flag_restore(request: HttpRequest, app_key: str, flag_key: str) -> HttpResponse:
    return _set_archived(request, app_key, flag_key, False)


# --- attributes ------------------------------------------------------------------------------


ATTRIBUTE_FIELDS = (
    "name",
    "type",
    "description",
    "required",
    "pattern",
    "enum",
    "minimum",
    "maximum",
)


def _attribute_values(body: Any, current: Mapping[str, Any] | None) -> dict[str, Any]:
    creating = current is None
    old = current or {}
    values = {
        "name": body.string("name", required=creating, default=old.get("name")),
        "type": body.string("type", required=creating, default=old.get("type")),
        "description": body.string("description", default=old.get("description", "")),
        "required": body.boolean("required", default=old.get("required", False)),
        "pattern": body.string("pattern", default=old.get("pattern", "")),
        "enum": body.string_list("enum", default=old.get("enum", [])),
        "minimum": body.integer("minimum", nullable=True, default=old.get("minimum")),
        "maximum": body.integer("maximum", nullable=True, default=old.get("maximum")),
    }
    body.check()
    return values


def attribute_create(request: HttpRequest, app_key: str, flag_key: str) -> HttpResponse:
    app = _app(app_key)
    flag = _flag(app, flag_key)
    permissions.require_edit_flags(request.user)
    values = _attribute_values(payload(request, allowed=ATTRIBUTE_FIELDS), None)
    attr = services.attribute_save(actor=request.user, flag=flag, **values)
    response = json_response(attribute_data(attr), status=201)
    response["Location"] = reverse("api_attribute", args=[app.key, flag.key, attr.name])
    return response


def attribute_update(request: HttpRequest, app_key: str, flag_key: str, name: str) -> HttpResponse:
    """PATCH: change the given fields (renaming carries the values along)."""
    flag = _flag(_app(app_key), flag_key)
    attr = _attribute(flag, name)
    permissions.require_edit_flags(request.user)
    values = _attribute_values(payload(request, allowed=ATTRIBUTE_FIELDS), attribute_data(attr))
    attr = services.attribute_save(actor=request.user, flag=flag, attribute=attr, **values)
    return json_response(attribute_data(attr))


def attribute_delete(request: HttpRequest, app_key: str, flag_key: str, name: str) -> HttpResponse:
    """Remove the attribute and its values everywhere; answers the flag as it is now."""
    flag = _flag(_app(app_key), flag_key)
    attr = _attribute(flag, name)
    permissions.require_edit_flags(request.user)
    payload(request, allowed=()).check()
    services.attribute_delete(actor=request.user, attribute=attr)
    return json_response(flag_detail_data(flag))


# --- settings (one flag in one environment) --------------------------------------------------


SETTING_WRITABLE = ("enabled", "attribute_values", "variants", "default_variant", "revision")
SETTING_READ_ONLY = ("flag", "environment", "updated_at", "updated_by")


def setting_detail(request: HttpRequest, app_key: str, flag_key: str, env_key: str) -> HttpResponse:
    app = _app(app_key)
    return json_response(setting_data(_setting(_flag(app, flag_key), _env(app, env_key))))


def setting_update(request: HttpRequest, app_key: str, flag_key: str, env_key: str) -> HttpResponse:
    """PUT the setting's values. ``revision`` (the one you read) is required; omitted fields keep
    their values at that revision. A save in between is a 409 showing what changed meanwhile.
    ``enabled`` is accepted only unchanged (GET → edit → PUT round-trips): use toggle/."""
    app = _app(app_key)
    flag = _flag(app, flag_key)
    environment = _env(app, env_key)
    permissions.require_edit_environment(request.user, environment)
    body = payload(request, allowed=SETTING_WRITABLE, ignored=SETTING_READ_ONLY)
    revision = body.integer("revision", required=True)
    enabled = body.boolean("enabled")
    attribute_values = body.obj("attribute_values")
    variants = body.object_list("variants", nullable=True)
    default_variant = body.string("default_variant", nullable=True)
    body.check()
    if not flag.is_multivariant:
        errors = {
            name: ValidationError("Only multi-variant flags have variants.", "not_applicable")
            for name in ("variants", "default_variant")
            if body.data.get(name) is not None
        }
        if errors:
            raise ValidationError(errors)
    setting = _setting(flag, environment)
    # Omitted fields are taken from the setting as read; that is only the state at ``revision``
    # if nobody saved since (the service checks the revision again under its row lock).
    if revision > setting.revision:
        raise ValidationError(
            {
                "revision": ValidationError(
                    f"There is no revision {revision} yet (the setting is at {setting.revision}).",
                    "invalid_revision",
                )
            }
        )
    if revision != setting.revision:
        raise conflict_error(
            services.RevisionConflict(setting, revision, services.changes_since(setting, revision))
        )
    if enabled is not None and enabled != setting.enabled:
        # As in the dashboard, the switch is the one way to turn a flag on or off: it saves a
        # version at once, so what is enabled is always what a version holds.
        raise ValidationError(
            {
                "enabled": ValidationError(
                    f"Turn {flag.key} on or off with POST …/environments/{environment.key}/toggle/ "
                    "(it saves a version); here “enabled” may only repeat the current state.",
                    "use_toggle",
                )
            }
        )
    try:
        saved = services.flag_setting_update(
            actor=request.user,
            flag=flag,
            environment=environment,
            expected_revision=revision,
            attribute_values=setting.attribute_values
            if attribute_values is None
            else attribute_values,
            variants=(setting.variants if variants is None else variants)
            if flag.is_multivariant
            else None,
            default_variant=(
                setting.default_variant if default_variant is None else default_variant
            )
            if flag.is_multivariant
            else "",
        )
    except services.RevisionConflict as exc:
        raise conflict_error(exc) from None
    return json_response(setting_data(_setting(saved.flag, saved.environment)))


def setting_toggle(request: HttpRequest, app_key: str, flag_key: str, env_key: str) -> HttpResponse:
    """Turn the flag on or off here and save that as a new version (as the dashboard's switch)."""
    app = _app(app_key)
    flag = _flag(app, flag_key)
    environment = _env(app, env_key)
    permissions.require_edit_environment(request.user, environment)
    body = payload(request, allowed=("enabled", "revision"))
    enabled = body.boolean("enabled", required=True)
    revision = body.integer("revision", nullable=True)
    body.check()
    try:
        result = services.flag_set_enabled(
            actor=request.user,
            flag=flag,
            environment=environment,
            enabled=enabled,
            expected_revision=revision,
        )
    except services.RevisionConflict as exc:
        raise conflict_error(exc) from None
    return json_response(
        {
            "setting": setting_data(_setting(flag, environment)),
            "version": version_data(result.version),
            "deployment": deployment_summary(result.deployment) if result.deployment else None,
        }
    )


# --- versions --------------------------------------------------------------------------------


def versions_list(request: HttpRequest, app_key: str, env_key: str) -> HttpResponse:
    environment = _env(_app(app_key), env_key)
    fields: FieldErrors = {}
    number, size = _page_params(request.GET, fields)
    _check_query(fields)
    page = _paginate(selectors.versions_of(environment).select_related("environment"), number, size)
    return json_response({**_page_links(request, page), "results": [version_data(v) for v in page]})


def version_create(request: HttpRequest, app_key: str, env_key: str) -> HttpResponse:
    """Save the environment's working state as a new immutable version."""
    app = _app(app_key)
    environment = _env(app, env_key)
    permissions.require_edit_environment(request.user, environment)
    body = payload(request, allowed=("message",))
    message = body.string("message", default="")
    body.check()
    version = services.config_version_create(
        actor=request.user, environment=environment, message=message
    )
    response = json_response(version_data(version, document=True), status=201)
    response["Location"] = reverse("api_version", args=[app.key, environment.key, version.number])
    return response


def version_detail(request: HttpRequest, app_key: str, env_key: str, number: int) -> HttpResponse:
    environment = _env(_app(app_key), env_key)
    return json_response(version_data(_version(environment, number), document=True))


def version_diff(request: HttpRequest, app_key: str, env_key: str, number: int) -> HttpResponse:
    """Per-flag changes from ``?against=<m>`` (default: the version before) to version n."""
    environment = _env(_app(app_key), env_key)
    version = _version(environment, number)
    raw = request.GET.get("against", "")
    against: ConfigVersion | None
    if raw:
        against_number = positive_int(raw)
        if against_number is None:
            _check_query({"against": [{"code": "invalid", "message": "A version number."}]})
        against = _version(environment, against_number or 0)
    else:
        against = selectors.versions_of(environment).filter(number__lt=number).first()
    flags = documents.document_diff(
        documents.load(against.document) if against else None, documents.load(version.document)
    )
    return json_response(
        {
            "environment": environment.key,
            "from": against.number if against else None,
            "to": version.number,
            "flags": [
                {
                    "key": f.key,
                    "status": f.status,
                    "changes": [change_data(c) for c in f.changes],
                }
                for f in flags
            ],
        }
    )


# --- deployments -----------------------------------------------------------------------------


def version_deploy(request: HttpRequest, app_key: str, env_key: str, number: int) -> HttpResponse:
    """Deploy a saved version with a strategy (default: the environment's); 202, queued."""
    app = _app(app_key)
    environment = _env(app, env_key)
    version = _version(environment, number)
    permissions.require_edit_environment(request.user, environment)
    body = payload(request, allowed=("strategy", "message"))
    strategy_name = body.string("strategy", nullable=True)
    message = body.string("message", default="")
    body.check()
    strategy = None
    if strategy_name is not None:
        strategy = DeploymentStrategy.objects.filter(name=strategy_name).first()
        if strategy is None:
            raise ValidationError(
                {
                    "strategy": ValidationError(
                        f"There is no strategy “{strategy_name}”.", code="unknown_strategy"
                    )
                }
            )
    if len(message) > 500:
        raise ValidationError(
            {"message": ValidationError("At most 500 characters.", code="too_long")}
        )
    if "\x00" in message:
        raise ValidationError(
            {"message": ValidationError("Contains a NUL character.", code="invalid")}
        )
    d = deployment_services.deployment_create(
        actor=request.user,
        environment=environment,
        version=version,
        strategy=strategy,
        message=message,
    )
    response = json_response(deployment_data(_deployment(d.pk)), status=202)
    response["Location"] = reverse("api_deployment", args=[d.pk])
    return response


def deployment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return json_response(deployment_data(_deployment(pk)))


def _reason(request: HttpRequest, *, extra: tuple[str, ...] = ()) -> tuple[str, Payload]:
    body = payload(request, allowed=("reason", *extra))
    reason = body.string("reason", default="")
    return reason, body


def _accepted(d: Deployment) -> HttpResponse:
    response = json_response(deployment_data(_deployment(d.pk)), status=202)
    response["Location"] = reverse("api_deployment", args=[d.pk])
    return response


def deployment_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    """Stop a running deployment, or roll back the live completed one (202: the deployment that
    carries the rollback: the same one, or a new restore)."""
    d = _deployment(pk)
    permissions.require_edit_environment(request.user, d.environment)
    reason, body = _reason(request)
    body.check()
    result = deployment_services.deployment_rollback(
        actor=request.user, deployment=d, reason=reason
    )
    return _accepted(result)


def deployment_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Take a queued deployment out of the queue (200: the cancelled deployment)."""
    d = _deployment(pk)
    permissions.require_edit_environment(request.user, d.environment)
    payload(request, allowed=()).check()
    deployment_services.deployment_cancel(actor=request.user, deployment=d)
    return json_response(deployment_data(_deployment(d.pk)))


def deployment_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Deploy a failed deployment's version again (202: the new deployment)."""
    d = _deployment(pk)
    permissions.require_edit_environment(request.user, d.environment)
    body = payload(request, allowed=("overwrite_drift",))
    overwrite = body.boolean("overwrite_drift", default=False)
    body.check()
    retry = deployment_services.deployment_retry(
        actor=request.user, deployment=d, overwrite_drift=bool(overwrite)
    )
    return _accepted(retry)


def version_rollback(request: HttpRequest, app_key: str, env_key: str, number: int) -> HttpResponse:
    """Roll back to this version: deploy it at once, recorded as a rollback (202)."""
    app = _app(app_key)
    environment = _env(app, env_key)
    version = _version(environment, number)
    permissions.require_edit_environment(request.user, environment)
    reason, body = _reason(request)
    body.check()
    restore = deployment_services.version_restore(
        actor=request.user, environment=environment, version=version, reason=reason
    )
    return _accepted(restore)


def unknown_endpoint(request: HttpRequest, rest: str = "") -> HttpResponse:
    raise not_found(f"No API endpoint at {request.path} (paths end with “/”; see docs/api.md).")
