"""The JSON API's plumbing: authentication, CSRF for sessions, JSON bodies, errors, dispatch.

Every endpoint is a plain function ``handler(request, **url_kwargs) -> HttpResponse`` that
``resource(GET=..., POST=...)`` turns into a Django view which

1. authenticates: ``Authorization: Bearer <token>`` (the token's user; a bad token is a 401,
   never a fallback to the session) or the session cookie, in which case unsafe methods must
   pass Django's CSRF check (as DRF's SessionAuthentication does; token requests are exempt);
2. refuses methods the endpoint does not have (405 with ``Allow``);
3. requires a role (an outsider gets 403 even for reads);
4. turns every refusal into one error shape::

       {"error": {"code": "...", "message": "...", "fields": {"<field>": [{"code", "message"}]}}}

   ApiError -> its status; ValidationError (services) -> 422 validation_failed;
   PermissionDenied -> 403 forbidden; Http404 -> 404 not_found; a body too big -> 413.
   Anything else is a bug: logged, reported through ``got_request_exception``, answered 500 JSON.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.signals import got_request_exception
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from flagdash.accounts import permissions, tokens
from flagdash.core.parsing import has_lone_surrogate

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
INT64 = 2**63
Handler = Callable[..., HttpResponse]


# --- errors ----------------------------------------------------------------------------------


FieldErrors = dict[str, list[dict[str, str]]]


class ApiError(Exception):
    """A refusal with a status, a machine-readable code and a message a person can act on."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: FieldErrors | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def response(self) -> JsonResponse:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        body.update(self.extra)
        response = json_response({"error": body}, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def field_errors(exc: ValidationError) -> FieldErrors:
    """A service's ValidationError as ``{field: [{code, message}]}``."""
    by_field = (
        exc.error_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.error_list}
    )
    out: FieldErrors = {}
    for field, errors in by_field.items():
        name = "non_field_errors" if field == "__all__" else field
        for error in errors:
            for message in error.messages:
                out.setdefault(name, []).append(
                    {"code": error.code or "invalid", "message": message}
                )
    return out


def _summary(fields: FieldErrors) -> str:
    parts = [f"{name}: {errs[0]['message']}" for name, errs in fields.items() if errs]
    if len(parts) > 3:
        parts = [*parts[:3], f"and {len(parts) - 3} more"]
    return "; ".join(parts)


def validation_failed(exc: ValidationError) -> ApiError:
    fields = field_errors(exc)
    return ApiError(422, "validation_failed", _summary(fields) or "Invalid request.", fields=fields)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def unauthenticated(message: str, *, invalid_token: bool = False) -> ApiError:
    challenge = 'Bearer realm="flagdash"'
    if invalid_token:
        challenge += ', error="invalid_token"'
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": challenge})


def json_response(data: Any, *, status: int = 200) -> JsonResponse:
    return JsonResponse(
        data,
        status=status,
        safe=False,
        encoder=DjangoJSONEncoder,
        json_dumps_params={"ensure_ascii": False},
    )


# --- authentication --------------------------------------------------------------------------


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF middleware, asked for its verdict instead of a 403 page."""

    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


def _enforce_csrf(request: HttpRequest) -> None:
    check = _CsrfCheck(lambda req: HttpResponse())
    check.process_request(request)
    reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    if reason:
        raise ApiError(
            403,
            "forbidden",
            f"CSRF check failed ({reason}). Browser sessions must send the X-CSRFToken header; "
            "scripts should use an API token.",
        )


def authenticate(request: HttpRequest) -> Any:
    """The caller: the bearer token's user, or the session's user (CSRF-checked when unsafe)."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise unauthenticated("Send the token as “Authorization: Bearer <token>”.")
        token = tokens.api_token_authenticate(credentials.strip())
        if token is None:
            raise unauthenticated(
                "The API token is invalid, expired or revoked.", invalid_token=True
            )
        request.user = token.user
        request.api_token = token  # type: ignore[attr-defined]
        return token.user
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise unauthenticated(
            "Authentication required: send “Authorization: Bearer <token>” "
            "(create one under Settings → API tokens)."
        )
    request.api_token = None  # type: ignore[attr-defined]
    if request.method not in SAFE_METHODS:
        _enforce_csrf(request)
    return user


# --- JSON bodies -----------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large")
    return value


def _is_json_type(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n // 1024} KiB"


def json_body(request: HttpRequest, *, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body).

    413 over ``max_bytes`` (MAX_BODY_BYTES unless the endpoint allows more), 415 for a body
    that is not declared JSON, 400 ``parse_error`` for invalid JSON (NaN and infinities
    included), 400 ``invalid`` for anything but an object.
    """
    too_big = ApiError(413, "payload_too_large", f"The body is larger than {_size(max_bytes)}.")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > max_bytes:
        raise too_big
    try:
        if max_bytes > MAX_BODY_BYTES and max_bytes > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            # An endpoint that takes more than Django's in-memory limit (request.body would
            # refuse): read the stream itself, never more than max_bytes + 1.
            raw = request.read(max_bytes + 1)
        else:
            raw = request.body
    except RequestDataTooBig as exc:
        raise too_big from exc
    if len(raw) > max_bytes:
        raise too_big
    if not raw.strip():
        return {}
    content_type = (request.content_type or "").lower()
    if not _is_json_type(content_type):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Send JSON with “Content-Type: application/json” (got “{content_type or 'none'}”).",
        )
    try:
        data = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "parse_error", f"The body is not valid JSON: {exc}.") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "invalid", "The body must be a JSON object.")
    try:
        text = json.dumps(data, ensure_ascii=False)
    except RecursionError as exc:
        raise ApiError(400, "parse_error", "The body nests too deeply.") from exc
    if has_lone_surrogate(text):
        raise ApiError(400, "parse_error", "The body contains text that is not valid Unicode.")
    return data


class Payload:
    """Typed access to a JSON object's fields; wrong types are collected, then raised as 400.

    Only the JSON shape is checked here (a string, a list of strings, a whole number …); what
    the values mean is for the services to judge (422).
    """

    def __init__(
        self, data: Mapping[str, Any], *, allowed: Iterable[str], ignored: Iterable[str] = ()
    ) -> None:
        self.data = data
        self.errors: FieldErrors = {}
        known = set(allowed) | set(ignored)
        for key in data:
            if key not in known:
                self.error(key, "unknown_field", f"Unknown or read-only field “{key}”.")

    def error(self, field: str, code: str, message: str) -> None:
        self.errors.setdefault(field, []).append({"code": code, "message": message})

    def has(self, name: str) -> bool:
        return name in self.data

    def _typed(
        self,
        name: str,
        check: Callable[[Any], bool],
        what: str,
        *,
        required: bool,
        nullable: bool,
        default: Any,
    ) -> Any:
        if name not in self.data:
            if required:
                self.error(name, "required", "This field is required.")
            return default
        value = self.data[name]
        if value is None:
            if not nullable:
                self.error(name, "null", f"May not be null: must be {what}.")
            return None
        if not check(value):
            self.error(name, "invalid", f"Must be {what} (got {_json_type(value)}).")
            return None
        return value

    def string(
        self, name: str, *, required: bool = False, nullable: bool = False, default: Any = None
    ) -> Any:
        return self._typed(
            name, lambda v: isinstance(v, str), "a string",
            required=required, nullable=nullable, default=default,
        )  # fmt: skip

    def boolean(
        self, name: str, *, required: bool = False, nullable: bool = False, default: Any = None
    ) -> Any:
        return self._typed(
            name, lambda v: isinstance(v, bool), "true or false",
            required=required, nullable=nullable, default=default,
        )  # fmt: skip

    def integer(
        self, name: str, *, required: bool = False, nullable: bool = False, default: Any = None
    ) -> Any:
        return self._typed(
            name,
            lambda v: isinstance(v, int) and not isinstance(v, bool) and -INT64 <= v < INT64,
            "a whole number (64-bit)",
            required=required, nullable=nullable, default=default,
        )  # fmt: skip

    def obj(
        self, name: str, *, required: bool = False, nullable: bool = False, default: Any = None
    ) -> Any:
        return self._typed(
            name, lambda v: isinstance(v, dict), "an object",
            required=required, nullable=nullable, default=default,
        )  # fmt: skip

    def string_list(
        self, name: str, *, required: bool = False, nullable: bool = False, default: Any = None
    ) -> Any:
        return self._typed(
            name,
            lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
            "a list of strings",
            required=required, nullable=nullable, default=default,
        )  # fmt: skip

    def object_list(
        self, name: str, *, required: bool = False, nullable: bool = False, default: Any = None
    ) -> Any:
        return self._typed(
            name,
            lambda v: isinstance(v, list) and all(isinstance(i, dict) for i in v),
            "a list of objects",
            required=required, nullable=nullable, default=default,
        )  # fmt: skip

    def date(
        self, name: str, *, required: bool = False, nullable: bool = False, default: Any = None
    ) -> Any:
        value = self.string(name, required=required, nullable=nullable, default=default)
        if not isinstance(value, str):
            return value
        try:
            if len(value) != 10:
                raise ValueError(value)
            return date.fromisoformat(value)
        except ValueError:
            self.error(name, "invalid_date", f"Must be a date as YYYY-MM-DD (got “{value[:20]}”).")
            return None

    def check(self) -> None:
        """Raise 400 ``invalid`` if any field had the wrong type."""
        if self.errors:
            raise ApiError(400, "invalid", _summary(self.errors), fields=self.errors)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def payload(
    request: HttpRequest,
    *,
    allowed: Iterable[str],
    ignored: Iterable[str] = (),
    max_bytes: int = MAX_BODY_BYTES,
) -> Payload:
    return Payload(json_body(request, max_bytes=max_bytes), allowed=allowed, ignored=ignored)


# --- dispatch --------------------------------------------------------------------------------


def _handle(request: HttpRequest, methods: Mapping[str, Handler], kwargs: dict[str, Any]) -> Any:
    authenticate(request)
    handler = methods.get(request.method or "")
    if handler is None:
        allow = ", ".join(methods)
        raise ApiError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here (allowed: {allow}).",
            headers={"Allow": allow},
        )
    permissions.require_view(request.user)
    return handler(request, **kwargs)


def resource(**handlers: Handler) -> Callable[..., HttpResponse]:
    """One URL's view: ``resource(GET=read, PUT=write)``."""
    methods = {method.upper(): handler for method, handler in handlers.items()}

    @csrf_exempt  # token requests need no CSRF; session requests are checked in authenticate()
    @login_not_required  # answers 401 JSON itself instead of redirecting to the login page
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        try:
            response = _handle(request, methods, kwargs)
        except ApiError as exc:
            response = exc.response()
        except ValidationError as exc:
            response = validation_failed(exc).response()
        except PermissionDenied as exc:
            response = ApiError(403, "forbidden", str(exc) or "You may not do this.").response()
        except Http404 as exc:
            response = not_found(str(exc) or "Not found.").response()
        except RequestDataTooBig:
            response = ApiError(
                413, "payload_too_large", f"The body is larger than {MAX_BODY_BYTES // 1024} KiB."
            ).response()
        except Exception:
            logger.exception("API error on %s %s", request.method, request.path)
            got_request_exception.send(sender=None, request=request)
            request_id = getattr(request, "request_id", "")
            response = ApiError(
                500,
                "server_error",
                f"Something went wrong on our side (request id {request_id}).",
            ).response()
        response["Cache-Control"] = "no-store"
        return response

    view.allowed_methods = list(methods)  # type: ignore[attr-defined]
    return view
