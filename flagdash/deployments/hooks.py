"""The alarm webhook: ``POST /hooks/alarms/<application>/<environment>/``.

It authenticates by signature (see ``flagdash.deployments.alarms`` and docs/alarms.md), so it
needs no session and no CSRF token. Every refusal uses the JSON API's error shape
``{"error": {"code", "message"}}`` and changes nothing:

- 405 ``method_not_allowed`` — anything but POST;
- 413 ``payload_too_large`` — a body over 256 KiB;
- 415 ``unsupported_media_type`` — a body not declared ``application/json``;
- 401 ``unsigned`` / ``bad_timestamp`` / ``stale_timestamp`` / ``bad_signature`` — an unknown
  application or environment, or one without a secret, is a ``bad_signature`` like any other;
- 400 ``parse_error`` (not JSON) / ``bad_payload`` (neither payload format);
- 409 ``replayed`` — this exact signed request was accepted before.

An accepted alarm answers 202 with ``{"outcome", "deployment", "alarm", ...}``.
"""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from flagdash.deployments import alarms
from flagdash.flags.api_base import MAX_BODY_BYTES, ApiError, json_body, json_response
from flagdash.flags.models import Environment

logger = logging.getLogger(__name__)

TOO_BIG = f"The body is larger than {MAX_BODY_BYTES // 1024} KiB."


def _environment(app_key: str, env_key: str) -> Environment | None:
    return (
        Environment.objects.select_related("application")
        .filter(application__key=app_key, key=env_key)
        .first()
    )


def _body(request: HttpRequest) -> bytes:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", TOO_BIG)
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", TOO_BIG)
    return body


def _unauthenticated(code: str, message: str) -> ApiError:
    return ApiError(
        401, code, message, headers={"WWW-Authenticate": 'HMAC-SHA256 realm="flagdash alarms"'}
    )


def _receive(request: HttpRequest, app_key: str, env_key: str) -> HttpResponse:
    if request.method != "POST":
        raise ApiError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here: POST a signed alarm.",
            headers={"Allow": "POST"},
        )
    body = _body(request)
    content_type = (request.content_type or "").lower()
    if content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Send JSON with “Content-Type: application/json” (got “{content_type or 'none'}”).",
        )
    environment = _environment(app_key, env_key)
    try:
        signature = alarms.alarm_signature_verify(
            environment=environment,
            timestamp=request.headers.get("X-Flagdash-Timestamp"),
            signature=request.headers.get("X-Flagdash-Signature"),
            body=body,
        )
    except alarms.AlarmAuthError as exc:
        raise _unauthenticated(exc.code, exc.message) from exc
    if environment is None:  # cannot happen: verification fails without a secret
        raise _unauthenticated("bad_signature", alarms.BAD_SIGNATURE)
    try:
        data = json_body(request)
    except ApiError as exc:
        if exc.code == "invalid":  # JSON, but not an object
            raise ApiError(400, "bad_payload", exc.message) from exc
        raise
    try:
        notice = alarms.alarm_payload_parse(data, environment=environment)
    except alarms.AlarmPayloadError as exc:
        raise ApiError(400, "bad_payload", str(exc)) from exc
    try:
        outcome = alarms.alarm_webhook_deliver(
            environment=environment, signature=signature, notice=notice
        )
    except alarms.AlarmBusy as exc:
        raise ApiError(
            503,
            "busy",
            "Another alarm for this environment is still being handled: send this one again.",
            headers={"Retry-After": "5"},
        ) from exc
    except alarms.AlarmReplayed as exc:
        raise ApiError(
            409,
            "replayed",
            "This signed request was accepted before: sign each delivery afresh.",
        ) from exc
    return json_response(outcome.as_json(), status=202)


@csrf_exempt  # authenticated by the body's signature, never by a cookie
@login_not_required  # answers 401 JSON itself
def alarm_webhook(request: HttpRequest, app_key: str, env_key: str) -> HttpResponse:
    try:
        response = _receive(request, app_key, env_key)
    except ApiError as exc:
        response = exc.response()
    except RequestDataTooBig:
        response = ApiError(413, "payload_too_large", TOO_BIG).response()
    except Exception:
        logger.exception("alarm webhook error on %s", request.path)
        got_request_exception.send(sender=None, request=request)
        request_id = getattr(request, "request_id", "")
        response = ApiError(
            500,
            "server_error",
            f"Something went wrong on our side (request id {request_id}); send the alarm again.",
        ).response()
    response["Cache-Control"] = "no-store"
    return response
