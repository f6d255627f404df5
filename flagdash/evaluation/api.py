"""OFREP endpoints and the flagd export, authenticated with an environment's API key.

- ``POST /ofrep/v1/evaluate/flags/{key}``: one flag (200 success, 400/404 failure).
- ``POST /ofrep/v1/evaluate/flags``: every flag, with an ETag; an ``If-None-Match`` naming it
  (weak comparison, in a list or alone; ``*`` never matches) gets 304 without a body.
- ``GET /ofrep/v1/flagd/flags.json``: the environment's stable version as a flagd flag
  definition file.
- Anything else under ``/ofrep/``: a JSON 404 (a flag key with a slash: ``FLAG_NOT_FOUND``).

Token auth (``Authorization: Bearer <key>`` or ``X-API-Key``), so no session, no CSRF and no
login redirect. Every answer is JSON in the OFREP error shape, never an HTML page: bad input
is a 400 (413 over 64 KiB, 415 for a body that is not declared JSON), and a bug is logged with
its traceback and answered ``500 {"errorCode": "GENERAL", "errorDetails": ...}`` without any
detail. Nothing here touches the database once the snapshot is loaded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse
from django.utils.http import parse_etags
from django.views.decorators.csrf import csrf_exempt

from flagdash.evaluation import flagd
from flagdash.evaluation.counters import tally
from flagdash.evaluation.evaluate import Failure, Result, Success, evaluate, evaluate_all
from flagdash.evaluation.models import FetchKind
from flagdash.evaluation.services import KEY_PATTERN, key_hash
from flagdash.evaluation.snapshot import KeyEntry, ServedEnvironment, Snapshot, current

MAX_BODY_BYTES = 64 * 1024
MAX_TARGETING_KEY = 1024
View = Callable[..., HttpResponse]
logger = logging.getLogger(__name__)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    response = HttpResponse(body, status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _failure(key: str | None, code: str, details: str, status: int) -> HttpResponse:
    body: dict[str, Any] = {"errorCode": code, "errorDetails": details}
    if key is not None:
        body = {"key": key, **body}
    return _json(body, status)


def _presented_key(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key", "").strip()


def authenticate(request: HttpRequest, snapshot: Snapshot) -> KeyEntry | None:
    """The active key the request presents, or None.

    Keys are found by their SHA-256 (as API tokens are), so the secret itself is never compared
    character by character; the stored hash is then compared in constant time.
    """
    presented = _presented_key(request)
    if not presented or not KEY_PATTERN.match(presented):
        return None
    digest = key_hash(presented)
    entry = snapshot.keys.get(digest)
    if entry is None or not hmac.compare_digest(entry.key_hash, digest):
        return None
    return entry


def _unauthorized(key: str | None) -> HttpResponse:
    response = _failure(
        key,
        "GENERAL",
        "Missing or invalid API key: send “Authorization: Bearer <environment API key>”.",
        401,
    )
    response["WWW-Authenticate"] = 'Bearer realm="flagdash"'
    return response


def _internal_error(request: HttpRequest, key: str | None) -> HttpResponse:
    """The answer to a bug: logged with its traceback, and nothing of it in the body."""
    logger.exception("OFREP error on %s %s", request.method, request.path)
    got_request_exception.send(sender=None, request=request)
    request_id = getattr(request, "request_id", "")
    return _failure(
        key,
        "GENERAL",
        f"Something went wrong on our side (request id {request_id}).",
        500,
    )


def _api(methods: tuple[str, ...]) -> Callable[[View], View]:
    """Token-authenticated JSON endpoint: no login redirect, no CSRF, JSON 405, JSON 500."""

    def decorate(view: View) -> View:
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = _failure(
                    kwargs.get("key"), "GENERAL", f"Use {' or '.join(methods)}.", 405
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except Exception:  # the one guard: a bug answers OFREP's 500, not Django's HTML
                return _internal_error(request, kwargs.get("key"))

        wrapped.__name__ = view.__name__
        wrapped.__doc__ = view.__doc__
        return csrf_exempt(login_not_required(wrapped))

    return decorate


class BadRequest(Exception):
    def __init__(self, code: str, details: str, status: int = 400) -> None:
        super().__init__(details)
        self.code, self.details, self.status = code, details, status


def _not_a_json_number(name: str) -> Any:
    """``json.loads`` would read NaN and Infinity, which JSON does not have."""
    raise ValueError(f"{name} is not a JSON number")


# A \uD800–\uDFFF escape: JSON's grammar allows it alone, but alone it is not a character.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(value: Any) -> str | None:
    """The first text (key or value) in a parsed body that is not valid Unicode, if any."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
    return None


def _is_chunked(request: HttpRequest) -> bool:
    encodings = request.META.get("HTTP_TRANSFER_ENCODING", "")
    return "chunked" in [e.strip().lower() for e in encodings.split(",")]


def _read_body(request: HttpRequest) -> bytes:
    """At most MAX_BODY_BYTES + 1 bytes of the body, with or without a Content-Length.

    Django's WSGI request reads nothing when there is no Content-Length, so a chunked body
    (``Transfer-Encoding: chunked``, which gunicorn decodes) is read from ``wsgi.input``
    itself, never more than one byte over the limit.
    """
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(
            "INVALID_CONTEXT",
            f"The request body is {int(declared)} bytes; the limit is {MAX_BODY_BYTES}.",
            413,
        )
    stream = request.META.get("wsgi.input")
    if declared or not _is_chunked(request) or stream is None:
        return request.read(MAX_BODY_BYTES + 1)
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        chunk = stream.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _is_json_type(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _read_context(request: HttpRequest) -> tuple[dict[str, Any], str | None]:
    """The evaluation context of the body, and its targeting key (raises BadRequest)."""
    raw = _read_body(request)
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(
            "INVALID_CONTEXT", f"The request body is over the limit of {MAX_BODY_BYTES} bytes.", 413
        )
    if not raw.strip():
        return {}, None
    content_type = (request.content_type or "").strip().lower()
    if content_type and not _is_json_type(content_type):
        raise BadRequest(
            "PARSE_ERROR",
            f"Send the body as JSON with “Content-Type: application/json” (got “{content_type}”).",
            415,
        )
    try:
        # Strictly UTF-8, as JSON between systems is (json.loads would let encoded surrogates
        # through, and guess UTF-16).
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest("PARSE_ERROR", f"The body is not UTF-8 text: {exc}.") from exc
    try:
        body = json.loads(text, parse_constant=_not_a_json_number)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("PARSE_ERROR", f"The body is not valid JSON: {exc}.") from exc
    if _SURROGATE_ESCAPE.search(text) and (lone := _lone_surrogate(body)) is not None:
        raise BadRequest(
            "PARSE_ERROR",
            f"The body's text {ascii(lone)[:80]} holds half of a UTF-16 surrogate pair, which "
            "is not a Unicode character.",
        )
    if not isinstance(body, dict):
        raise BadRequest(
            "PARSE_ERROR", 'The body must be a JSON object such as {"context": {...}}.'
        )
    context = body.get("context", {})
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise BadRequest(
            "INVALID_CONTEXT", f"“context” must be an object, not {type(context).__name__}."
        )
    targeting_key = context.get("targetingKey")
    if targeting_key is not None and not isinstance(targeting_key, str):
        raise BadRequest("INVALID_CONTEXT", "“targetingKey” must be a string.")
    if targeting_key is not None and len(targeting_key) > MAX_TARGETING_KEY:
        raise BadRequest(
            "INVALID_CONTEXT", f"“targetingKey” is longer than {MAX_TARGETING_KEY} characters."
        )
    return context, targeting_key or None


def _environment(snapshot: Snapshot, entry: KeyEntry) -> ServedEnvironment | None:
    return snapshot.environments.get(entry.environment_id)


def _count(entry: KeyEntry, results: list[Result], now: float) -> None:
    tally.add(
        entry.environment_id,
        entry.key_id,
        [(r.key, r.variant) for r in results if isinstance(r, Success)],
        now,
    )


@_api(("POST",))
def evaluate_flag(request: HttpRequest, key: str) -> HttpResponse:
    """OFREP single-flag evaluation."""
    snapshot = current()
    entry = authenticate(request, snapshot)
    if entry is None:
        return _unauthorized(key)
    try:
        context, targeting_key = _read_context(request)
    except BadRequest as exc:
        return _failure(key, exc.code, exc.details, exc.status)
    environment = _environment(snapshot, entry)
    now = time.time()
    if environment is None:
        result: Result = Failure(key, "FLAG_NOT_FOUND", f"No flag “{key[:64]}” is deployed.", 404)
    else:
        result = evaluate(environment, key, context, targeting_key, now)
    _count(entry, [result], now)
    if isinstance(result, Failure):
        return _json(result.as_json(), result.status)
    return _json(result.as_json())


def _etag_matches(request: HttpRequest, etag: str) -> bool:
    """Does ``If-None-Match`` name this ETag? Weak comparison (RFC 9110 §13.1.2, as the
    header asks): ``W/"x"`` matches ``"x"``, and a list matches when one of its tags does.

    ``*`` does not: it means "any copy you have", and a client that sends it holds no copy of
    this answer for this context to reuse, so it gets the body (a 304 would leave it with none).
    """
    header = request.headers.get("If-None-Match", "")
    if not header:
        return False
    return any(tag != "*" and tag.removeprefix("W/") == etag for tag in parse_etags(header))


@_api(("POST",))
def evaluate_flags(request: HttpRequest) -> HttpResponse:
    """OFREP bulk evaluation, with an ETag over the answer."""
    snapshot = current()
    entry = authenticate(request, snapshot)
    if entry is None:
        return _unauthorized(None)
    try:
        context, targeting_key = _read_context(request)
    except BadRequest as exc:
        return _failure(None, exc.code, exc.details, exc.status)
    environment = _environment(snapshot, entry)
    now = time.time()
    results = evaluate_all(environment, context, targeting_key, now) if environment else []
    _count(entry, results, now)
    payload = {"flags": [r.as_json() for r in results], "metadata": {}}
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    etag = bulk_etag(environment, body)
    if _etag_matches(request, etag):
        response = HttpResponse(status=304, content_type="application/json")
    else:
        response = HttpResponse(body, content_type="application/json")
    response["ETag"] = etag
    response["Cache-Control"] = "no-store"
    return response


def bulk_etag(environment: ServedEnvironment | None, body: str) -> str:
    """The ETag of a bulk answer: of the answer, and of what the environment serves.

    The versions served and the rollout share are part of it, so the ETag changes with every
    deployment step even for a context whose answer stays the same (and, of course, when the
    answer changes); a reload of the same state or a change elsewhere leaves it as it was.
    """
    served = (
        "none"
        if environment is None
        else ":".join(
            str(part)
            for part in (
                environment.environment_id,
                environment.stable.version_id if environment.stable else "-",
                environment.candidate.version_id if environment.candidate else "-",
                repr(float(environment.candidate_percentage)),
            )
        )
    )
    digest = hashlib.sha256(f"{served}\n{body}".encode()).hexdigest()
    return f'"{digest[:32]}"'


@csrf_exempt
@login_not_required
def unknown_endpoint(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other address under /ofrep/, with any method: a JSON 404, never an HTML page."""
    return _failure(
        None,
        "GENERAL",
        "No such OFREP endpoint: use POST /ofrep/v1/evaluate/flags/{key}, "
        "POST /ofrep/v1/evaluate/flags or GET /ofrep/v1/flagd/flags.json.",
        404,
    )


@_api(("GET",))
def flagd_export(request: HttpRequest) -> HttpResponse:
    """The environment's stable version as a flagd flag definition."""
    snapshot = current()
    entry = authenticate(request, snapshot)
    if entry is None:
        return _unauthorized(None)
    environment = _environment(snapshot, entry)
    # A download of the definitions is no evaluation: recorded as the environment's last fetch.
    tally.add_fetch(entry.environment_id, entry.key_id, FetchKind.FLAGD, time.time())
    if environment is not None and environment.stable is not None and environment.stable.broken:
        # flagd keeps the definitions it has when a sync fails; a file without these flags
        # would make it drop them.
        return _failure(None, "PARSE_ERROR", "The served version could not be compiled.", 500)
    document = flagd.export(environment)
    response = _json(document)
    response["Content-Disposition"] = 'inline; filename="flags.json"'
    return response
