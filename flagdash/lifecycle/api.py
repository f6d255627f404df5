"""JSON API of the short-term lifecycle (mounted at /api/v1/, see docs/api.md).

- ``GET/POST apps/<app>/code-references/``: the last scan (and the keys a scanner needs), or
  upload a scan (editors; JSON up to 8 MiB; 400 for a wrong shape, 422 for wrong values; a
  refused upload stores nothing).
- ``GET apps/<app>/short-term/``: every short-term flag with its status and why.
- ``POST apps/<app>/short-term/archive/`` and ``…/restore/``: archive or restore several flags
  in one step (versions saved and deployed per environment).
- ``GET short-term/digest/``: an owner's overdue and ready-to-remove flags, as the weekly mail.

Authentication, errors and dispatch are ``flagdash.flags.api_base``'s.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.paginator import EmptyPage, Paginator
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from flagdash.accounts import permissions
from flagdash.flags import api as flag_api
from flagdash.flags.api_base import ApiError, Payload, json_response, not_found, payload
from flagdash.flags.models import Flag
from flagdash.lifecycle import digest, scanner, selectors, services
from flagdash.lifecycle.forms import check_selection
from flagdash.lifecycle.models import CodeReference, CodeReferenceScan, ScanSource

User = get_user_model()
MAX_SCAN_BODY_BYTES = 8 * 2**20
REFERENCE_FIELDS = ("flag", "path", "line", "excerpt")
SCAN_FIELDS = (
    "commit",
    "scanned_at",
    "files_scanned",
    "skipped_binary",
    "skipped_large",
    "duration_ms",
    "listing",
    "references",
)


def scan_data(scan: CodeReferenceScan | None) -> dict[str, Any] | None:
    if scan is None:
        return None
    return {
        "scanned_at": scan.scanned_at,
        "uploaded_at": scan.uploaded_at,
        "commit": scan.commit or None,
        "files_scanned": scan.files_scanned,
        "skipped_binary": scan.skipped_binary,
        "skipped_large": scan.skipped_large,
        "duration_ms": scan.duration_ms,
        "listing": scan.listing or None,
        "source": scan.source,
        "uploaded_by": scan.uploaded_by_name,
        "references": scan.reference_count,
    }


# --- code references -------------------------------------------------------------------------


def code_references_get(request: HttpRequest, app_key: str) -> HttpResponse:
    app = flag_api._app(app_key)
    scan = CodeReferenceScan.objects.filter(application=app).first()
    keys = list(Flag.objects.filter(application=app).order_by("key").values_list("key", flat=True))
    body: dict[str, Any] = {"application": app.key, "scan": scan_data(scan), "flag_keys": keys}
    if scan is not None:
        per_flag: dict[str, int] = {}
        for key in CodeReference.objects.filter(scan=scan).values_list("flag_key", flat=True):
            per_flag[key] = per_flag.get(key, 0) + 1
        body["references_per_flag"] = dict(sorted(per_flag.items()))
        wanted = request.GET.get("flag")
        if wanted:
            if wanted not in keys:
                raise not_found(f"{app.name} has no flag “{wanted[:64]}”.")
            body["references"] = [
                {"flag": r.flag_key, "path": r.path, "line": r.line, "excerpt": r.excerpt}
                for r in CodeReference.objects.filter(scan=scan, flag_key=wanted).order_by(
                    "path", "line"
                )
            ]
    return json_response(body)


def _nul_at(value: Any, where: str) -> str | None:
    """Where the first NUL character is in a JSON value (in a key or a string), or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{key}" if where else str(key)
            if "\x00" in key:
                return inner.replace("\x00", "\\u0000")
            found = _nul_at(item, inner)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_at(item, f"{where}[{i}]")
            if found:
                return found
    return None


def refuse_nul(body: Payload) -> None:
    """400 when the body holds a NUL character anywhere: no text flagdash stores may hold one
    (PostgreSQL cannot), and no file name or source line does."""
    where = _nul_at(body.data, "")
    if where:
        message = "Text may not contain NUL characters (\\u0000)."
        raise ApiError(
            400,
            "invalid",
            f"{where}: {message}",
            fields={where: [{"code": "nul_character", "message": message}]},
        )


def _scanned_at(body: Payload) -> dt.datetime | None:
    """``scanned_at`` as an aware datetime (None when absent; a 400 field error when it is not
    an ISO 8601 date-time with a time zone). Its range is the service's to judge (422)."""
    raw = body.string("scanned_at", nullable=True)
    if not isinstance(raw, str):
        return None
    message = "Must be an ISO 8601 date-time with a time zone, e.g. 2026-11-21T13:04:02Z."
    try:
        value = parse_datetime(raw.strip()) if len(raw) <= 64 else None
    except ValueError:  # well formed but not a date ("2026-13-45T…", an offset of 99 hours)
        value = None
        message = f"Not a valid date-time (“{raw[:40]}”). " + message
    if value is None or value.tzinfo is None:
        body.error("scanned_at", "invalid_datetime", message)
        return None
    return value


def _nonnegative(body: Payload, name: str, *, required: bool = False) -> int:
    value = body.integer(name, required=required, default=0)
    return int(value) if isinstance(value, int) else 0


def _references(body: Payload) -> list[dict[str, Any]]:
    """The references' JSON shape (400 when wrong); their values are the service's to judge."""
    raw = body.object_list("references", required=True, default=[])
    if not isinstance(raw, list):
        return []
    if len(raw) > scanner.MAX_REFERENCES:
        body.error(
            "references",
            "too_many",
            f"At most {scanner.MAX_REFERENCES:,} references per scan (got {len(raw):,}).",
        )
        return []
    cleaned = []
    reported = 0
    for i, ref in enumerate(raw):
        where = f"references[{i}]"
        problems = []
        unknown = sorted(set(ref) - set(REFERENCE_FIELDS))
        if unknown:
            problems.append((where, "unknown_field", f"Unknown field “{unknown[0]}”."))
        for name, kind in (("flag", str), ("path", str), ("line", int)):
            value = ref.get(name)
            if value is None:
                problems.append((f"{where}.{name}", "required", "This field is required."))
            elif not isinstance(value, kind) or isinstance(value, bool):
                what = "a whole number" if kind is int else "a string"
                problems.append((f"{where}.{name}", "invalid", f"Must be {what}."))
        excerpt = ref.get("excerpt", "")
        if excerpt is not None and not isinstance(excerpt, str):
            problems.append((f"{where}.excerpt", "invalid", "Must be a string."))
        if problems:
            for field, code, message in problems:
                if reported < services.MAX_ERRORS:
                    body.error(field, code, message)
                    reported += 1
            continue
        cleaned.append({**ref, "excerpt": excerpt or ""})
    return cleaned


def code_references_post(request: HttpRequest, app_key: str) -> HttpResponse:
    app = flag_api._app(app_key)
    permissions.require_edit_flags(request.user)
    body = payload(request, allowed=SCAN_FIELDS, max_bytes=MAX_SCAN_BODY_BYTES)
    refuse_nul(body)
    commit = body.string("commit", nullable=True)
    scanned_at = _scanned_at(body)
    listing = body.string("listing", nullable=True) or ""
    files_scanned = _nonnegative(body, "files_scanned", required=True)
    counts = {name: _nonnegative(body, name) for name in ("skipped_binary", "skipped_large")}
    duration_ms = _nonnegative(body, "duration_ms")
    references = _references(body)
    body.check()
    upload = services.clean_scan_upload(
        app,
        references=references,
        files_scanned=files_scanned,
        commit=commit,
        scanned_at=scanned_at,
        duration_ms=duration_ms,
        listing=listing,
        skipped_binary=counts["skipped_binary"],
        skipped_large=counts["skipped_large"],
    )
    token = getattr(request, "api_token", None)
    who = request.user.get_username()
    name = f"{who} (API token {token.name})" if token is not None else f"{who} (API)"
    scan = services.code_scan_store(
        actor=request.user,
        application=app,
        upload=upload,
        source=ScanSource.API,
        uploaded_by_name=name,
    )
    response = json_response({"application": app.key, "scan": scan_data(scan)}, status=201)
    response["Location"] = reverse("api_code_references", args=[app.key])
    return response


# --- short-term flags ------------------------------------------------------------------------


def row_data(row: selectors.Row) -> dict[str, Any]:
    flag = row.flag
    return {
        "key": flag.key,
        "name": flag.name,
        "owner": flag.owner.get_username() if flag.owner else None,
        "tags": sorted(t.name for t in flag.tags.all()),
        "created_at": flag.created_at,
        "age_days": row.age_days,
        "remove_by": flag.remove_by,
        "status": row.status,
        "status_label": row.status_label,
        "reason": row.reasons[row.status],
        "also": {code: text for code, text in row.reasons.items() if code != row.status},
        "environments": {
            e.environment.key: {
                "serves": e.state.label if e.state else None,
                "since": e.state.since if e.state else None,
                "rolling_out": e.rollout is not None,
            }
            for e in row.envs
        },
        "unchanged_since": row.unchanged_since,
        "last_evaluated": row.last_evaluated,
        "evaluation": row.evaluation,
        "code_references": row.references,
    }


def _page(request: HttpRequest, items: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    fields: dict[str, list[dict[str, str]]] = {}
    number, size = flag_api._page_params(request.GET, fields)
    flag_api._check_query(fields)
    paginator = Paginator(items, size)
    try:
        page = paginator.page(number)
    except EmptyPage:
        raise not_found(f"There is no page {number} (there are {paginator.num_pages}).") from None
    return list(page.object_list), flag_api._page_links(request, page)


def short_term_list(request: HttpRequest, app_key: str) -> HttpResponse:
    app = flag_api._app(app_key)
    filters = selectors.Filters.from_query(request.GET)
    status = request.GET.get("status", "")
    if status and status not in selectors.STATUSES:
        raise ApiError(
            400,
            "invalid",
            f"status: one of {', '.join(selectors.STATUSES)}.",
            fields={"status": [{"code": "invalid_choice", "message": "Unknown status."}]},
        )
    lifecycle = selectors.short_term_flags(app)
    rows, counts = selectors.filtered(lifecycle, filters)
    page, meta = _page(request, rows)
    return json_response(
        {
            "application": app.key,
            "ready_days": lifecycle.days,
            "rules": selectors.status_rules(lifecycle.days),
            "counts": counts,
            "scan": scan_data(lifecycle.scan),
            **meta,
            "results": [row_data(r) for r in page],
        }
    )


def _cleanup(request: HttpRequest, app_key: str, *, restore: bool) -> HttpResponse:
    app = flag_api._app(app_key)
    permissions.require_edit_flags(request.user)
    body = payload(request, allowed=("flags",))
    keys = body.string_list("flags", required=True, default=[])
    body.check()
    found, errors = check_selection(app, keys, archived=restore)
    if errors:
        fields = {
            "flags": [
                {"code": e.code or "invalid", "message": m} for e in errors for m in e.messages
            ]
        }
        message = "; ".join(f["message"] for f in fields["flags"])
        raise ApiError(400, "invalid", f"flags: {message}", fields=fields)
    action = services.flags_restore if restore else services.flags_archive
    result = action(actor=request.user, application=app, flags=found)
    return json_response(
        {
            "application": app.key,
            "action": "restore" if restore else "archive",
            "flags": [f.key for f in result.flags],
            "deployments": [flag_api.deployment_summary(d) for d in result.deployments],
        },
        status=202 if result.deployments else 200,
    )


def short_term_archive(request: HttpRequest, app_key: str) -> HttpResponse:
    return _cleanup(request, app_key, restore=False)


def short_term_restore(request: HttpRequest, app_key: str) -> HttpResponse:
    return _cleanup(request, app_key, restore=True)


# --- the digest ------------------------------------------------------------------------------


def digest_get(request: HttpRequest) -> HttpResponse:
    """An owner's digest (yours, or ``?owner=<username>``: any role reads everything), a page
    at a time (``page``, ``page_size`` as every list; ``count`` is the total)."""
    name = request.GET.get("owner", "")
    owner: Any = request.user
    if name:
        owner = User.objects.filter(username=name[:150]).first()
        if owner is None:
            raise not_found(f"No user named “{name[:150]}”.")
    items = digest.digest_for(owner)
    page, meta = _page(request, items)
    return json_response(
        {
            "owner": owner.get_username(),
            "ready_days": selectors.ready_days(),
            **meta,
            "flags": [item.data() for item in page],
        }
    )
