"""Request id, change context and security headers."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import resolve_url
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect

from flagdash.core import context

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'; "
    "object-src 'none'"
)


def _canonical_ip(value: str | None) -> str | None:
    """The address in the one form the database stores (and the audit hash covers), or None."""
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The caller's address; X-Forwarded-For is believed only for TRUSTED_PROXY_COUNT hops.

    Anything that is not a plain IP address (a port, "unknown", garbage) is ignored.
    """
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [p.strip() for p in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [p for p in forwarded if p]
        if len(forwarded) >= hops and (address := _canonical_ip(forwarded[-hops])):
            return address
    return _canonical_ip(request.META.get("REMOTE_ADDR"))


class RequestContextMiddleware:
    """Give every request an id (X-Request-ID) and bind the audit context for its duration."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()
        ):
            # PostgreSQL cannot compare with a NUL character: refuse it here, once.
            message = "The address contains a NUL character."
            if request.path.startswith("/api/"):
                return JsonResponse({"error": {"code": "invalid", "message": message}}, status=400)
            if request.path.startswith("/ofrep/"):  # OFREP's error shape
                return JsonResponse({"errorCode": "GENERAL", "errorDetails": message}, status=400)
            return HttpResponseBadRequest(message)
        request_id = context.clean_request_id(request.headers.get("X-Request-ID"))
        source = "api" if request.path.startswith(("/api/", "/ofrep/")) else "web"
        request.request_id = request_id  # type: ignore[attr-defined]
        with context.bind(source=source, request_id=request_id, client_ip=client_ip(request)):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class SecurityHeadersMiddleware:
    """Content-Security-Policy (no inline script or style anywhere) and Permissions-Policy."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"
        )
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response


class HtmxResponsesMiddleware:
    """Responses that depend on HX-Request say so, and expired sessions leave htmx cleanly.

    - ``Vary: HX-Request``: a page and its fragment share a URL; caches must keep them apart.
    - An htmx request whose session expired gets a full-page redirect to the login page;
      without it htmx follows the 302 itself and swaps the login page into a table cell.
      Sits just before LoginRequiredMiddleware, so it sees that middleware's redirect.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        patch_vary_headers(response, ("HX-Request",))
        if request.headers.get("HX-Request") == "true" and response.status_code == 302:
            login_path = urlsplit(resolve_url(settings.LOGIN_URL)).path
            if urlsplit(response["Location"]).path == login_path:
                return HttpResponseClientRedirect(response["Location"])
        return response
