"""Home, application switching, health check."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from flagdash.accounts.permissions import require_view
from flagdash.flags.models import Application

logger = logging.getLogger(__name__)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    require_view(request.user)
    key = request.session.get("app_key")
    app = Application.objects.filter(key=key).first() if key else None
    app = app or Application.objects.order_by("name", "id").first()
    if app is None:
        return render(request, "core/no_applications.html")
    return redirect("flag_list", app_key=app.key)


@require_GET
def switch_application(request: HttpRequest) -> HttpResponse:
    require_view(request.user)
    app = Application.objects.filter(key=request.GET.get("app", "")).first()
    if app is None:
        return redirect("home")
    return redirect("flag_list", app_key=app.key)


def _database_status() -> tuple[bool, float]:
    start = time.perf_counter()
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:  # any driver error means "down"; the reason goes to the log only
        logger.exception("health check: database unreachable")
        return False, 0.0
    return True, (time.perf_counter() - start) * 1000


def _broker_status() -> tuple[bool, str]:
    from flagdash.celery import app as celery_app

    transport = settings.CELERY_BROKER_URL.split("://", 1)[0]
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception:  # unreachable broker: reported, never raised
        logger.exception("health check: broker unreachable")
        return False, transport
    return True, transport


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: 200 when the database answers, 503 when it does not.

    The broker's state is reported but does not fail the check: the web can serve and record
    changes while the broker is down (the reconciler catches up), so a load balancer should
    keep sending traffic.
    """
    db_ok, db_ms = _database_status()
    broker_ok, transport = _broker_status()
    body = {
        "status": "ok" if db_ok and broker_ok else ("degraded" if db_ok else "error"),
        "database": {
            "status": "ok" if db_ok else "unreachable",
            "vendor": connection.vendor,
            "latency_ms": round(db_ms, 1),
        },
        "broker": {"status": "ok" if broker_ok else "unreachable", "transport": transport},
    }
    return JsonResponse(body, status=200 if db_ok else 503)
