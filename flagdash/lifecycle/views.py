"""HTML views of the short-term page: the list with statuses, inline edits, archive and restore.

Thin, like the flag views: find the objects, check the role, call one service, then redirect
(plain POST) or answer with a partial of the same template (htmx). Every page works without
JavaScript: filters are a GET form, row edits and archiving are real forms.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from flagdash.accounts import permissions
from flagdash.core.htmx import is_partial
from flagdash.flags import selectors as flag_selectors
from flagdash.flags import services as flag_services
from flagdash.flags.forms import apply_service_errors
from flagdash.flags.models import Application, Flag
from flagdash.lifecycle import charts, selectors, services
from flagdash.lifecycle.forms import RowForm, check_selection

LIST_TEMPLATE = "lifecycle/short_term.html"
CONFIRM_TEMPLATE = "lifecycle/archive_confirm.html"


def _app(request: HttpRequest, app_key: str) -> Application:
    permissions.require_view(request.user)
    app = flag_selectors.application_by_key(app_key)
    if request.session.get("app_key") != app.key:
        request.session["app_key"] = app.key
    return app


def _list_url(app: Application) -> str:
    return reverse("short_term", args=[app.key])


def _safe_next(request: HttpRequest, default: str) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default


def _toast(request: HttpRequest, text: str, level: str = "info") -> str:
    return render_to_string(
        "core/fragments/oob_toast.html", {"text": text, "level": level}, request=request
    )


# --- the page --------------------------------------------------------------------------------


def _page_context(
    request: HttpRequest,
    app: Application,
    query: QueryDict,
    *,
    edit: tuple[Flag, RowForm] | None = None,
) -> dict[str, Any]:
    now = timezone.now()
    lifecycle = selectors.short_term_flags(app, now=now)
    filters = selectors.Filters.from_query(query)
    rows, counts = selectors.filtered(lifecycle, filters)
    page = Paginator(rows, settings.FLAGDASH_PAGE_SIZE).get_page(query.get("page"))
    params = query.copy()
    params.pop("page", None)
    rules = selectors.status_rules(lifecycle.days)
    usernames: list[str] = []
    forms_by_flag = {}
    if permissions.can_edit_flags(request.user):
        usernames = list(flag_selectors.active_users().values_list("username", flat=True))
        forms_by_flag = {row.flag.pk: RowForm(flag=row.flag) for row in page.object_list}
        if edit is not None:
            forms_by_flag[edit[0].pk] = edit[1]

    def link(status: str) -> str:
        wanted = params.copy()
        wanted.pop("status", None)
        if status:
            wanted["status"] = status
        return f"?{wanted.urlencode()}" if wanted else "?"

    status_links = [
        {"code": "", "label": "all", "count": sum(counts.values()), "url": link(""),
         "current": not filters.status, "rule": ""},
        *(
            {"code": code, "label": selectors.STATUS_LABELS[code], "count": counts[code],
             "url": link(code), "current": filters.status == code, "rule": rules[code]}
            for code in selectors.STATUSES
        ),
    ]  # fmt: skip
    return {
        "application": app,
        "environments": lifecycle.environments,
        "status_links": status_links,
        "lifecycle": lifecycle,
        "filters": filters,
        "page": page,
        "rows": page.object_list,
        "counts": counts,
        "total": sum(counts.values()),
        "query": params.urlencode(),
        "choices": selectors.filter_choices(app),
        "statuses": [(s, selectors.STATUS_LABELS[s]) for s in selectors.STATUSES],
        "rules": rules,
        "chart": charts.status_chart(app, lifecycle.counts(), timezone.localdate(now)),
        "row_forms": forms_by_flag,
        "usernames": usernames,
        "editing": edit[0].pk if edit else None,
        "list_url": f"{_list_url(app)}?{params.urlencode()}" if params else _list_url(app),
        "can_archive": permissions.can_edit_flags(request.user),
    }


@require_GET
def short_term(request: HttpRequest, app_key: str) -> HttpResponse:
    app = _app(request, app_key)
    context = _page_context(request, app, request.GET)
    template = f"{LIST_TEMPLATE}#results" if is_partial(request) else LIST_TEMPLATE
    return render(request, template, context)


def _query_of(url: str) -> QueryDict:
    return QueryDict(urlsplit(url).query)


@require_POST
def short_term_edit(request: HttpRequest, app_key: str, flag_key: str) -> HttpResponse:
    """Save one row's lifetime, owner and remove-by date (audited by the flag service)."""
    app = _app(request, app_key)
    flag = flag_selectors.flag_by_key(app, flag_key)
    back = _safe_next(request, _list_url(app))
    if not permissions.can_edit_flags(request.user):
        text = "Only editors and admins can change flags."
        if is_partial(request):
            return reswap(HttpResponse(_toast(request, text, "error"), status=403), "none")
        raise PermissionDenied(text)
    form = RowForm(request.POST, flag=flag)
    if form.is_valid():
        data = form.cleaned_data
        try:
            flag_services.flag_update(
                actor=request.user,
                flag=flag,
                short_term=data["lifetime"] == "short_term",
                owner=data["owner"] or None,
                remove_by=data["remove_by"],
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
    if form.errors:
        context = _page_context(request, app, _query_of(back), edit=(flag, form))
        if is_partial(request):
            row = next((r for r in context["lifecycle"].rows if r.flag.pk == flag.pk), None)
            if row is None:  # filtered away meanwhile: show the whole list again
                return render(request, f"{LIST_TEMPLATE}#results", context, status=422)
            context["row"] = row
            return render(request, f"{LIST_TEMPLATE}#row", context, status=422)
        return render(request, LIST_TEMPLATE, context, status=422)
    flag.refresh_from_db()
    text = (
        f"Saved {flag.key}."
        if flag.short_term
        else f"{flag.key} is now permanent: it left the short-term list."
    )
    if not is_partial(request):
        messages.success(request, text)
        return redirect(back)
    context = _page_context(request, app, _query_of(back))
    html = render_to_string(f"{LIST_TEMPLATE}#results", context, request=request)
    response = HttpResponse(html + _toast(request, text, "success"))
    return retarget(reswap(response, "outerHTML"), "#results")


# --- archive and restore ---------------------------------------------------------------------


def _selected(request: HttpRequest) -> list[str]:
    source = request.POST if request.method == "POST" else request.GET
    return [k for k in source.getlist("flag") if k]


def _confirm_or_done(
    request: HttpRequest, app: Application, keys: list[str], *, restore: bool, back: str
) -> HttpResponse:
    if not permissions.can_edit_flags(request.user):
        text = "Only editors and admins can archive or restore flags."
        if is_partial(request):
            return reswap(HttpResponse(_toast(request, text, "error"), status=403), "none")
        raise PermissionDenied(text)
    # Every selected key must be one of this application's flags in the right state: a key
    # that is not (a NUL, another application's flag, archived meanwhile) is named in the
    # error and nothing changes; the others are shown, ready to confirm again.
    flags, errors = check_selection(app, keys, archived=restore)
    error = " ".join(m for e in errors for m in e.messages)
    status = 200
    if request.method == "POST" and request.POST.get("confirm") == "yes" and not error:
        action = services.flags_restore if restore else services.flags_archive
        try:
            result = action(actor=request.user, application=app, flags=flags)
        except ValidationError as exc:
            error, status = " ".join(exc.messages), 422
        except PermissionDenied as exc:
            error, status = str(exc), 403
        else:
            return _cleanup_done(request, app, result, restore=restore, back=back)
    plans = selectors.archive_plan(app, flags, request.user, restore=restore)
    context = {
        "application": app,
        "plans": plans,
        "restore": restore,
        "error": error,
        "back": back,
        "blocked": any(p.blocked for p in plans),
        "keys": [f.key for f in flags],
        "action_url": reverse(
            "short_term_restore" if restore else "short_term_archive", args=[app.key]
        ),
    }
    if error and status == 200:
        status = 422
    if is_partial(request):
        response = render(request, f"{CONFIRM_TEMPLATE}#dialog", context, status=status)
        return reswap(retarget(response, "#modal"), "innerHTML")
    return render(request, CONFIRM_TEMPLATE, context, status=status)


def _cleanup_done(
    request: HttpRequest,
    app: Application,
    result: services.CleanupResult,
    *,
    restore: bool,
    back: str,
) -> HttpResponse:
    keys = ", ".join(f.key for f in result.flags)
    verb = "Restored" if restore else "Archived"
    if result.deployments:
        where = ", ".join(
            f"{d.environment.name} (#{d.pk})"
            for d in sorted(result.deployments, key=lambda d: d.environment.position)
        )
        text = f"{verb} {keys}: deploying to {where}."
        if not restore:
            text += " Archived flags can be restored from the flag list's Archived filter."
    else:
        them = "them" if len(result.flags) > 1 else "it"
        text = f"{verb} {keys}. No environment served {them}: nothing to deploy."
    if not is_partial(request):
        messages.success(request, text)
        return redirect(back)
    if urlsplit(back).path != _list_url(app):  # from the flag page: go back there
        messages.success(request, text)
        return HttpResponseClientRedirect(back)
    context = _page_context(request, app, _query_of(back))
    html = str(render_to_string(f"{LIST_TEMPLATE}#results", context, request=request))
    html += _toast(request, text, "success") + '<div id="modal" hx-swap-oob="innerHTML"></div>'
    return retarget(reswap(HttpResponse(html), "outerHTML"), "#results")


@require_http_methods(["GET", "POST"])
def short_term_archive(request: HttpRequest, app_key: str) -> HttpResponse:
    """Archive the selected flags: a confirmation (per environment: what it serves, what each
    backend will do, code that still uses it), then one cleanup on ``confirm=yes``."""
    app = _app(request, app_key)
    back = _safe_next(request, _list_url(app))
    return _confirm_or_done(request, app, _selected(request), restore=False, back=back)


@require_http_methods(["GET", "POST"])
def short_term_restore(request: HttpRequest, app_key: str) -> HttpResponse:
    app = _app(request, app_key)
    back = _safe_next(request, _list_url(app))
    return _confirm_or_done(request, app, _selected(request), restore=True, back=back)


@require_http_methods(["GET", "POST"])
def flag_archive(request: HttpRequest, app_key: str, flag_key: str) -> HttpResponse:
    """The flag page's Archive / Restore: the same confirmation for one flag; a POST from the
    confirmation (or any POST to this URL) archives or restores it."""
    app = _app(request, app_key)
    flag = flag_selectors.flag_by_key(app, flag_key)
    permissions.require_edit_flags(request.user)
    back = _safe_next(request, reverse("flag_detail", args=[app.key, flag.key]))
    restore = flag.archived_at is not None
    if request.method == "POST":
        action = services.flags_restore if restore else services.flags_archive
        try:
            result = action(actor=request.user, application=app, flags=[flag])
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect(back)
        return _cleanup_done(request, app, result, restore=restore, back=back)
    return _confirm_or_done(request, app, [flag.key], restore=restore, back=back)
