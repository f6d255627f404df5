"""A wire-level fake of Azure App Configuration's data plane, for azure-appconfiguration unchanged.

An HTTP server (``ThreadingHTTPServer`` on 127.0.0.1, a free port) that speaks the ``/kv`` and
``/locks`` calls the Python SDK makes, as Microsoft's REST reference (Azure/AppConfiguration
``docs/REST``) describes them:

- ``GET|HEAD|PUT|DELETE /kv/{key}?label=`` and ``GET /kv?key=&label=&after=`` with ``*``
  wildcards, comma lists (at most 5), ``\\`` escapes, ``%00`` for "no label", pages linked by
  ``@nextLink`` (and a ``Link`` header);
- ``PUT|DELETE /locks/{key}?label=`` (a locked key refuses writes with 409 ``key-locked``);
- exact ETag semantics: ``If-Match: "<etag>"|*`` (412 when it does not match or the key is
  missing), ``If-None-Match: *`` (412 on writes when the key exists, 304 on reads when it matches);
- the HMAC-SHA256 signature recomputed from the request as received (method, path and query as
  sent, the signed headers' values, the body's SHA-256), the access key's id and secret, and the
  date (at most 15 minutes off the fake's clock; the SDK's ``Nov, 21 2026 12:46:28.521660 GMT``
  is parsed leniently). Failures are 401 with ``WWW-Authenticate: HMAC-SHA256
  error="invalid_token" error_description="…", Bearer`` as the reference lists them. A read-only
  access key gets 403 on writes;
- ``Sync-Token`` on every answer, errors as ``application/problem+json`` (409 key-locked, 429
  too-many-requests with ``retry-after-ms``, 400 invalid-argument), 404/412/304 without a body.

Tests change settings "outside flagdash" (``put_outside``, ``delete_outside``, ``lock``), inject
faults (``fail_next``, ``delay_next``), move the clock (``clock_skew``), count calls (``calls``,
``count``) and read a history of every write (``writes``).

UNCERTAIN (not in Microsoft's reference, chosen here): locking a key keeps its ETag; 403 and
5xx bodies are small problem+json documents.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

FEATURE_FLAG_PREFIX = ".appconfig.featureflag/"
FEATURE_FLAG_CONTENT_TYPE = "application/vnd.microsoft.appconfig.ff+json;charset=utf-8"
KV_CONTENT_TYPE = "application/vnd.microsoft.appconfig.kv+json; charset=utf-8"
KVSET_CONTENT_TYPE = "application/vnd.microsoft.appconfig.kvset+json; charset=utf-8"
PROBLEM_CONTENT_TYPE = "application/problem+json; charset=utf-8"
MAX_DATE_SKEW = dt.timedelta(minutes=15)
ANY = object()  # "any label" for inspection helpers


@dataclass
class KeyValue:
    key: str
    label: str | None
    value: str | None
    content_type: str | None
    tags: dict[str, str]
    etag: str
    last_modified: dt.datetime
    locked: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "etag": self.etag,
            "key": self.key,
            "label": self.label,
            "content_type": self.content_type,
            "value": self.value,
            "tags": dict(self.tags),
            "locked": self.locked,
            "last_modified": self.last_modified.isoformat(),
        }


@dataclass
class Credential:
    id: str
    secret: str  # base64, as in the connection string
    read_only: bool = False


@dataclass
class Fault:
    method: str
    path_prefix: str
    status: int = 0  # 0: no error, only a delay
    times: int = 1
    retry_after: float | None = None
    delay: float = 0.0
    delay_after: bool = False  # act first, then wait before answering (the answer is "lost")


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # decoded
    query: dict[str, str]
    status: int
    at: float  # time.time()


@dataclass(frozen=True)
class Write:
    """One change the fake applied (by a client or by a test "outside flagdash")."""

    at: float  # time.time()
    method: str  # PUT | DELETE | LOCK | UNLOCK
    key: str
    label: str | None
    value: str | None
    outside: bool = False


@dataclass
class _State:
    items: dict[tuple[str, str | None], KeyValue] = field(default_factory=dict)
    sequence: int = 0


def new_secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def parse_lenient_date(text: str) -> dt.datetime | None:
    """x-ms-date as the Python SDK writes it (``Nov, 21 2026 12:46:28.521660 GMT``) or RFC 1123."""
    text = text.strip()
    m = re.fullmatch(
        r"(?P<mon>[A-Za-z]{3}),\s*(?P<day>\d{1,2})\s+(?P<year>\d{4})\s+"
        r"(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d{1,6}))?\s*GMT",
        text,
    )
    if m:
        try:
            months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun"]
            months += ["Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            month = months.index(m["mon"].title()) + 1
            return dt.datetime(
                int(m["year"]),
                month,
                int(m["day"]),
                int(m["h"]),
                int(m["m"]),
                int(m["s"]),
                int((m["f"] or "0").ljust(6, "0")),
                tzinfo=dt.UTC,
            )
        except ValueError:
            return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


class FilterError(ValueError):
    pass


def _compile_term(term: str) -> tuple[bool, str, bool]:
    """(starts with *, literal, ends with *) for one filter term; raises FilterError."""
    literal: list[str] = []
    lead = trail = False
    i = 0
    while i < len(term):
        ch = term[i]
        if ch == "\\":
            if i + 1 >= len(term):
                raise FilterError("Invalid escape sequence")
            literal.append(term[i + 1])
            i += 2
            continue
        if ch == "*":
            if i == 0:
                lead = True
            elif i == len(term) - 1:
                trail = True
            else:
                raise FilterError(f"Invalid character '*' at position {i}")
        else:
            literal.append(ch)
        i += 1
    return lead, "".join(literal), trail


def filter_matches(filter_text: str | None, value: str | None, *, is_label: bool) -> bool:
    """Does ``value`` match an Azure key or label filter (``None`` filter: anything)?"""
    if filter_text is None or filter_text == "*":
        return True
    terms = _split_unescaped(filter_text, ",")
    if len(terms) > 5:
        raise FilterError("At most 5 comma-separated values")
    for term in terms:
        if is_label and term == "\0":
            if value is None:
                return True
            continue
        lead, literal, trail = _compile_term(term)
        if value is None:
            continue
        if lead and trail:
            ok = literal in value
        elif lead:
            ok = value.endswith(literal)
        elif trail:
            ok = value.startswith(literal)
        else:
            ok = value == literal
        if ok:
            return True
    return False


class FakeAppConfig:
    """The store, its credentials, its faults and its server. Thread-safe."""

    def __init__(self, *, page_size: int = 100, credential_id: str = "flagdash-test-key") -> None:
        self.page_size = page_size
        self.credentials: dict[str, Credential] = {}
        self.default_credential = self.add_credential(credential_id)
        self.clock_skew = dt.timedelta()  # the fake's clock: now + clock_skew
        self.calls: list[Call] = []
        self.writes: list[Write] = []
        self.api_versions: set[str] = set()
        self._state = _State()
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._sync_id = "fk" + secrets.token_hex(3)

    # --- server ------------------------------------------------------------------------------

    def start(self) -> FakeAppConfig:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-azure-appconfig", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_credential(
        self, credential_id: str, secret: str | None = None, *, read_only: bool = False
    ) -> Credential:
        credential = Credential(credential_id, secret or new_secret(), read_only)
        self.credentials[credential_id] = credential
        return credential

    def connection_string(
        self, credential: Credential | None = None, *, secret: str | None = None
    ) -> str:
        credential = credential or self.default_credential
        return f"Endpoint={self.endpoint};Id={credential.id};Secret={secret or credential.secret}"

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.clock_skew

    # --- inspection --------------------------------------------------------------------------

    def get(self, key: str, label: str | None = None) -> KeyValue | None:
        with self._lock:
            kv = self._state.items.get((key, label or None))
            return None if kv is None else KeyValue(**{**kv.__dict__, "tags": dict(kv.tags)})

    def items(self, label: Any = ANY) -> list[KeyValue]:
        with self._lock:
            return [
                KeyValue(**{**kv.__dict__, "tags": dict(kv.tags)})
                for (_, kv_label), kv in sorted(
                    self._state.items.items(), key=lambda i: (i[0][0], i[0][1] or "")
                )
                if label is ANY or kv_label == (label or None)
            ]

    def feature_flags(self, label: str | None) -> dict[str, dict[str, Any]]:
        """Flag id → parsed value of every feature-flag setting with the label."""
        return {
            kv.key.removeprefix(FEATURE_FLAG_PREFIX): json.loads(kv.value or "{}")
            for kv in self.items(label)
            if kv.key.startswith(FEATURE_FLAG_PREFIX)
            and kv.content_type == FEATURE_FLAG_CONTENT_TYPE
        }

    def count(
        self, method: str | None = None, path_prefix: str = "/", *, status: int | None = None
    ) -> int:
        """Calls received (method, decoded path starting with ``path_prefix``, status)."""
        _check_prefix(path_prefix)
        with self._lock:
            return sum(
                1
                for c in self.calls
                if (method is None or c.method == method)
                and c.path.startswith(path_prefix)
                and (status is None or c.status == status)
            )

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    # --- changes "outside flagdash" (the portal, the CLI, another tool) ---------------------

    def put_outside(
        self,
        key: str,
        label: str | None,
        value: str,
        *,
        content_type: str | None = FEATURE_FLAG_CONTENT_TYPE,
        tags: dict[str, str] | None = None,
    ) -> KeyValue:
        with self._lock:
            kv = self._put(key, label or None, value, content_type, tags or {})
            self.writes.append(Write(time.time(), "PUT", key, label or None, value, outside=True))
            return kv

    def edit_flag_outside(self, flag_id: str, label: str | None, **changes: Any) -> KeyValue:
        """Change fields of a feature flag's value, as someone editing it in the portal would."""
        key = FEATURE_FLAG_PREFIX + flag_id
        current = self.get(key, label)
        assert current is not None, f"no setting {key} with label {label!r}"
        value = {**json.loads(current.value or "{}"), **changes}
        return self.put_outside(
            key, label, json.dumps(value), content_type=current.content_type, tags=current.tags
        )

    def delete_outside(self, key: str, label: str | None) -> None:
        with self._lock:
            self._state.items.pop((key, label or None), None)
            self._state.sequence += 1
            self.writes.append(Write(time.time(), "DELETE", key, label or None, None, True))

    def lock(self, key: str, label: str | None, locked: bool = True) -> None:
        with self._lock:
            kv = self._state.items[(key, label or None)]
            kv.locked = locked
            self._state.sequence += 1
            kind = "LOCK" if locked else "UNLOCK"
            self.writes.append(Write(time.time(), kind, key, label or None, None, True))

    # --- faults ------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_prefix: str = "/",
        *,
        status: int = 503,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """The next ``times`` matching requests answer ``status`` (429, 500, 503, …)."""
        _check_prefix(path_prefix)
        with self._lock:
            self._faults.append(Fault(method.upper(), path_prefix, status, times, retry_after))

    def delay_next(
        self,
        method: str,
        path_prefix: str = "/",
        *,
        seconds: float,
        times: int = 1,
        after: bool = False,
    ) -> None:
        """Slow answers. ``after=True``: the request takes effect, then the answer is late."""
        _check_prefix(path_prefix)
        with self._lock:
            self._faults.append(
                Fault(method.upper(), path_prefix, 0, times, None, seconds, delay_after=after)
            )

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in (method, "*") and path.startswith(fault.path_prefix):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --- the store ---------------------------------------------------------------------------

    def _put(
        self,
        key: str,
        label: str | None,
        value: str | None,
        content_type: str | None,
        tags: dict[str, str],
    ) -> KeyValue:
        previous = self._state.items.get((key, label))
        kv = KeyValue(
            key=key,
            label=label,
            value=value,
            content_type=content_type,
            tags=dict(tags),
            etag=secrets.token_urlsafe(24),
            last_modified=self.now().replace(microsecond=0),
            locked=previous.locked if previous else False,
        )
        self._state.items[(key, label)] = kv
        self._state.sequence += 1
        return kv

    def sync_token(self) -> str:
        value = base64.b64encode(f"{self._state.sequence}".encode()).decode()
        return f"{self._sync_id}={value};sn={self._state.sequence}"


def _check_prefix(path_prefix: str) -> None:
    if not path_prefix.startswith("/"):
        raise ValueError(f"a path prefix starts with '/' (as in '/kv/…'), not {path_prefix!r}")


def _etags(header: str) -> set[str]:
    return {part.strip().strip('"') for part in header.split(",") if part.strip()}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAppConfig
    protocol_version = "HTTP/1.1"
    server_version = "FakeAzureAppConfiguration/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # --- plumbing ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        self.decoded_path = unquote(split.path)
        self.query = {k.lower(): v for k, v in parse_qsl(split.query, keep_blank_values=True)}
        try:
            self._handle(method, split.path)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a timeout test)

    def _send(
        self,
        status: int,
        body: Any = None,
        *,
        content_type: str = KV_CONTENT_TYPE,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        with self.fake._lock:  # counted before the client can read the answer
            self.fake.calls.append(
                Call(self.command, self.decoded_path, dict(self.query), status, time.time())
            )
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", secrets.token_hex(8))
        client_request_id = self.headers.get("x-ms-client-request-id")
        if client_request_id:
            self.send_header("x-ms-client-request-id", client_request_id)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _problem(
        self,
        status: int,
        type_: str,
        title: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        body = {"type": f"https://azconfig.io/errors/{type_}", "title": title, **extra}
        body["status"] = status
        self._send(status, body, content_type=PROBLEM_CONTENT_TYPE, headers=headers)

    def _unauthorized(self, description: str | None) -> None:
        challenge = (
            "HMAC-SHA256, Bearer"
            if description is None
            else f'HMAC-SHA256 error="invalid_token" error_description="{description}", Bearer'
        )
        self._send(401, headers={"WWW-Authenticate": challenge})

    # --- authentication ----------------------------------------------------------------------

    def _authenticate(self) -> Credential | None:
        """The signing credential, or None after answering 401."""
        header = self.headers.get("Authorization") or ""
        scheme, _, params = header.partition(" ")
        if scheme != "HMAC-SHA256":
            self._unauthorized(None)
            return None
        fields: dict[str, str] = {}
        for part in re.split(r"[&,]\s*", params.strip()):
            name, sep, value = part.partition("=")
            if sep:
                fields[name.strip()] = value.strip()
        missing = [n for n in ("Credential", "SignedHeaders", "Signature") if not fields.get(n)]
        if missing:
            self._unauthorized(f"[{']['.join(missing)}] is required")
            return None
        signed = [h.strip().lower() for h in fields["SignedHeaders"].split(";")]
        for required in ("host", "x-ms-content-sha256"):
            if required not in signed:
                self._unauthorized(f"{required} is required as a signed header")
                return None
        if "x-ms-date" not in signed and "date" not in signed:
            self._unauthorized("x-ms-date is required as a signed header")
            return None
        values = []
        for name in signed:
            value = self.headers.get(name)
            if value is None:
                self._unauthorized(f"Signed request header '{name}' is not provided")
                return None
            values.append(value)
        date_text = self.headers.get("x-ms-date") or self.headers.get("Date") or ""
        when = parse_lenient_date(date_text)
        if when is None:
            self._unauthorized("Invalid access token date")
            return None
        if abs(self.fake.now() - when) > MAX_DATE_SKEW:
            self._unauthorized("The access token has expired")
            return None
        credential = self.fake.credentials.get(fields["Credential"])
        if credential is None:
            self._unauthorized("Invalid Credential")
            return None
        content_hash = base64.b64encode(hashlib.sha256(self.body).digest()).decode()
        if self.headers.get("x-ms-content-sha256") != content_hash:
            self._unauthorized("Invalid Signature")
            return None
        string_to_sign = f"{self.command}\n{self.path}\n{';'.join(values)}"
        expected = base64.b64encode(
            hmac.new(
                base64.b64decode(credential.secret), string_to_sign.encode(), hashlib.sha256
            ).digest()
        ).decode()
        if not hmac.compare_digest(expected, fields["Signature"]):
            self._unauthorized("Invalid Signature")
            return None
        return credential

    # --- routing -----------------------------------------------------------------------------

    def _handle(self, method: str, raw_path: str) -> None:
        fake = self.fake
        credential = self._authenticate()
        if credential is None:
            return
        version = self.query.get("api-version")
        if not version:
            self._problem(400, "invalid-argument", "The api-version parameter is required")
            return
        fake.api_versions.add(version)
        fault = fake._take_fault(method, self.decoded_path)
        if fault is not None and fault.delay and not fault.delay_after:
            time.sleep(fault.delay)
        if fault is not None and fault.status:
            self._fail(fault)
            return
        if method in ("PUT", "DELETE") and credential.read_only:
            self._problem(
                403,
                "forbidden",
                "Access denied",
                detail="The access key is read-only: writes need a read-write key.",
            )
            return
        path = self.decoded_path
        label = self._label()
        if path == "/kv" and method in ("GET", "HEAD"):
            self._list(method)
        elif raw_path.startswith("/kv/") and len(raw_path) > 4:
            key = unquote(raw_path[4:])
            {"GET": self._get, "HEAD": self._get, "PUT": self._put, "DELETE": self._delete}[method](
                key, label, fault
            )
        elif raw_path.startswith("/locks/") and method in ("PUT", "DELETE"):
            self._lock_key(unquote(raw_path[len("/locks/") :]), label, locked=method == "PUT")
        else:
            self._send(404)

    def _fail(self, fault: Fault) -> None:
        headers = {}
        if fault.retry_after is not None:
            ms = str(int(fault.retry_after * 1000))
            headers = {"retry-after-ms": ms, "x-ms-retry-after-ms": ms}
        if fault.status == 429:
            self._problem(
                429,
                "too-many-requests",
                "Resource utilization has surpassed the assigned quota",
                headers=headers,
                policy="TotalRequests",
            )
        elif fault.status == 503:
            self._problem(503, "service-unavailable", "Service Unavailable", headers=headers)
        elif fault.status == 500:
            self._problem(500, "internal-server-error", "Internal Server Error", headers=headers)
        else:
            self._send(fault.status, headers=headers)

    def _label(self) -> str | None:
        label = self.query.get("label")
        if label is None or label == "\0":
            return None
        return label

    def _kv_headers(self, kv: KeyValue) -> dict[str, str]:
        return {
            "ETag": f'"{kv.etag}"',
            "Last-Modified": email.utils.format_datetime(kv.last_modified, usegmt=True),
            "Sync-Token": self.fake.sync_token(),
        }

    def _precondition(self, current: KeyValue | None, *, read: bool) -> int | None:
        if_match = self.headers.get("If-Match")
        if if_match is not None:
            tags = _etags(if_match)
            if current is None or ("*" not in tags and current.etag not in tags):
                return 412
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None and current is not None:
            tags = _etags(if_none_match)
            if "*" in tags or current.etag in tags:
                return 304 if read else 412
        return None

    # --- key-values --------------------------------------------------------------------------

    def _get(self, key: str, label: str | None, fault: Fault | None) -> None:
        fake = self.fake
        with fake._lock:
            kv = fake._state.items.get((key, label))
            failed = self._precondition(kv, read=True)
            token = fake.sync_token()
            if failed:
                self._send(failed, headers={"Sync-Token": token})
                return
            if kv is None:
                self._send(404, headers={"Sync-Token": token})
                return
            body, headers = kv.as_json(), self._kv_headers(kv)
        self._send(200, body, headers=headers)

    def _put(self, key: str, label: str | None, fault: Fault | None) -> None:
        fake = self.fake
        if "%" in key or key in (".", "..") or not key:
            self._problem(400, "invalid-argument", "Invalid key", name="key", detail=key)
            return
        try:
            payload = json.loads(self.body or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError:
            self._problem(400, "invalid-argument", "The request body is not valid JSON")
            return
        with fake._lock:
            current = fake._state.items.get((key, label))
            failed = self._precondition(current, read=False)
            if failed:
                self._send(failed, headers={"Sync-Token": fake.sync_token()})
                return
            if current is not None and current.locked:
                self._locked(key)
                return
            kv = fake._put(
                key,
                label,
                payload.get("value"),
                payload.get("content_type"),
                payload.get("tags") or {},
            )
            fake.writes.append(Write(time.time(), "PUT", key, label, kv.value))
            body, headers = kv.as_json(), self._kv_headers(kv)
        if fault is not None and fault.delay_after:
            time.sleep(fault.delay)
        self._send(200, body, headers=headers)

    def _delete(self, key: str, label: str | None, fault: Fault | None) -> None:
        fake = self.fake
        with fake._lock:
            current = fake._state.items.get((key, label))
            failed = self._precondition(current, read=False)
            if failed:
                self._send(failed, headers={"Sync-Token": fake.sync_token()})
                return
            if current is None:
                self._send(204, headers={"Sync-Token": fake.sync_token()})
                return
            if current.locked:
                self._locked(key)
                return
            del fake._state.items[(key, label)]
            fake._state.sequence += 1
            fake.writes.append(Write(time.time(), "DELETE", key, label, None))
            body, headers = current.as_json(), self._kv_headers(current)
        if fault is not None and fault.delay_after:
            time.sleep(fault.delay)
        self._send(200, body, headers=headers)

    def _locked(self, key: str) -> None:
        self._problem(
            409,
            "key-locked",
            f"Modifing key '{key}' is not allowed",
            name=key,
            detail="The key is read-only. To allow modification unlock it first.",
        )

    def _lock_key(self, key: str, label: str | None, *, locked: bool) -> None:
        fake = self.fake
        with fake._lock:
            current = fake._state.items.get((key, label))
            failed = self._precondition(current, read=False)
            if failed:
                self._send(failed)
                return
            if current is None:
                self._send(404)
                return
            current.locked = locked
            fake._state.sequence += 1
            kind = "LOCK" if locked else "UNLOCK"
            fake.writes.append(Write(time.time(), kind, key, label, None))
            body, headers = current.as_json(), self._kv_headers(current)
        self._send(200, body, headers=headers)

    def _list(self, method: str) -> None:
        fake = self.fake
        key_filter = self.query.get("key")
        label_filter = self.query.get("label")
        after = self.query.get("after")
        try:
            with fake._lock:
                matching = [
                    kv
                    for (key, label), kv in sorted(
                        fake._state.items.items(), key=lambda i: (i[0][0], i[0][1] or "")
                    )
                    if filter_matches(key_filter, key, is_label=False)
                    and filter_matches(label_filter, label, is_label=True)
                ]
                token = fake.sync_token()
        except FilterError as exc:
            name = "key" if key_filter and "key" in str(exc) else "label"
            self._problem(
                400,
                "invalid-argument",
                f"Invalid request parameter '{name}'",
                name=name,
                detail=str(exc),
            )
            return
        start = 0
        if after:
            try:
                last = json.loads(base64.urlsafe_b64decode(after.encode()))
            except ValueError:
                self._problem(400, "invalid-argument", "Invalid request parameter 'after'")
                return
            start = next(
                (i + 1 for i, kv in enumerate(matching) if [kv.key, kv.label or ""] == last),
                len(matching),
            )
        page = matching[start : start + fake.page_size]
        select = self.query.get("$select")
        fields = [f.strip() for f in select.split(",")] if select else None
        items = [
            {k: v for k, v in kv.as_json().items() if fields is None or k in fields} for kv in page
        ]
        body: dict[str, Any] = {"items": items}
        headers = {"Sync-Token": token}
        if start + fake.page_size < len(matching):
            last_kv = page[-1]
            next_after = base64.urlsafe_b64encode(
                json.dumps([last_kv.key, last_kv.label or ""]).encode()
            ).decode()
            params = {k: v for k, v in self.query.items() if k != "after"}
            params["after"] = next_after
            link = "/kv?" + urlencode(params, quote_via=quote)
            body["@nextLink"] = link
            headers["Link"] = f'<{link}>; rel="next"'
        etag = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()
        headers["ETag"] = f'"{etag}"'
        self._send(200, body, content_type=KVSET_CONTENT_TYPE, headers=headers)


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[FakeAppConfig]:
    """A started fake, closed at the end."""
    fake = FakeAppConfig(**kwargs).start()
    try:
        yield fake
    finally:
        fake.close()
