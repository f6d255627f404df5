"""The audit log page and its exports.

The page is a plain GET form over a keyset-paginated table; htmx makes filtering swap only the
results and "Load older events" append rows, both via named partials of the same template.
"""

from __future__ import annotations

from django.http import (
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.views.decorators.http import require_GET

from flagdash.accounts.permissions import require_view
from flagdash.audit import export, selectors
from flagdash.audit.forms import AuditFilterForm
from flagdash.core.htmx import is_partial

TEMPLATE = "audit/audit_log.html"
RESULTS_TARGET = "audit-results"


def _partial(request: HttpRequest) -> str | None:
    """Which fragment an htmx request wants: the results (filter form) or the rows (load older).

    A boosted navigation or a history restore wants the whole page.
    """
    if not is_partial(request):
        return None
    htmx = getattr(request, "htmx", None)
    return "results" if htmx is not None and htmx.target == RESULTS_TARGET else "rows"


@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    require_view(request.user)
    form = AuditFilterForm(request.GET, choices=selectors.filter_choices())
    page = None
    status = 200
    if form.is_valid():
        page = selectors.audit_page(form.filters(), before=form.cleaned_data.get("before"))
    else:
        status = 400
    filter_query = form.filter_query()
    context = {
        "form": form,
        "page": page,
        "filter_query": filter_query,
        "query_prefix": f"{filter_query}&" if filter_query else "",
        "before": form.cleaned_data.get("before") if page else None,
    }
    partial = _partial(request)
    if partial == "rows":
        context["oob_pager"] = True
    template = f"{TEMPLATE}#{partial}" if partial else TEMPLATE
    return render(request, template, context, status=status)


@require_GET
def audit_export(request: HttpRequest, fmt: str) -> HttpResponse | StreamingHttpResponse:
    require_view(request.user)
    form = AuditFilterForm(request.GET, choices=selectors.filter_choices())
    if not form.is_valid():
        errors = form.error_dict()
        if fmt == "json":
            return JsonResponse(
                {"error": "invalid_filters", "message": "Invalid filters.", "fields": errors},
                status=400,
            )
        lines = [f"{name}: {' '.join(messages)}" for name, messages in errors.items()]
        return HttpResponse(
            "Invalid filters.\n" + "\n".join(lines) + "\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    events = selectors.audit_records(form.filters())
    if fmt == "json":
        response = StreamingHttpResponse(
            export.json_stream(events), content_type="application/json; charset=utf-8"
        )
    else:
        response = StreamingHttpResponse(
            export.csv_stream(events), content_type="text/csv; charset=utf-8"
        )
    response["Content-Disposition"] = f'attachment; filename="{export.export_filename(fmt)}"'
    response["Cache-Control"] = "no-store"
    return response
