from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from flagdash.accounts.permissions import require_view


@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    require_view(request.user)
    return render(request, "audit/audit_log.html")
