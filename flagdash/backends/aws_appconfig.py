"""AWS AppConfig: versions become hosted feature-flag configurations that AWS rolls out itself.

One BackendConnection points at one AppConfig application, one configuration profile of type
``AWS.AppConfig.FeatureFlags`` (hosted) and one AppConfig environment. Several flagdash
environments may share the application and the profile, each with its own AWS environment.

How a deployment maps onto AWS:

- ``start``: the version is rendered into AWS's feature-flag document (validated here first),
  written as a hosted configuration version labelled ``flagdash-d<deployment id>`` with
  ``Latest-Version-Number`` (a version someone else wrote since is drift, not overwritten), then
  StartDeployment with the strategy (AWS's predefined ``AppConfig.*`` ones by name; flagdash's own
  as a strategy created once in AWS and reused). Every step first looks for what an earlier,
  interrupted attempt did (``AwsAppConfigDeployment`` remembers what was asked; the version label
  finds what AWS did), so a retried start never writes a second version or starts a second
  deployment.
- ``status``: GetDeployment: AWS's state, PercentageComplete and its event log (mirrored, each
  event once). A rollback AWS did by itself because a CloudWatch alarm fired is reported with the
  alarm's name.
- ``stop``: StopDeployment (AWS serves the previous version again); ``Allow-Revert`` for a
  deployment that is no longer DEPLOYING (AWS refuses to stop a BAKING one without it). A
  rollback of a completed deployment uses ``Allow-Revert`` only while AWS allows it (the
  environment's latest deployment, within 72 hours) and only when what AWS brings back is
  exactly flagdash's earlier version (the AWS deployment before it is flagdash's, complete, of
  that version); otherwise the earlier version is deployed as a new hosted version.

Calls that create something (CreateHostedConfigurationVersion, CreateDeploymentStrategy,
StartDeployment, StopDeployment, the Create* calls of "Create in AWS") are sent once: botocore
must not repeat them after a read timeout, a reset connection or a 5xx, because AWS may have
carried out the first request. Instead flagdash looks for what the request did (by label, by
name, by deployment) before it asks again. Reads keep botocore's modest retries.

A deployment started outside flagdash (the console) is drift: before writing anything, ``start``
checks that the environment's latest completed AWS deployment serves a hosted version flagdash
wrote for the version it records as live.

Credentials come from boto3's default chain (environment variables, ``AWS_PROFILE``, instance
or task roles), never from the database. One boto3 session per process (per credential
environment) resolves them once; refreshable credentials (assumed roles, instance and task
roles, ``credential_process``) renew themselves. Nothing outside ``flagdash/backends/`` imports
boto3.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from flagdash.backends.base import (
    EXPONENTIAL,
    LINEAR,
    Backend,
    BackendBusy,
    BackendError,
    BackendEvent,
    CheckResult,
    DeploymentSpec,
    DriftError,
    PermanentBackendError,
    RolloutPlan,
    RolloutState,
    RolloutStatus,
    StartResult,
    TransientBackendError,
    parse_retry_after,
    register,
)
from flagdash.backends.endpoints import EndpointNotAllowed, check_endpoint
from flagdash.backends.models import AwsAppConfigDeployment, BackendKind

logger = logging.getLogger(__name__)

FEATURE_FLAGS = "AWS.AppConfig.FeatureFlags"
HOSTED = "hosted"
OPTION_KEYS = ("region", "application_id", "configuration_profile_id", "environment_id")
# AWS's rules for the feature-flag document (its published JSON schema).
KEY_PATTERN = re.compile(r"^[a-z][a-zA-Z\d_-]{0,63}$")
NAME_PATTERN = re.compile(r"^[^\n]{1,64}$")
MAX_DESCRIPTION = 1024
MAX_ATTRIBUTES = 25
MAX_ENUM = 100
MAX_PATTERN = 1024
MAX_STRING = 1024
MAX_DOCUMENT_BYTES = 1024 * 1024  # a hosted configuration version
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
# A multi-variant flag goes to AWS as its default variant: the variant's value and name travel in
# these attributes (AWS's own variants, evaluated only by the AppConfig Agent, are not written).
VARIANT_VALUE = "variantValue"
VARIANT_NAME = "variantName"
RESERVED_ATTRIBUTES = (VARIANT_VALUE, VARIANT_NAME)
FLAGDASH_LABEL = re.compile(r"^flagdash-d\d+$")
REVERT_WINDOW = dt.timedelta(hours=72)
REVERT_MARGIN = dt.timedelta(minutes=5)  # do not race AWS's window to its last minutes
# An AWS alarm rollback should show in flagdash within this many seconds (deploying or baking).
ALARM_NOTICE_SECONDS = 30.0
STEP_SLACK_SECONDS = 2.0  # ask a little after AWS's step is due (clocks differ slightly)
LATE_STEP_RECHECK_SECONDS = 5.0
BUSY_RETRY_SECONDS = 15.0
# botocore: few retries of its own (the engine retries with backoff) and short timeouts, so one
# call never holds a worker long.
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 8.0
MAX_ATTEMPTS = 2  # in all, the first try included (reads)
# Sent once, never repeated by botocore: AWS may have carried out a request whose answer was lost.
SEND_ONCE = frozenset(
    {
        "CreateApplication",
        "CreateEnvironment",
        "CreateConfigurationProfile",
        "CreateHostedConfigurationVersion",
        "CreateDeploymentStrategy",
        "StartDeployment",
        "StopDeployment",
    }
)
# What boto3's default credential chain reads from the process environment: a session is kept
# per process and per these values (a changed variable gets a fresh session).
CREDENTIAL_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_STS_REGIONAL_ENDPOINTS",
)
ACTIVE_AWS_STATES = ("DEPLOYING", "VALIDATING", "BAKING", "ROLLING_BACK")
IN_PROGRESS_AWS_STATES = ("DEPLOYING", "VALIDATING", "BAKING")
STATE_MAP: dict[str, RolloutState] = {
    "DEPLOYING": "deploying",
    "VALIDATING": "deploying",
    "BAKING": "baking",
    "COMPLETE": "complete",
    "ROLLING_BACK": "rolling_back",
    "ROLLED_BACK": "rolled_back",
    "REVERTED": "rolled_back",
}
PREDEFINED_STRATEGIES = frozenset(
    {
        "AppConfig.AllAtOnce",
        "AppConfig.Linear50PercentEvery30Seconds",
        "AppConfig.Canary10Percent20Minutes",
        "AppConfig.Linear20PercentEvery6Minutes",
    }
)
THROTTLING = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ThrottledException",
        "SlowDown",
    }
)
BAD_CREDENTIALS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignatureException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "ExpiredToken",
        "RequestExpired",
        "MissingAuthenticationTokenException",
        "AuthFailure",
    }
)
ALARM_ARN = re.compile(r"arn:aws[\w-]*:cloudwatch:[\w-]*:\d*:alarm:(?P<name>[^\s,;]+)")
TRANSPORT_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
    BotoConnectionError,
)


# --- errors ------------------------------------------------------------------------------------


class _Conflict(TransientBackendError):
    """AWS answered 409 ConflictException (the caller decides what it means)."""


class _BadRequest(PermanentBackendError):
    """AWS answered BadRequestException for a request that is not a document (for StopDeployment:
    the deployment's state no longer allows it)."""


def _ascii(text: str, limit: int = 1024) -> str:
    """Header-safe text (AWS takes some fields as HTTP headers): ASCII, one line."""
    cleaned = " ".join(text.replace("…", "...").replace("—", "-").split())
    return cleaned.encode("ascii", "replace").decode()[:limit]


def _invalid_configuration(items: list[dict[str, Any]]) -> list[str]:
    """AWS's InvalidConfiguration items as lines naming the flag and the attribute."""
    lines = []
    for item in items:
        location = str(item.get("Location") or "")
        parts = [p for p in re.split(r"[/.]", location) if p]
        where = location or "the document"
        if len(parts) >= 2 and parts[0] in ("flags", "values"):
            where = f"flag {parts[1]}"
            rest = [p for p in parts[2:] if p not in ("attributes", "constraints", "_variants")]
            if rest:
                where += f", attribute {rest[0]}"
                if len(rest) > 1:
                    where += f" ({'/'.join(rest[1:])})"
        reason = str(item.get("Reason") or item.get("Type") or "refused")
        extra = []
        if item.get("Value") is not None:
            extra.append(f"value {item['Value']}")
        if item.get("Constraint"):
            extra.append(f"constraint {item['Constraint']}")
        lines.append(f"{where}: {reason}" + (f" ({', '.join(extra)})" if extra else ""))
    return lines


def translate_client_error(exc: ClientError, operation: str, resource: str) -> BackendError:
    """One AWS error as the right flagdash error, with a message a person can act on."""
    response: dict[str, Any] = dict(exc.response or {})
    error = response.get("Error") or {}
    code = str(error.get("Code") or "Unknown")
    message = str(error.get("Message") or response.get("Message") or "no message").strip()
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    action = f"appconfig:{operation}"
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    wait = parse_retry_after(headers.get("retry-after"))
    asked = f" AWS asked to wait {wait:g} s." if wait else ""
    if code in THROTTLING or status == 429:
        return TransientBackendError(
            f"AWS is throttling flagdash ({code} on {operation} for {resource}): {message}. "
            f"flagdash retries with backoff.{asked}",
            retry_in=wait,
        )
    if status >= 500 or code in ("InternalServerException", "ServiceUnavailableException"):
        return TransientBackendError(
            f"AWS AppConfig failed on {operation} for {resource} ({code}, HTTP {status}): "
            f"{message}. flagdash retries with backoff.{asked}",
            retry_in=wait,
        )
    if code == "ConflictException":
        return _Conflict(f"AWS refused {operation} for {resource} (ConflictException): {message}")
    if code in ("AccessDeniedException", "AccessDenied"):
        return PermanentBackendError(
            f"AWS denied {action} on {resource}: {message}. Allow the IAM action {action} for "
            "the credentials flagdash's web and worker processes use (docs/aws.md lists every "
            "action flagdash needs)."
        )
    if code in BAD_CREDENTIALS:
        return PermanentBackendError(
            f"AWS did not accept flagdash's credentials ({code} on {operation}): {message}. Check "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN, which expires) or "
            "AWS_PROFILE in the environment of flagdash's web and worker processes, and that the "
            "connection's region is right."
        )
    if code == "ResourceNotFoundException":
        return PermanentBackendError(
            f"AWS AppConfig has no {resource}: {message}. Check the ids in the connection's "
            "settings (region, application, configuration profile, environment), or create the "
            "missing resource again from the settings page."
        )
    if code == "BadRequestException":
        details = response.get("Details") or {}
        items = details.get("InvalidConfiguration") if isinstance(details, dict) else None
        if response.get("Reason") == "InvalidConfiguration" or items:
            lines = _invalid_configuration(list(items or []))
            return PermanentBackendError(
                f"AWS refused the feature-flag document for {resource} (InvalidConfiguration): "
                f"{message}. Fix the flags listed below and deploy again.",
                details=lines,
            )
        return _BadRequest(f"AWS refused {operation} for {resource}: {message}")
    if code == "PayloadTooLargeException":
        size, limit = response.get("Size"), response.get("Limit")
        sizes = f" ({size} KB; the limit is {limit} KB)" if size and limit else ""
        return PermanentBackendError(
            f"The feature-flag document is too large for AWS AppConfig{sizes}: {message}. "
            "Archive flags you no longer use, or shorten descriptions."
        )
    if code == "ServiceQuotaExceededException":
        return PermanentBackendError(
            f"An AWS AppConfig quota was reached on {operation} for {resource}: {message}. "
            "Delete unused resources or ask AWS for a higher quota."
        )
    return PermanentBackendError(
        f"AWS refused {operation} for {resource} ({code}, HTTP {status}): {message}"
    )


def translate(exc: Exception, operation: str, resource: str) -> BackendError:
    if isinstance(exc, ClientError):
        return translate_client_error(exc, operation, resource)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return PermanentBackendError(
            f"flagdash found no usable AWS credentials for {operation} ({exc}). Set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run with an "
            "instance or task role) in the environment of flagdash's web and worker processes."
        )
    if isinstance(exc, NoRegionError):
        return PermanentBackendError("The connection has no AWS region: set one in its settings.")
    if isinstance(exc, TRANSPORT_ERRORS):
        return TransientBackendError(
            f"Could not reach AWS AppConfig for {operation} on {resource}: {exc}. flagdash "
            "retries; if it persists, check the region, the endpoint and the network."
        )
    if isinstance(exc, ParamValidationError):
        return PermanentBackendError(f"flagdash sent AWS an invalid {operation} request: {exc}")
    return TransientBackendError(f"AWS AppConfig call {operation} failed: {exc}")


# --- the client --------------------------------------------------------------------------------


_session_lock = threading.Lock()
_session: tuple[tuple[int, str], boto3.session.Session] | None = None
_clients: dict[tuple[Any, ...], Any] = {}
MAX_CACHED_CLIENTS = 32  # (region, endpoint, attempts) pairs; a deployment uses two


def _credential_environment() -> str:
    """A digest of what the default credential chain reads from the process environment."""
    digest = hashlib.sha256()
    for name in CREDENTIAL_ENVIRONMENT:
        digest.update(f"{name}={os.environ.get(name, '')}\0".encode())
    return digest.hexdigest()


def _session_key() -> tuple[int, str]:
    return (os.getpid(), _credential_environment())


def aws_session() -> boto3.session.Session:
    """The process's boto3 session (callers hold ``_session_lock``).

    One per process and credential environment, so the default chain (an STS AssumeRole, an
    instance-metadata lookup) runs once rather than on every advance. Credentials that expire
    (assumed roles, instance and task roles, ``credential_process`` with an expiry) are
    refreshable: botocore renews them before they expire. A forked child gets its own."""
    global _session
    key = _session_key()
    if _session is None or _session[0] != key:
        _clients.clear()
        _session = (key, boto3.session.Session())
    return _session[1]


def reset_clients() -> None:
    """Forget the process's session and clients (the next call resolves credentials again)."""
    global _session
    with _session_lock:
        _session = None
        _clients.clear()


def make_client(region: str, endpoint_url: str = "", *, max_attempts: int = MAX_ATTEMPTS) -> Any:
    """A boto3 AppConfig client with the default credential chain, ``max_attempts`` tries in all
    and short timeouts; cached per process (boto3 clients are thread-safe, sessions are not, so
    clients are created under a lock)."""
    if not region:
        raise PermanentBackendError("The connection has no AWS region: set one in its settings.")
    if endpoint_url:
        try:
            check_endpoint(endpoint_url, "aws_appconfig")
        except EndpointNotAllowed as exc:
            raise PermanentBackendError(str(exc)) from None
    with _session_lock:
        session = aws_session()
        key = (region, endpoint_url, max_attempts, CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
        client = _clients.get(key)
        if client is not None:
            return client
        config = Config(
            region_name=region,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            user_agent_extra="flagdash",
        )
        try:
            client = session.client("appconfig", endpoint_url=endpoint_url or None, config=config)
        except (BotoCoreError, ValueError) as exc:  # a malformed region or endpoint URL
            raise PermanentBackendError(
                f"flagdash cannot use region “{region}” with endpoint “{endpoint_url or 'AWS'}”: "
                f"{exc}. Correct the connection's settings."
            ) from exc
        try:
            found = session.get_credentials()
        except BotoCoreError:  # reported by the call itself, with flagdash's message
            found = None
        if found is not None:
            # Not kept without credentials: they may appear (an instance role once reachable).
            while len(_clients) >= MAX_CACHED_CLIENTS:
                _clients.pop(next(iter(_clients)))  # the oldest
            _clients[key] = client
        return client


class _Aws:
    """Calls to AWS, each turned into flagdash's errors when it fails.

    ``client`` retries reads (botocore's standard mode, MAX_ATTEMPTS in all); the calls in
    SEND_ONCE go through a client that tries once."""

    def __init__(self, region: str, endpoint_url: str = "") -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.client = make_client(region, endpoint_url)
        self._once: Any = None

    @property
    def once(self) -> Any:
        if self._once is None:
            self._once = make_client(self.region, self.endpoint_url, max_attempts=1)
        return self._once

    def call(self, operation: str, resource: str, **kwargs: Any) -> dict[str, Any]:
        client = self.once if operation in SEND_ONCE else self.client
        method: Callable[..., dict[str, Any]] = getattr(client, _snake(operation))
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation, resource) from exc

    def pages(self, operation: str, resource: str, *, limit: int = 20, **kwargs: Any) -> list[Any]:
        """Every item of a listing (at most ``limit`` pages)."""
        items: list[Any] = []
        token = None
        for _ in range(limit):
            page = self.call(
                operation,
                resource,
                MaxResults=50,
                **kwargs,
                **({"NextToken": token} if token else {}),
            )
            items.extend(page.get("Items") or [])
            token = page.get("NextToken")
            if not token:
                break
        return items


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# --- the document ------------------------------------------------------------------------------


def _constraints(attr: dict[str, Any], problems: list[str], where: str) -> dict[str, Any]:
    """flagdash's attribute type and constraint as AWS constraints."""
    kind = attr.get("type")
    constraint = attr.get("constraint") or {}
    pattern, enum = constraint.get("pattern"), constraint.get("enum")
    minimum, maximum = constraint.get("minimum"), constraint.get("maximum")
    if pattern and len(pattern) > MAX_PATTERN:
        problems.append(f"{where}: the pattern is longer than AWS's {MAX_PATTERN} characters")
    if enum:
        if len(enum) > MAX_ENUM:
            problems.append(f"{where}: AWS allows at most {MAX_ENUM} allowed values")
        if any(isinstance(v, str) and len(v) > MAX_STRING for v in enum):
            problems.append(f"{where}: an allowed value is longer than {MAX_STRING} characters")
    if pattern and enum:
        problems.append(f"{where}: AWS takes a pattern or allowed values, not both")
    for bound in (minimum, maximum):
        if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
            problems.append(f"{where}: AWS takes whole numbers as minimum and maximum")

    def string() -> dict[str, Any]:
        c: dict[str, Any] = {"type": "string"}
        if pattern:
            c["pattern"] = pattern
        if enum:
            c["enum"] = list(enum)
        return c

    def number() -> dict[str, Any]:
        c: dict[str, Any] = {"type": "number"}
        if minimum is not None:
            c["minimum"] = minimum
        if maximum is not None:
            c["maximum"] = maximum
        return c

    if kind == "string":
        result = string()
    elif kind == "number":
        result = number()
    elif kind == "boolean":
        result = {"type": "boolean"}
    elif kind == "string_list":
        result = {"type": "array", "elements": string()}
    elif kind == "number_list":
        result = {"type": "array", "elements": number()}
    elif kind == "date":
        result = {"type": "string", "pattern": DATE_PATTERN}
    else:
        problems.append(f"{where}: AWS has no attribute type for {kind!r}")
        result = {"type": "string"}
    if attr.get("required"):
        result["required"] = True
    return result


def _check_value(value: Any, where: str, problems: list[str]) -> None:
    strings = value if isinstance(value, list) else [value]
    if any(isinstance(v, str) and len(v) > MAX_STRING for v in strings):
        problems.append(f"{where}: AWS takes string values of at most {MAX_STRING} characters")
    if isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(v, dict | list) for v in value)
    ):
        problems.append(f"{where}: AWS takes strings, numbers, booleans and flat lists only")


def _variant_value(value: Any, value_type: str) -> Any:
    """A variant's value as an AWS attribute value (objects as JSON text)."""
    if value_type == "object" or isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def render_document(document: dict[str, Any]) -> dict[str, Any]:
    """flagdash's version document as AWS's ``AWS.AppConfig.FeatureFlags`` document.

    Checked against AWS's published rules (key pattern, name and description lengths, at most 25
    attributes, constraint types, enum and pattern sizes, string values, document size); every
    problem is one line of ``PermanentBackendError.details``. Whether values meet their
    constraints is flagdash's own validation when they are edited, and AWS's when it stores the
    version. Targeting rules are not pushed yet, and neither are AWS's own variants (their stored
    shape is not confirmed, and only the AppConfig Agent evaluates them): a multi-variant flag
    goes to AWS as its default variant, the served value in the attribute ``variantValue`` and
    the variant's name in ``variantName``, which every client reads like any attribute.
    """
    flags_in = document.get("flags")
    if not isinstance(flags_in, dict):
        raise PermanentBackendError("The version has no flags object.")
    problems: list[str] = []
    flags: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for key in sorted(flags_in):
        entry = flags_in[key] or {}
        where = f"flag {key}"
        if not KEY_PATTERN.match(key):
            problems.append(
                f"{where}: the key does not match AWS's pattern ^[a-z][a-zA-Z0-9_-]{{0,63}}$"
            )
        name = str(entry.get("name") or key)
        if not NAME_PATTERN.match(name):
            problems.append(f"{where}: the name must be 1–64 characters on one line for AWS")
        definition: dict[str, Any] = {"name": name}
        description = str(entry.get("description") or "")
        if len(description) > MAX_DESCRIPTION:
            problems.append(f"{where}: the description is longer than {MAX_DESCRIPTION} characters")
        if description:
            definition["description"] = description
        if entry.get("short_term") and entry.get("remove_by"):
            definition["_deprecation"] = {"status": "planned", "date": str(entry["remove_by"])}
        attributes_in: dict[str, Any] = entry.get("attributes") or {}
        multivariant = entry.get("kind") == "multivariant"
        count = len(attributes_in) + (len(RESERVED_ATTRIBUTES) if multivariant else 0)
        if count > MAX_ATTRIBUTES:
            problems.append(f"{where}: {count} attributes; AWS allows at most {MAX_ATTRIBUTES}")
        attributes: dict[str, Any] = {}
        for attr_name, attr in attributes_in.items():
            at = f"{where}, attribute {attr_name}"
            if not KEY_PATTERN.match(attr_name):
                problems.append(f"{at}: the name does not match AWS's key pattern")
            spec: dict[str, Any] = {}
            attr_description = str(attr.get("description") or "")
            if len(attr_description) > MAX_DESCRIPTION:
                problems.append(
                    f"{at}: the description is longer than {MAX_DESCRIPTION} characters"
                )
            if attr_description:
                spec["description"] = attr_description
            spec["constraints"] = _constraints(attr, problems, at)
            attributes[attr_name] = spec
        value: dict[str, Any] = {"enabled": bool(entry.get("enabled"))}
        for attr_name, attr_value in sorted((entry.get("attribute_values") or {}).items()):
            if attr_name not in attributes_in or attr_value is None:
                continue
            _check_value(attr_value, f"{where}, attribute {attr_name}", problems)
            value[attr_name] = attr_value
        if multivariant:
            for reserved, what in ((VARIANT_VALUE, "value"), (VARIANT_NAME, "name")):
                if reserved in attributes_in:
                    problems.append(
                        f"{where}, attribute {reserved}: the name is reserved for the variant's "
                        f"{what} on AWS; rename the attribute"
                    )
            value_type = str(entry.get("value_type") or "string")
            numeric = value_type in ("integer", "float")
            attributes[VARIANT_VALUE] = {
                "description": "The value of the variant served (set by flagdash)",
                "constraints": {"type": "number" if numeric else "string"},
            }
            attributes[VARIANT_NAME] = {
                "description": "The name of the variant served (set by flagdash)",
                "constraints": {"type": "string"},
            }
            default = entry.get("default_variant")
            chosen = next(
                (v for v in entry.get("variants") or [] if v.get("name") == default), None
            )
            if chosen is None:
                problems.append(
                    f"{where}: the default variant {default!r} is not one of its variants"
                )
            else:
                served = _variant_value(chosen.get("value"), value_type)
                _check_value(served, f"{where}, variant {default}", problems)
                if not NAME_PATTERN.match(str(default)):
                    problems.append(f"{where}: the variant name must be 1–64 characters for AWS")
                value[VARIANT_VALUE] = served
                value[VARIANT_NAME] = str(default)
        if attributes:
            definition["attributes"] = attributes
        flags[key] = definition
        values[key] = value
    rendered = {"version": "1", "flags": flags, "values": values}
    size = len(document_bytes(rendered))
    if size > MAX_DOCUMENT_BYTES:
        problems.append(
            f"the document is {size // 1024} KB; AWS stores at most {MAX_DOCUMENT_BYTES // 1024} KB"
        )
    if problems:
        raise PermanentBackendError(
            f"This version breaks {len(problems)} of AWS AppConfig's feature-flag rules; nothing "
            "was sent to AWS. Fix the flags listed below and deploy again.",
            details=problems,
        )
    return rendered


def document_bytes(rendered: dict[str, Any]) -> bytes:
    return json.dumps(rendered, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _attribute_back(spec: dict[str, Any]) -> dict[str, Any]:
    c = dict(spec.get("constraints") or {})
    kind = c.get("type")
    inner = c.get("elements") or {} if kind == "array" else c
    constraint: dict[str, Any] = {
        k: inner[k] for k in ("pattern", "enum", "minimum", "maximum") if k in inner
    }
    if kind == "array":
        flag_type = "number_list" if inner.get("type") == "number" else "string_list"
    elif kind == "string" and constraint.get("pattern") == DATE_PATTERN:
        flag_type = "date"
        constraint = {}
    else:
        flag_type = kind or "string"
    return {
        "type": flag_type,
        "description": spec.get("description", ""),
        "required": bool(c.get("required")),
        "constraint": constraint,
    }


def parse_document(
    content: dict[str, Any], application_key: str, environment_key: str
) -> dict[str, Any]:
    """An AWS feature-flag document back in flagdash's shape, as far as it goes (AWS keeps no
    value types and no variants besides the default; a variant's object value comes back as
    the JSON text it was sent as). Documents written by earlier flagdash versions carried the
    variant's name in ``_variants`` instead of ``variantName``: both are read."""
    flags: dict[str, Any] = {}
    values = content.get("values") or {}
    for key, definition in sorted((content.get("flags") or {}).items()):
        value = values.get(key) or {}
        attributes = dict(definition.get("attributes") or {})
        variant_value = attributes.pop(VARIANT_VALUE, None)
        attributes.pop(VARIANT_NAME, None)
        deprecation = definition.get("_deprecation") or {}
        entry: dict[str, Any] = {
            "name": definition.get("name", key),
            "description": definition.get("description", ""),
            "kind": "multivariant" if variant_value else "boolean",
            "value_type": "boolean",
            "short_term": bool(deprecation),
            "remove_by": deprecation.get("date"),
            "attributes": {name: _attribute_back(spec) for name, spec in attributes.items()},
            "enabled": bool(value.get("enabled")),
            "attribute_values": {
                k: v for k, v in sorted(value.items()) if k in attributes and not k.startswith("_")
            },
        }
        if variant_value:
            served = value.get(VARIANT_VALUE)
            variants = value.get("_variants") or []
            legacy = variants[-1].get("name") if variants else None
            default = str(value.get(VARIANT_NAME) or legacy or "default")
            if isinstance(served, bool) or not isinstance(served, int | float):
                entry["value_type"] = "string"
            else:
                entry["value_type"] = "integer" if isinstance(served, int) else "float"
            entry["variants"] = [{"name": default, "value": served}]
            entry["default_variant"] = default
        flags[key] = entry
    return {
        "schema": 1,
        "application": application_key,
        "environment": environment_key,
        "flags": flags,
    }


def _flag_changes(outside: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    """What a version written outside flagdash changed, per flag, against flagdash's last one."""
    before_values = (baseline or {}).get("values") or {}
    before_flags = (baseline or {}).get("flags") or {}
    after_values = outside.get("values") or {}
    after_flags = outside.get("flags") or {}
    lines = []
    for key in sorted(set(before_flags) | set(after_flags)):
        if key not in after_flags:
            lines.append(f"{key}: deleted")
        elif key not in before_flags:
            lines.append(f"{key}: added")
        else:
            old, new = before_values.get(key) or {}, after_values.get(key) or {}
            changed = [
                name
                for name in sorted(set(old) | set(new))
                if old.get(name) != new.get(name) and not name.startswith("_")
            ]
            if before_flags[key] != after_flags[key]:
                changed.append("definition")
            if changed:
                lines.append(f"{key}: {', '.join(changed)} changed")
    return lines


# --- strategies ----------------------------------------------------------------------------------


def strategy_parameters(spec: DeploymentSpec) -> dict[str, Any]:
    """The deployment's strategy in AWS's terms (minutes, LINEAR/EXPONENTIAL)."""
    s = spec.strategy
    if s:
        duration, bake = int(s["duration_minutes"]), int(s["final_bake_minutes"])
        growth, factor = str(s["growth_type"]), float(s["growth_factor"])
    else:
        plan = spec.plan
        duration, bake = round(plan.duration_seconds / 60), round(plan.final_bake_seconds / 60)
        growth, factor = plan.growth_type, plan.growth_factor
    return {
        "DeploymentDurationInMinutes": duration,
        "GrowthType": "EXPONENTIAL" if growth == EXPONENTIAL else "LINEAR",
        "GrowthFactor": factor,
        "FinalBakeTimeInMinutes": bake,
    }


def strategy_aws_name(name: str, parameters: dict[str, Any]) -> str:
    """``flagdash-<name>-<hash of the parameters>``: the same strategy maps to one AWS strategy;
    an edited one to a new one."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:40] or "strategy"
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:8]
    return f"flagdash-{slug}-{digest}"


# --- the backend ---------------------------------------------------------------------------------


def _resource(kind: str, ident: str) -> str:
    return f"{kind} {ident or '(not set)'}"


@register
class AwsAppConfigBackend(Backend):
    kind = BackendKind.AWS_APPCONFIG

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self.region = str(self.options.get("region") or "").strip()
        self.application_id = str(self.options.get("application_id") or "").strip()
        self.profile_id = str(self.options.get("configuration_profile_id") or "").strip()
        self.environment_id = str(self.options.get("environment_id") or "").strip()
        self.endpoint_url = str(self.options.get("endpoint_url") or "").strip()
        self._aws: _Aws | None = None

    # --- plumbing -------------------------------------------------------------------------------

    @property
    def aws(self) -> _Aws:
        if self._aws is None:
            missing = [k for k in OPTION_KEYS if not self.options.get(k)]
            if missing:
                raise PermanentBackendError(
                    f"The AWS AppConfig connection “{self.connection.name}” lacks "
                    f"{', '.join(missing)}: complete it on the settings page."
                )
            self._aws = _Aws(self.region, self.endpoint_url)
        return self._aws

    @property
    def app_resource(self) -> str:
        return f"application {self.application_id} ({self.region})"

    @property
    def profile_resource(self) -> str:
        return f"configuration profile {self.profile_id} of application {self.application_id}"

    @property
    def env_resource(self) -> str:
        return f"environment {self.environment_id} of application {self.application_id}"

    def _deployment_resource(self, number: int) -> str:
        return f"deployment {number} in {self.env_resource}"

    def _ids(self) -> dict[str, str]:
        return {"ApplicationId": self.application_id, "EnvironmentId": self.environment_id}

    def _backend_ref(self, number: int, mode: str = "deploy") -> str:
        ref = f"appconfig:{self.application_id}/{self.environment_id}/{number}"
        return ref + "/revert" if mode == "revert" else ref

    def _data(self, number: int, mode: str, **extra: Any) -> dict[str, Any]:
        return {
            "mode": mode,
            "aws_deployment": number,
            "region": self.region,
            "application_id": self.application_id,
            "environment_id": self.environment_id,
            "configuration_profile_id": self.profile_id,
            **extra,
        }

    # --- render -------------------------------------------------------------------------------

    def render(self, document: dict[str, Any]) -> dict[str, Any]:
        return render_document(document)

    # --- start ----------------------------------------------------------------------------------

    def start(self, spec: DeploymentSpec, now: dt.datetime) -> StartResult:
        rendered = self.render(spec.document)  # refuse a bad document before any call
        if spec.is_restore:
            reverted = self._try_revert(spec, now)
            if reverted is not None:
                return reverted
        record, fresh = self._record(spec)
        started = record.aws_deployment_number is not None or record.start_requested_at is not None
        if not started and not spec.overwrite_drift:
            self._check_served(spec)  # before anything is written
        version = self._ensure_version(spec, record, fresh, rendered)
        return self._ensure_deployment(spec, record, version, now)

    def _record(self, spec: DeploymentSpec) -> tuple[AwsAppConfigDeployment, bool]:
        target = {
            "region": self.region,
            "application_id": self.application_id,
            "configuration_profile_id": self.profile_id,
            "environment_id": self.environment_id,
        }
        record, created = AwsAppConfigDeployment.objects.get_or_create(
            deployment_id=spec.deployment_id,
            defaults={**target, "version_label": f"flagdash-d{spec.deployment_id}"},
        )
        if not created and any(getattr(record, k) != v for k, v in target.items()):
            # The connection was pointed elsewhere since the last attempt: start over there.
            for k, v in target.items():
                setattr(record, k, v)
            record.version_number = None
            record.aws_deployment_number = None
            record.start_requested_at = None
            record.save()
            created = True
        return record, created

    def _ensure_version(
        self,
        spec: DeploymentSpec,
        record: AwsAppConfigDeployment,
        fresh: bool,
        rendered: dict[str, Any],
    ) -> int:
        if record.version_number:
            return record.version_number
        if not fresh:  # an earlier attempt may have written it before it was interrupted
            found = self._labelled(record.version_label)
            if found is not None:
                return self._adopt_version(record, found)
        content = document_bytes(rendered)
        description = _ascii(
            f"flagdash {spec.application_key}/{spec.environment_key} v{spec.version_number} "
            f"(deployment #{spec.deployment_id})"
            + (f": {spec.description}" if spec.description else "")
        )
        for _ in range(3):
            latest = self._latest_version()
            headers: dict[str, Any] = {}
            if latest is not None:
                if latest.get("VersionLabel") == record.version_label:
                    # An earlier request of this deployment was stored after all (its answer was
                    # lost, or it landed after a timeout): it is this deployment's version.
                    return self._adopt_version(record, int(latest["VersionNumber"]))
                if not self._ours(latest, record) and not spec.overwrite_drift:
                    raise self._drift(spec, latest)
                headers["LatestVersionNumber"] = int(latest["VersionNumber"])
            try:
                created = self.aws.call(
                    "CreateHostedConfigurationVersion",
                    self.profile_resource,
                    ApplicationId=self.application_id,
                    ConfigurationProfileId=self.profile_id,
                    Content=content,
                    ContentType="application/json",
                    Description=description,
                    VersionLabel=record.version_label,
                    **headers,
                )
            except _Conflict:
                continue  # a version was written meanwhile: look at it, then try again
            except TransientBackendError:
                # No answer (a timeout, a reset, a 5xx): AWS may have stored it all the same.
                found = self._labelled(record.version_label)
                if found is not None:
                    return self._adopt_version(record, found)
                raise
            return self._adopt_version(record, int(created["VersionNumber"]))
        raise TransientBackendError(
            f"New versions kept appearing in {self.profile_resource} while flagdash wrote one; "
            "flagdash tries again."
        )

    def _labelled(self, label: str) -> int | None:
        """The newest hosted version of the profile carrying ``label``, if any."""
        found = (
            self.aws.call(
                "ListHostedConfigurationVersions",
                self.profile_resource,
                ApplicationId=self.application_id,
                ConfigurationProfileId=self.profile_id,
                VersionLabel=label,
                MaxResults=50,
            ).get("Items")
            or []
        )
        return max((int(v["VersionNumber"]) for v in found), default=None)

    @staticmethod
    def _adopt_version(record: AwsAppConfigDeployment, number: int) -> int:
        record.version_number = number
        record.save(update_fields=["version_number"])
        return number

    def _latest_version(self) -> dict[str, Any] | None:
        """The profile's newest hosted version (AWS lists newest first; checked, not assumed)."""
        page = self.aws.call(
            "ListHostedConfigurationVersions",
            self.profile_resource,
            ApplicationId=self.application_id,
            ConfigurationProfileId=self.profile_id,
            MaxResults=50,
        )
        items = list(page.get("Items") or [])
        if (
            page.get("NextToken")
            and items
            and items[0]["VersionNumber"] < items[-1]["VersionNumber"]
        ):
            items = self.aws.pages(
                "ListHostedConfigurationVersions",
                self.profile_resource,
                ApplicationId=self.application_id,
                ConfigurationProfileId=self.profile_id,
            )
        return max(items, key=lambda v: int(v["VersionNumber"])) if items else None

    def _same_profile(self) -> Any:
        return AwsAppConfigDeployment.objects.filter(
            region=self.region,
            application_id=self.application_id,
            configuration_profile_id=self.profile_id,
        )

    def _ours(self, version: dict[str, Any], record: AwsAppConfigDeployment) -> bool:
        """Did flagdash write this version (for any flagdash environment sharing the profile)?

        A version labelled ``flagdash-d<id>`` for a deployment flagdash recorded in this profile
        is flagdash's, whichever its number: labels are written down before the version is
        created (a writer that died before recording the number), and a request repeated after
        a lost answer may have stored two versions with the deployment's label."""
        label = version.get("VersionLabel")
        if label and label == record.version_label:
            return True
        if label:
            return bool(
                FLAGDASH_LABEL.match(label)
                and self._same_profile().filter(version_label=label).exists()
            )
        return bool(
            self._same_profile().filter(version_number=int(version["VersionNumber"])).exists()
        )

    def _drift(self, spec: DeploymentSpec, latest: dict[str, Any]) -> DriftError:
        number = int(latest["VersionNumber"])
        ours = (
            AwsAppConfigDeployment.objects.filter(
                region=self.region,
                application_id=self.application_id,
                configuration_profile_id=self.profile_id,
                version_number__isnull=False,
            )
            .order_by("-version_number")
            .values_list("version_number", flat=True)
            .first()
        )
        who = f"label “{latest['VersionLabel']}”" if latest.get("VersionLabel") else "no label"
        note = f", “{latest['Description']}”" if latest.get("Description") else ""
        details = [
            f"hosted configuration version {number} ({who}{note}) was not written by flagdash"
        ]
        try:
            outside = self._version_content(number)
            baseline = render_document(spec.previous_document) if spec.previous_document else None
            details += _flag_changes(outside, baseline)
        except BackendError as exc:
            details.append(f"(its content could not be read: {exc.message})")
        since = f" (flagdash last wrote version {ours})" if ours else ""
        return DriftError(
            f"Someone changed the feature flags in {self.profile_resource} outside flagdash: its "
            f"latest version, {number}, was not written by flagdash{since}. Nothing was "
            "overwritten. Review the changes below; deploy again and choose to overwrite them if "
            "this version should replace them.",
            details=details,
        )

    def _version_content(self, number: int) -> dict[str, Any]:
        found = self.aws.call(
            "GetHostedConfigurationVersion",
            f"hosted configuration version {number} of {self.profile_resource}",
            ApplicationId=self.application_id,
            ConfigurationProfileId=self.profile_id,
            VersionNumber=number,
        )
        body: Any = found.get("Content")
        raw = body.read() if hasattr(body, "read") else body
        try:
            content: dict[str, Any] = json.loads(raw or b"{}")
        except ValueError:
            raise PermanentBackendError(
                f"Hosted configuration version {number} of {self.profile_resource} is not JSON."
            ) from None
        return content

    def _strategy_id(self, spec: DeploymentSpec) -> tuple[str, str]:
        """The AWS strategy id to deploy with, and its name (created once, then reused)."""
        name = str(spec.strategy.get("name") or "")
        parameters = strategy_parameters(spec)
        if name in PREDEFINED_STRATEGIES:
            return name, name
        aws_name = strategy_aws_name(name or "custom", parameters)
        existing = self._find_strategy(aws_name)
        if existing is not None:
            return existing, aws_name
        try:
            created = self.aws.call(
                "CreateDeploymentStrategy",
                f"deployment strategy {aws_name}",
                Name=aws_name,
                Description=_ascii(f"flagdash strategy “{name}” (created by flagdash; reused)"),
                ReplicateTo="NONE",
                **parameters,
            )
        except TransientBackendError:
            # No answer: AWS may have created it all the same (strategies count against a quota
            # of 20). Look again before anyone asks a second time.
            existing = self._find_strategy(aws_name)
            if existing is not None:
                return existing, aws_name
            raise
        logger.info("created AWS deployment strategy %s (%s)", aws_name, created["Id"])
        return str(created["Id"]), aws_name

    def _find_strategy(self, aws_name: str) -> str | None:
        for strategy in self.aws.pages("ListDeploymentStrategies", "deployment strategies"):
            if strategy.get("Name") == aws_name:
                return str(strategy["Id"])
        return None

    def _ensure_deployment(
        self, spec: DeploymentSpec, record: AwsAppConfigDeployment, version: int, now: dt.datetime
    ) -> StartResult:
        if record.aws_deployment_number is None and record.start_requested_at is not None:
            found = self._find_ours(record, version)  # an interrupted attempt may have started it
            if found is not None:
                record.aws_deployment_number = int(found["DeploymentNumber"])
                record.save(update_fields=["aws_deployment_number"])
        if record.aws_deployment_number is not None:
            number = record.aws_deployment_number
            return StartResult(
                self._backend_ref(number),
                self._data(number, "deploy", hosted_version=version),
                message=f"Continuing AWS deployment {number} of hosted version {version}",
            )
        strategy_id, strategy_name = self._strategy_id(spec)
        record.start_requested_at = now
        record.save(update_fields=["start_requested_at"])
        try:
            started = self.aws.call(
                "StartDeployment",
                self.env_resource,
                **self._ids(),
                DeploymentStrategyId=strategy_id,
                ConfigurationProfileId=self.profile_id,
                ConfigurationVersion=str(version),
                Description=_ascii(
                    f"flagdash deployment #{spec.deployment_id}: {spec.application_key}/"
                    f"{spec.environment_key} v{spec.version_number}"
                    + (f" - {spec.description}" if spec.description else "")
                ),
                Tags={"flagdash:deployment": str(spec.deployment_id)},
            )
        except _Conflict:
            items = self._deployments(pages=2)
            ours = next((i for i in items if self._is_ours(i, record, version)), None)
            if ours is not None:  # an earlier request of this deployment started it
                return self._adopt_deployment(record, ours, version)
            record.start_requested_at = None  # AWS started nothing
            record.save(update_fields=["start_requested_at"])
            running = next((i for i in items if i.get("State") in ACTIVE_AWS_STATES), None)
            if running is None:
                raise TransientBackendError(
                    f"AWS refused to start a deployment in {self.env_resource} because another "
                    "was running, but none is running now; flagdash tries again."
                ) from None
            raise self._busy(running) from None
        except TransientBackendError:
            # No answer (a timeout, a reset, a 5xx): AWS may have started it all the same.
            # ``start_requested_at`` stays set, so a later attempt looks again before starting.
            found = self._find_ours(record, version)
            if found is not None:
                return self._adopt_deployment(record, found, version)
            raise
        number = int(started["DeploymentNumber"])
        record.aws_deployment_number = number
        record.save(update_fields=["aws_deployment_number"])
        return StartResult(
            self._backend_ref(number),
            self._data(number, "deploy", hosted_version=version),
            message=(
                f"AWS deployment {number} started: hosted version {version} with {strategy_name}"
            ),
        )

    def _adopt_deployment(
        self, record: AwsAppConfigDeployment, found: dict[str, Any], version: int
    ) -> StartResult:
        number = int(found["DeploymentNumber"])
        record.aws_deployment_number = number
        record.save(update_fields=["aws_deployment_number"])
        return StartResult(
            self._backend_ref(number),
            self._data(number, "deploy", hosted_version=version),
            message=f"AWS deployment {number} of hosted version {version} was started",
        )

    def _busy(self, running: dict[str, Any]) -> BackendBusy:
        number = running["DeploymentNumber"]
        return BackendBusy(
            f"Waiting for deployment {number} in AWS to finish: AWS runs one deployment at a "
            f"time in {self.env_resource}, and flagdash did not start this one.",
            retry_in=BUSY_RETRY_SECONDS,
        )

    def _deployments(self, pages: int = 1) -> list[dict[str, Any]]:
        return self.aws.pages("ListDeployments", self.env_resource, limit=pages, **self._ids())

    def _is_ours(self, item: dict[str, Any], record: AwsAppConfigDeployment, version: int) -> bool:
        profile = item.get("ConfigurationProfileId")
        return (
            str(item.get("ConfigurationVersion")) == str(version)
            and item.get("VersionLabel") == record.version_label
            and (profile is None or profile == self.profile_id)
        )

    def _find_ours(self, record: AwsAppConfigDeployment, version: int) -> dict[str, Any] | None:
        for item in self._deployments(pages=2):
            if self._is_ours(item, record, version):
                return item
        return None

    # --- what the environment serves, and who deployed it ------------------------------------

    def _newest_first(self) -> list[dict[str, Any]]:
        return sorted(self._deployments(pages=2), key=lambda i: -int(i["DeploymentNumber"]))

    def _profile_of(self, item: dict[str, Any]) -> str:
        profile = item.get("ConfigurationProfileId")
        if profile is None:  # not in every listing: ask the deployment itself
            profile = self._get(int(item["DeploymentNumber"])).get("ConfigurationProfileId")
        return str(profile or "")

    def _hosted_versions_of(self, version_id: int | None) -> set[str]:
        """The hosted versions flagdash wrote to this profile for a flagdash version (any
        deployment of it, to any flagdash environment sharing the profile)."""
        if version_id is None:
            return set()
        from flagdash.deployments.models import Deployment

        deployments = Deployment.objects.filter(version_id=version_id).values("id")
        numbers = (
            self._same_profile()
            .filter(deployment_id__in=deployments, version_number__isnull=False)
            .values_list("version_number", flat=True)
        )
        return {str(n) for n in numbers}

    def _describe_hosted(self, hosted: str) -> str:
        """“hosted configuration version 7 (flagdash's v3, deployment #12)”, or no attribution."""
        row = (
            self._same_profile().filter(version_number=int(hosted)).first()
            if hosted.isdigit()
            else None
        )
        if row is None:
            return f"hosted configuration version {hosted}, not written by flagdash"
        from flagdash.deployments.models import Deployment

        found = (
            Deployment.objects.filter(pk=row.deployment_id)
            .values_list("version__number", flat=True)
            .first()
        )
        which = f"v{found}" if found is not None else "a version"
        return (
            f"hosted configuration version {hosted} (flagdash's {which}, deployment "
            f"#{row.deployment_id})"
        )

    def _check_served(self, spec: DeploymentSpec) -> None:
        """Raise DriftError if the environment's latest completed AWS deployment does not serve a
        hosted version flagdash wrote for the version it records as live (someone deployed in
        the console or with another tool since)."""
        served = None
        for item in self._newest_first():
            if item.get("State") == "COMPLETE" and self._profile_of(item) == self.profile_id:
                served = item
                break
        if served is None:
            return  # nothing deployed to this environment from the profile yet
        hosted = str(served.get("ConfigurationVersion") or "")
        if hosted in self._hosted_versions_of(spec.previous_version_id):
            return
        number = int(served["DeploymentNumber"])
        detail = self._get(number)
        started = detail.get("StartedAt")
        when = f", started {started:%Y-%m-%d %H:%M} UTC" if isinstance(started, dt.datetime) else ""
        note = f", “{detail['Description']}”" if detail.get("Description") else ""
        live = (
            f"v{spec.previous_version_number}"
            if spec.previous_version_number is not None
            else "nothing yet"
        )
        details = [
            f"AWS deployment {number} (complete{when}{note}) serves "
            f"{self._describe_hosted(hosted)}; flagdash's live version here is {live}"
        ]
        if hosted.isdigit():
            try:
                outside = self._version_content(int(hosted))
                baseline = (
                    render_document(spec.previous_document) if spec.previous_document else None
                )
                details += _flag_changes(outside, baseline)
            except BackendError as exc:
                details.append(f"(its content could not be read: {exc.message})")
        mine = (
            AwsAppConfigDeployment.objects.filter(
                region=self.region,
                application_id=self.application_id,
                environment_id=self.environment_id,
                aws_deployment_number=number,
            )
            .values_list("deployment_id", flat=True)
            .first()
        )
        if mine is None:
            headline = (
                f"Someone deployed in {self.env_resource} outside flagdash: AWS deployment "
                f"{number} serves hosted configuration version {hosted}"
            )
        else:  # flagdash's own, left live although flagdash did not record it as live
            headline = (
                f"AWS deployment {number} (flagdash deployment #{mine}) is live in "
                f"{self.env_resource} although flagdash did not record it as live: it serves "
                f"hosted configuration version {hosted}"
            )
        raise DriftError(
            f"{headline}, not what flagdash deployed last ({live}). Nothing was written. Review "
            "it in AWS; deploy again and choose to overwrite if this version should replace it.",
            details=details,
        )

    # --- reverts ----------------------------------------------------------------------------------

    def _revert_blocker(
        self, number: int, expected_version_id: int | None, *, check_previous: bool = True
    ) -> str:
        """Why AWS's revert of ``number`` would not bring back flagdash's version
        ``expected_version_id`` ("" when it would): AWS reverts only the environment's latest
        deployment, and it brings back whatever the profile's deployment before it served."""
        items = self._newest_first()
        newest = int(items[0]["DeploymentNumber"]) if items else number
        if newest != number:
            return f"AWS deployment {newest} came after it, and AWS reverts only the latest"
        if not check_previous:
            return ""
        before = next(
            (
                i
                for i in items
                if int(i["DeploymentNumber"]) < number and self._profile_of(i) == self.profile_id
            ),
            None,
        )
        if before is None:
            return "AWS has no earlier deployment of the profile to this environment to go back to"
        previous, state = int(before["DeploymentNumber"]), str(before.get("State"))
        hosted = str(before.get("ConfigurationVersion") or "")
        if state != "COMPLETE":
            return (
                f"the AWS deployment before it, {previous}, is {state.lower().replace('_', ' ')}, "
                "so it is not certain what AWS would bring back"
            )
        if hosted not in self._hosted_versions_of(expected_version_id):
            return (
                f"AWS would bring back what deployment {previous} served, "
                f"{self._describe_hosted(hosted)}, not flagdash's earlier version"
            )
        return ""

    def _try_revert(self, spec: DeploymentSpec, now: dt.datetime) -> StartResult | None:
        """Roll back a completed deployment with AWS's own revert, when AWS still allows it and
        it brings back exactly the version this restore deploys; None: deploy it instead."""
        data = spec.restores_backend_data
        same_target = (
            data.get("mode") == "deploy"
            and data.get("region") == self.region
            and data.get("application_id") == self.application_id
            and data.get("environment_id") == self.environment_id
            and data.get("configuration_profile_id") == self.profile_id
        )
        if not same_target or not isinstance(data.get("aws_deployment"), int):
            return None
        number = int(data["aws_deployment"])
        d = self._get(number)
        result = StartResult(
            self._backend_ref(number, "revert"),
            self._data(number, "revert", event_cursor=_cursor(d.get("EventLog") or [])),
            message=(
                f"Reverting AWS deployment {number} (Allow-Revert): AWS serves the version "
                "before it again"
            ),
        )
        state = d.get("State")
        completed = d.get("CompletedAt")
        if state == "COMPLETE" and not _revertible(completed, now):
            return None  # beyond AWS's 72 hours: deploy the earlier version instead
        if state not in ("COMPLETE", "REVERTED"):
            return None
        blocker = self._revert_blocker(number, spec.version_id)
        if blocker:
            logger.info("not reverting AWS deployment %s natively: %s", number, blocker)
            return None
        if state == "REVERTED":
            return result  # an interrupted attempt reverted it already
        try:
            self.aws.call(
                "StopDeployment",
                self._deployment_resource(number),
                **self._ids(),
                DeploymentNumber=number,
                AllowRevert=True,
            )
        except PermanentBackendError as exc:
            logger.info("AWS would not revert deployment %s (%s); deploying instead", number, exc)
            return None
        return result

    # --- status ---------------------------------------------------------------------------------

    def _get(self, number: int) -> dict[str, Any]:
        return self.aws.call(
            "GetDeployment",
            self._deployment_resource(number),
            **self._ids(),
            DeploymentNumber=number,
        )

    def _number(self, spec: DeploymentSpec) -> int:
        number = spec.backend_data.get("aws_deployment")
        if isinstance(number, int):
            return number
        match = re.match(r"^appconfig:[^/]+/[^/]+/(\d+)", spec.backend_ref)
        if not match:
            raise PermanentBackendError(
                f"flagdash cannot tell which AWS deployment “{spec.backend_ref}” is."
            )
        return int(match.group(1))

    def status(self, spec: DeploymentSpec, now: dt.datetime) -> RolloutStatus:
        number = self._number(spec)
        d = self._get(number)
        data = dict(spec.backend_data)
        log = list(d.get("EventLog") or [])
        events, cursor = _new_events(log, data.get("event_cursor"))
        data["event_cursor"] = cursor
        aws_state = str(d.get("State"))
        if data.get("mode") == "revert":
            state: RolloutState = "complete" if aws_state == "REVERTED" else "deploying"
            return RolloutStatus(
                state,
                100.0 if state == "complete" else 0.0,
                next_check_in=None if state == "complete" else LATE_STEP_RECHECK_SECONDS,
                events=events,
                backend_data=data,
            )
        state = STATE_MAP.get(aws_state, "deploying")
        percentage = float(d.get("PercentageComplete") or 0.0)
        if state == "complete":
            percentage = 100.0
        rolled_back_by, message = "", ""
        if state in ("rolling_back", "rolled_back"):
            rolled_back_by, message = _rollback_cause(number, log)
        return RolloutStatus(
            state,
            percentage,
            next_check_in=_next_check(d, now),
            events=events,
            message=message,
            rolled_back_by=rolled_back_by,
            backend_data=data,
        )

    # --- stop -----------------------------------------------------------------------------------

    def _started_number(self, spec: DeploymentSpec) -> int | None:
        """The AWS deployment of this flagdash deployment, even if the engine never recorded it
        (a worker died between StartDeployment and recording); None if AWS started nothing."""
        if spec.backend_ref or isinstance(spec.backend_data.get("aws_deployment"), int):
            return self._number(spec)
        record = AwsAppConfigDeployment.objects.filter(deployment_id=spec.deployment_id).first()
        if record is None or (
            record.aws_deployment_number is None and record.start_requested_at is None
        ):
            return None
        if record.aws_deployment_number is not None:
            return int(record.aws_deployment_number)
        found = self._find_ours(record, record.version_number or 0)
        return int(found["DeploymentNumber"]) if found is not None else None

    def stop(self, spec: DeploymentSpec, now: dt.datetime) -> RolloutStatus:
        started = self._started_number(spec)
        if started is None:  # AWS started nothing for this deployment: nothing to stop
            return RolloutStatus("rolled_back", 0.0)
        number = started
        data = dict(spec.backend_data)
        if data.get("mode") == "revert":
            raise PermanentBackendError(
                f"AWS already reverted deployment {number}, and a revert cannot be undone: deploy "
                "the version you want again."
            )
        d = self._get(number)
        state = str(d.get("State"))
        if state in IN_PROGRESS_AWS_STATES:
            d = self._stop_in_progress(number, d, spec, now)
        elif state == "COMPLETE":
            d = self._revert_completed(number, d, spec, now)
        state = str(d.get("State") or "ROLLED_BACK")
        log = list(d.get("EventLog") or [])
        events, cursor = _new_events(log, data.get("event_cursor"))
        data["event_cursor"] = cursor
        if state == "ROLLING_BACK":
            return RolloutStatus(
                "rolling_back",
                float(d.get("PercentageComplete") or 0.0),
                next_check_in=LATE_STEP_RECHECK_SECONDS,
                events=events,
                backend_data=data,
            )
        return RolloutStatus("rolled_back", 0.0, events=events, backend_data=data)

    def _stop_call(self, number: int, *, allow_revert: bool) -> dict[str, Any]:
        return self.aws.call(
            "StopDeployment",
            self._deployment_resource(number),
            **self._ids(),
            DeploymentNumber=number,
            **({"AllowRevert": True} if allow_revert else {}),
        )

    def _stop_in_progress(
        self,
        number: int,
        d: dict[str, Any],
        spec: DeploymentSpec,
        now: dt.datetime,
        *,
        again: bool = True,
    ) -> dict[str, Any]:
        """StopDeployment for a deployment still in progress.

        AWS stops a DEPLOYING deployment as asked, but one that is BAKING (or VALIDATING) only
        with ``Allow-Revert`` ("works only on deployments that have a status of DEPLOYING,
        unless an AllowRevert parameter is supplied"), and it rolls it back. If AWS refuses
        anyway, its state moved on meanwhile: it is read again and the stop decided anew (a
        deployment that completed is reverted while AWS allows it)."""
        state = str(d.get("State"))
        try:
            return self._stop_call(number, allow_revert=state != "DEPLOYING")
        except (_BadRequest, _Conflict) as exc:
            fresh = self._get(number)
            now_state = str(fresh.get("State"))
            if now_state in ("ROLLING_BACK", "ROLLED_BACK", "REVERTED"):
                return fresh  # stopped meanwhile (by an alarm, by someone, by our lost request)
            if now_state == "COMPLETE":
                return self._revert_completed(number, fresh, spec, now)
            if again and now_state != state and now_state in IN_PROGRESS_AWS_STATES:
                return self._stop_in_progress(number, fresh, spec, now, again=False)
            if isinstance(exc, _Conflict):
                raise
            raise PermanentBackendError(
                f"AWS refused to stop deployment {number} while it is "
                f"{now_state.lower().replace('_', ' ')}: {exc.message}"
            ) from None

    def _revert_completed(
        self, number: int, d: dict[str, Any], spec: DeploymentSpec, now: dt.datetime
    ) -> dict[str, Any]:
        """Stop a deployment that completed before flagdash could stop it: AWS's revert, within
        its window and only if it brings back flagdash's previous version."""
        if not _revertible(d.get("CompletedAt"), now):
            raise PermanentBackendError(
                f"AWS deployment {number} completed before flagdash could stop it, more than "
                f"{_window_text()} ago, and AWS can no longer revert it. Roll back to the "
                "earlier version from the versions page."
            )
        blocker = self._revert_blocker(
            number, spec.previous_version_id, check_previous=spec.previous_version_id is not None
        )
        if blocker:
            raise PermanentBackendError(
                f"AWS deployment {number} completed before flagdash could stop it, and AWS's "
                f"revert cannot be used: {blocker}. Roll back to the earlier version from the "
                "versions page."
            )
        return self._stop_call(number, allow_revert=True)

    # --- what AWS serves ------------------------------------------------------------------------

    def current(self, application_key: str, environment_key: str) -> dict[str, Any] | None:
        """The document of the environment's latest completed deployment of our profile."""
        items = sorted(self._deployments(pages=4), key=lambda i: -int(i["DeploymentNumber"]))
        for item in items:
            if item.get("State") != "COMPLETE":
                continue
            profile = item.get("ConfigurationProfileId")
            if profile is None:
                profile = self._get(int(item["DeploymentNumber"])).get("ConfigurationProfileId")
            if profile != self.profile_id:
                continue
            content = self._version_content(int(item["ConfigurationVersion"]))
            return parse_document(content, application_key, environment_key)
        return None

    # --- settings page --------------------------------------------------------------------------

    def monitors(self) -> list[str]:
        """The CloudWatch alarms (ARNs) that roll back deployments to this environment."""
        env = self.aws.call("GetEnvironment", self.env_resource, **self._ids())
        return [str(m["AlarmArn"]) for m in env.get("Monitors") or [] if m.get("AlarmArn")]

    def check(self) -> CheckResult:
        """Reach the application, the profile and the environment; list what was verified."""
        verified: list[str] = []
        try:
            app = self.aws.call(
                "GetApplication", self.app_resource, ApplicationId=self.application_id
            )
            verified.append(f"Application {app['Id']} “{app.get('Name', '')}” in {self.region}")
            profile = self.aws.call(
                "GetConfigurationProfile",
                self.profile_resource,
                ApplicationId=self.application_id,
                ConfigurationProfileId=self.profile_id,
            )
            if profile.get("Type") != FEATURE_FLAGS or profile.get("LocationUri") != HOSTED:
                return CheckResult(
                    False,
                    f"Configuration profile {self.profile_id} “{profile.get('Name', '')}” is of "
                    "type "
                    f"{profile.get('Type') or 'AWS.Freeform'} stored at "
                    f"{profile.get('LocationUri')}; flagdash needs a hosted profile of type "
                    f"{FEATURE_FLAGS}. Choose another profile, or create one from the settings "
                    "page.",
                    verified,
                )
            verified.append(
                f"Configuration profile {profile['Id']} “{profile.get('Name', '')}”: "
                f"{FEATURE_FLAGS}, hosted"
            )
            env = self.aws.call("GetEnvironment", self.env_resource, **self._ids())
            verified.append(
                f"Environment {env['Id']} “{env.get('Name', '')}”: "
                f"{str(env.get('State', '')).lower().replace('_', ' ')}"
            )
            alarms = [str(m.get("AlarmArn")) for m in env.get("Monitors") or []]
            verified.append(
                "CloudWatch monitors: "
                + (", ".join(alarms) if alarms else "none (AWS will not roll back on its own)")
            )
            self.aws.call(
                "ListHostedConfigurationVersions",
                self.profile_resource,
                ApplicationId=self.application_id,
                ConfigurationProfileId=self.profile_id,
                MaxResults=1,
            )
            verified.append("Hosted configuration versions can be listed")
            self.aws.call("ListDeployments", self.env_resource, **self._ids(), MaxResults=1)
            verified.append("Deployments can be listed")
        except BackendError as exc:
            details = [*verified, *getattr(exc, "details", [])]
            return CheckResult(False, exc.message, details)
        except Exception as exc:  # "test connection" reports, never raises
            logger.exception("AWS AppConfig connection check failed unexpectedly")
            return CheckResult(False, f"The check failed unexpectedly: {exc!r}", verified)
        return CheckResult(
            True,
            f"Connected to AWS AppConfig in {self.region}: flagdash can deploy to environment "
            f"“{env.get('Name', self.environment_id)}”.",
            verified,
        )


# --- events, schedule ----------------------------------------------------------------------------


def _revertible(completed: Any, now: dt.datetime) -> bool:
    """Is a deployment that completed at ``completed`` still inside AWS's revert window, with
    flagdash's margin? (The same rule for a restore and for stopping a completed deployment.)"""
    return isinstance(completed, dt.datetime) and now - completed <= REVERT_WINDOW - REVERT_MARGIN


def _window_text() -> str:
    return f"{(REVERT_WINDOW - REVERT_MARGIN).total_seconds() / 3600:g} hours"


def _event_time(event: dict[str, Any]) -> dt.datetime:
    at = event.get("OccurredAt")
    return at if isinstance(at, dt.datetime) else dt.datetime.min.replace(tzinfo=dt.UTC)


def _cursor(log: list[dict[str, Any]]) -> dict[str, Any]:
    """A cursor past every event of ``log``."""
    _, cursor = _new_events(log, None)
    return cursor


def _new_events(
    log: list[dict[str, Any]], cursor: dict[str, Any] | None
) -> tuple[list[BackendEvent], dict[str, Any]]:
    """The events not reported yet, oldest first, and the cursor after them.

    The cursor is the time of the last reported event and how many events at that very time
    were reported (AWS's log only grows, so this survives the log being truncated at its old
    end)."""
    ordered = sorted(enumerate(log), key=lambda p: (_event_time(p[1]), -p[0]))  # AWS: newest first
    last_at = cursor.get("at") if cursor else None
    seen_at_last = int(cursor.get("n", 0)) if cursor else 0
    last = dt.datetime.fromisoformat(last_at) if last_at else None
    fresh: list[BackendEvent] = []
    same_time = 0
    new_last, new_count = last, seen_at_last
    for _, event in ordered:
        at = _event_time(event)
        if last is not None and at < last:
            continue
        if last is not None and at == last:
            same_time += 1
            if same_time <= seen_at_last:
                continue
        fresh.append(_backend_event(event))
        if new_last is None or at > new_last:
            new_last, new_count = at, 1
        else:
            new_count += 1
    return fresh, {"at": new_last.isoformat() if new_last else None, "n": new_count}


def _backend_event(event: dict[str, Any]) -> BackendEvent:
    kind = str(event.get("EventType") or "EVENT")
    description = str(event.get("Description") or "")
    percentage = None
    if kind == "PERCENTAGE_UPDATED":
        found = re.search(r"(\d+(?:\.\d+)?)\s*%", description)
        percentage = float(found.group(1)) if found else None
    trigger = str(event.get("TriggeredBy") or "APPCONFIG").lower().replace("_", " ")
    return BackendEvent(
        occurred_at=_event_time(event),
        kind=f"AWS {kind.lower().replace('_', ' ')}",
        message=description,
        triggered_by=f"AWS ({trigger})",
        percentage=percentage,
    )


def _rollback_cause(number: int, log: list[dict[str, Any]]) -> tuple[str, str]:
    """Who rolled the deployment back in AWS: ``alarm:<name>`` for a CloudWatch alarm."""
    started = [e for e in log if e.get("EventType") == "ROLLBACK_STARTED"]
    if not started:
        return "AWS", f"AWS rolled deployment {number} back."
    event = max(started, key=_event_time)
    trigger = event.get("TriggeredBy")
    description = str(event.get("Description") or "")
    if trigger == "CLOUDWATCH_ALARM":
        found = ALARM_ARN.search(description)
        name = found.group("name") if found else description.split(":")[-1].strip()
        name = name or "CloudWatch alarm"
        return (
            f"alarm:{name}",
            f"AWS rolled deployment {number} back: CloudWatch alarm {name} fired ({description}).",
        )
    if trigger == "USER":
        return (
            "stopped in AWS (outside flagdash)",
            f"Deployment {number} was stopped in AWS outside flagdash ({description}).",
        )
    if trigger == "INTERNAL_ERROR":
        return "AWS internal error", f"AWS rolled deployment {number} back after an internal error."
    return "AWS", f"AWS rolled deployment {number} back ({description})."


def _next_check(d: dict[str, Any], now: dt.datetime) -> float | None:
    """When to look again: just after AWS's next step while deploying, at the end of the bake,
    but never later than ``ALARM_NOTICE_SECONDS`` while AWS could still roll back on an alarm."""
    state = d.get("State")
    if state in ("ROLLING_BACK", "VALIDATING"):
        return LATE_STEP_RECHECK_SECONDS
    if state not in ("DEPLOYING", "BAKING"):
        return None
    started = d.get("StartedAt")
    if not isinstance(started, dt.datetime):
        return ALARM_NOTICE_SECONDS
    try:
        plan = RolloutPlan(
            duration_seconds=int(d.get("DeploymentDurationInMinutes") or 0) * 60,
            growth_type=EXPONENTIAL if d.get("GrowthType") == "EXPONENTIAL" else LINEAR,
            growth_factor=float(d.get("GrowthFactor") or 100),
            final_bake_seconds=int(d.get("FinalBakeTimeInMinutes") or 0) * 60,
        )
    except ValueError:
        return ALARM_NOTICE_SECONDS
    point = plan.at((now - started).total_seconds())
    reported = float(d.get("PercentageComplete") or 0.0)
    behind = (
        (state == "DEPLOYING" and reported < point.percentage)
        or (state == "DEPLOYING" and point.state != "deploying")
        or (state == "BAKING" and point.state == "complete")
    )
    if behind:
        return LATE_STEP_RECHECK_SECONDS  # AWS has not caught up with its schedule yet
    wait = (point.next_change_in or 0.0) + STEP_SLACK_SECONDS
    return min(wait, ALARM_NOTICE_SECONDS)


# --- "Create in AWS" ---------------------------------------------------------------------------


def provision(
    *,
    region: str,
    endpoint_url: str,
    application_name: str,
    profile_name: str,
    environment_name: str,
    application_id: str = "",
    configuration_profile_id: str = "",
) -> dict[str, str]:
    """Create in AWS what is missing and return the connection's options.

    The application (unless ``application_id`` is given), a hosted ``AWS.AppConfig.FeatureFlags``
    profile (unless ``configuration_profile_id`` is given) and the environment. An existing
    resource with the same name is reused rather than duplicated; a given or found profile of
    another type is refused. Raises ``PermanentBackendError`` / ``TransientBackendError``.
    """
    aws = _Aws(region, endpoint_url)
    app_id = application_id.strip()
    if app_id:
        aws.call("GetApplication", f"application {app_id} ({region})", ApplicationId=app_id)
    else:
        app_id = _find_or_create(
            aws,
            "ListApplications",
            "CreateApplication",
            f"application “{application_name}” ({region})",
            application_name,
            {},
            {"Name": application_name, "Description": "Feature flags managed by flagdash"},
        )
    app_resource = f"application {app_id} ({region})"
    profile_id = configuration_profile_id.strip()
    if profile_id:
        profile = aws.call(
            "GetConfigurationProfile",
            f"configuration profile {profile_id} of {app_resource}",
            ApplicationId=app_id,
            ConfigurationProfileId=profile_id,
        )
        _require_feature_flags(profile)
    else:
        profile_id = _find_or_create(
            aws,
            "ListConfigurationProfiles",
            "CreateConfigurationProfile",
            f"configuration profile “{profile_name}” in {app_resource}",
            profile_name,
            {"ApplicationId": app_id},
            {
                "ApplicationId": app_id,
                "Name": profile_name,
                "LocationUri": HOSTED,
                "Type": FEATURE_FLAGS,
                "Description": "Feature flags deployed by flagdash",
            },
            check=_require_feature_flags,
        )
    env_id = _find_or_create(
        aws,
        "ListEnvironments",
        "CreateEnvironment",
        f"environment “{environment_name}” in {app_resource}",
        environment_name,
        {"ApplicationId": app_id},
        {"ApplicationId": app_id, "Name": environment_name, "Description": "Created by flagdash"},
    )
    return {
        "region": region,
        "application_id": app_id,
        "configuration_profile_id": profile_id,
        "environment_id": env_id,
        "endpoint_url": endpoint_url,
    }


def _find_or_create(
    aws: _Aws,
    list_operation: str,
    create_operation: str,
    resource: str,
    name: str,
    list_args: dict[str, Any],
    create_args: dict[str, Any],
    check: Callable[[dict[str, Any]], None] | None = None,
) -> str:
    """The id of the resource named ``name``, created if there is none. A create whose answer
    is lost (a timeout, a reset, a 5xx) may have been carried out: it is looked for again
    before the error is reported, and the next "Create in AWS" finds it by name too."""

    def find() -> str | None:
        for item in aws.pages(list_operation, resource, **list_args):
            if item.get("Name") == name:
                if check is not None:
                    check(item)
                return str(item["Id"])
        return None

    found = find()
    if found is not None:
        return found
    try:
        return str(aws.call(create_operation, resource, **create_args)["Id"])
    except TransientBackendError:
        found = find()
        if found is not None:
            return found
        raise


def _require_feature_flags(profile: dict[str, Any]) -> None:
    if profile.get("Type") != FEATURE_FLAGS or profile.get("LocationUri") != HOSTED:
        raise PermanentBackendError(
            f"Configuration profile {profile.get('Id')} “{profile.get('Name', '')}” is of type "
            f"{profile.get('Type') or 'AWS.Freeform'} stored at {profile.get('LocationUri')}; "
            f"flagdash needs a hosted profile of type {FEATURE_FLAGS}. Give another name to "
            "create a new one."
        )
