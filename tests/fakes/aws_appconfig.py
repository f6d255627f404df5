"""A wire-level fake of AWS AppConfig's control plane, for tests.

An HTTP server on 127.0.0.1 (a free port) speaking AppConfig's REST-JSON protocol for every call
flagdash makes, so boto3 talks to it unchanged (``endpoint_url``) and raises its real exception
classes:

- every request must carry a valid SigV4 signature (``AWS4-HMAC-SHA256``, service ``appconfig``):
  the fake recomputes it with the secret key it was given and answers 403
  ``UnrecognizedClientException`` for an unknown key, ``InvalidSignatureException`` for a wrong
  signature, as AWS does;
- it keeps applications, environments (with CloudWatch monitors), configuration profiles, hosted
  configuration versions (``Latest-Version-Number`` → 409, ``VersionLabel``, the feature-flag
  document checked against AWS's published rules → 400 ``InvalidConfiguration``), deployment
  strategies (the predefined ``AppConfig.*`` ones and created ones) and deployments;
- one deployment at a time per environment (409 ``ConflictException``); a deployment advances by
  its strategy (linear or exponential steps spread over the duration, then the final bake) on
  ``clock``, which the test moves (``fake.clock.advance(seconds)``) or lets run at a speed;
- ``set_alarm(arn, "ALARM")`` while a deployment to an environment monitoring that alarm is
  deploying or baking rolls it back by itself (ROLLBACK_STARTED / ROLLBACK_COMPLETED, TriggeredBy
  CLOUDWATCH_ALARM), like AWS;
- StopDeployment, as AWS's API reference has it, "works only on deployments that have a status
  of DEPLOYING, unless an AllowRevert parameter is supplied": without ``Allow-Revert: true`` a
  BAKING or VALIDATING deployment is refused (400 BadRequestException); with it an in-progress
  deployment is ROLLED_BACK and a completed one REVERTED — only the environment's latest and
  only within 72 hours of its completion;
- ``calls`` counts requests per operation; ``fail_next``, ``slow`` and ``deny`` inject throttling
  (optionally with ``Retry-After``), 5xx, slow answers and AccessDenied; ``lose_answer`` carries
  a request out and then loses the answer (the connection is reset, or the answer comes after the
  client's read timeout), as when AWS processed a request whose response never arrived.

Errors have AWS's shape: the ``x-amzn-errortype`` header and a JSON body with ``Message``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import math
import re
import secrets
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

ACCOUNT = "123456789012"
ACCESS_KEY = "AKIAFLAGDASHTEST0001"
SECRET_KEY = "fake/Secret+Key/For/Tests/Only/0000000000"
FEATURE_FLAGS = "AWS.AppConfig.FeatureFlags"
REVERT_WINDOW = dt.timedelta(hours=72)
MAX_DOCUMENT_BYTES = 1024 * 1024
SIGNATURE_SKEW = dt.timedelta(minutes=15)
ACTIVE = ("DEPLOYING", "BAKING", "VALIDATING", "ROLLING_BACK")

# name, duration (min), growth type, growth factor, final bake (min) — as AWS publishes them
PREDEFINED = {
    "AppConfig.AllAtOnce": (0, "LINEAR", 100.0, 10),
    "AppConfig.Linear50PercentEvery30Seconds": (1, "LINEAR", 50.0, 1),
    "AppConfig.Canary10Percent20Minutes": (20, "EXPONENTIAL", 10.0, 10),
    "AppConfig.Linear20PercentEvery6Minutes": (30, "LINEAR", 20.0, 30),
}
KEY = re.compile(r"^[a-z][a-zA-Z\d_-]{0,63}$")
NAME = re.compile(r"^[^\n]{1,64}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


def _epoch(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def new_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(7))


class FakeClock:
    """The fake's idea of now: a start time plus what the test moved it by, plus (optionally)
    real time elapsed × ``speed`` (a worker test lets AWS's minutes pass in fractions of a
    second)."""

    def __init__(self, start: dt.datetime | None = None, speed: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._start = _utc(start or dt.datetime.now(dt.UTC))
        self._offset = dt.timedelta()
        self._speed = speed
        self._real_start = time.monotonic()

    def now(self) -> dt.datetime:
        with self._lock:
            running = dt.timedelta(seconds=(time.monotonic() - self._real_start) * self._speed)
            return self._start + self._offset + running

    def advance(self, seconds: float) -> dt.datetime:
        with self._lock:
            self._offset += dt.timedelta(seconds=seconds)
        return self.now()

    def set(self, when: dt.datetime) -> None:
        """Move to ``when`` (never backwards)."""
        with self._lock:
            running = dt.timedelta(seconds=(time.monotonic() - self._real_start) * self._speed)
            target = _utc(when) - self._start - running
            self._offset = max(self._offset, target)

    def set_speed(self, speed: float) -> None:
        with self._lock:
            now_running = dt.timedelta(seconds=(time.monotonic() - self._real_start) * self._speed)
            self._offset += now_running
            self._real_start = time.monotonic()
            self._speed = speed


class AwsError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.retry_after: float | None = None


def bad_request(message: str, **extra: Any) -> AwsError:
    return AwsError(400, "BadRequestException", message, **extra)


def not_found(message: str, resource: str = "") -> AwsError:
    extra = {"ResourceName": resource} if resource else {}
    return AwsError(404, "ResourceNotFoundException", message, **extra)


@dataclass
class Fault:
    status: int
    code: str
    message: str
    times: int
    delay: float = 0.0
    retry_after: float | None = None
    lose: str = ""  # "reset" or "timeout": carry the request out, then lose the answer


@dataclass
class Event:
    type: str
    triggered_by: str
    description: str
    at: dt.datetime

    def wire(self) -> dict[str, Any]:
        return {
            "EventType": self.type,
            "TriggeredBy": self.triggered_by,
            "Description": self.description,
            "ActionInvocations": [],
            "OccurredAt": _epoch(self.at),
        }


def step_percentages(growth_type: str, factor: float, duration: int) -> list[float]:
    """AWS's steps: linear ``factor`` % each, or exponential ``factor·2^n`` %, ending at 100."""
    if duration == 0:
        return [100.0]
    values: list[float] = []
    if growth_type == "LINEAR":
        count = math.ceil(100 / factor - 1e-9)
        values = [min(100.0, factor * (n + 1)) for n in range(count)]
    else:
        n = 0
        while not values or values[-1] < 100:
            values.append(min(100.0, factor * 2**n))
            n += 1
    values[-1] = 100.0
    return values


@dataclass
class Deployment:
    number: int
    application_id: str
    environment_id: str
    profile: dict[str, Any]
    strategy: dict[str, Any]
    version: str
    version_label: str | None
    description: str
    started_at: dt.datetime
    state: str = "DEPLOYING"
    percentage: float = 0.0
    completed_at: dt.datetime | None = None
    events: list[Event] = field(default_factory=list)
    steps_done: int = 0
    rollback_done_at: dt.datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def duration(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.strategy["DeploymentDurationInMinutes"])

    @property
    def bake(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.strategy["FinalBakeTimeInMinutes"])

    def percentages(self) -> list[float]:
        return step_percentages(
            self.strategy["GrowthType"],
            self.strategy["GrowthFactor"],
            self.strategy["DeploymentDurationInMinutes"],
        )

    def step_times(self) -> list[dt.datetime]:
        count = len(self.percentages())
        interval = self.duration / count
        return [self.started_at + interval * n for n in range(count)]

    def wire(self, *, summary: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "DeploymentNumber": self.number,
            "ConfigurationProfileId": self.profile["Id"],
            "ConfigurationName": self.profile["Name"],
            "ConfigurationVersion": self.version,
            "DeploymentDurationInMinutes": self.strategy["DeploymentDurationInMinutes"],
            "GrowthType": self.strategy["GrowthType"],
            "GrowthFactor": self.strategy["GrowthFactor"],
            "FinalBakeTimeInMinutes": self.strategy["FinalBakeTimeInMinutes"],
            "State": self.state,
            "StartedAt": _epoch(self.started_at),
            "Type": "USER",
        }
        if self.percentage >= 1:
            body["PercentageComplete"] = self.percentage
        if self.completed_at is not None:
            body["CompletedAt"] = _epoch(self.completed_at)
        if self.version_label:
            body["VersionLabel"] = self.version_label
        if summary:
            return body
        body.update(
            {
                "ApplicationId": self.application_id,
                "EnvironmentId": self.environment_id,
                "DeploymentStrategyId": self.strategy["Id"],
                "ConfigurationLocationUri": self.profile["LocationUri"],
                "Description": self.description,
                # AWS lists the newest event first
                "EventLog": [e.wire() for e in sorted(self.events, key=lambda e: e.at)][::-1],
                "AppliedExtensions": [],
            }
        )
        return body


# --- the feature-flag document rules (AWS's published JSON schema, as checks) -----------------


def _item(location: str, reason: str, *, constraint: str = "", value: Any = None) -> dict[str, str]:
    item = {"Location": location, "Reason": reason, "Type": "InvalidConfiguration"}
    if constraint:
        item["Constraint"] = constraint
    if value is not None:
        item["Value"] = value if isinstance(value, str) else json.dumps(value)
    return item


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_constraint(c: Any, where: str, *, element: bool = False) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    if not isinstance(c, dict) or "type" not in c:
        return [_item(where, "constraints must be an object with a type")]
    kinds = ("string", "number") if element else ("string", "number", "array", "boolean")
    allowed = {
        "string": {"type", "required", "pattern", "enum"},
        "number": {"type", "required", "minimum", "maximum"},
        "array": {"type", "required", "elements"},
        "boolean": {"type", "required"},
    }
    kind = c["type"]
    if kind not in kinds:
        return [_item(where, f"unknown constraint type {kind!r}", constraint="type", value=kind)]
    for key in set(c) - allowed[kind]:
        problems.append(_item(f"{where}/{key}", f"{key} is not allowed for type {kind}"))
    if "required" in c and not isinstance(c["required"], bool):
        problems.append(_item(f"{where}/required", "required must be a boolean"))
    if kind == "string":
        if "pattern" in c and "enum" in c:
            problems.append(_item(where, "pattern and enum cannot both be given"))
        if "pattern" in c:
            pattern = c["pattern"]
            if not isinstance(pattern, str) or len(pattern) > 1024:
                problems.append(
                    _item(f"{where}/pattern", "pattern must be at most 1024 characters")
                )
            else:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    problems.append(_item(f"{where}/pattern", f"invalid regular expression: {exc}"))
        if "enum" in c:
            enum = c["enum"]
            if not isinstance(enum, list) or len(enum) > 100:
                problems.append(_item(f"{where}/enum", "enum must be a list of at most 100 items"))
            elif not all((isinstance(v, str) and len(v) <= 1024) or _is_integer(v) for v in enum):
                problems.append(
                    _item(f"{where}/enum", "enum items must be strings (≤1024) or integers")
                )
    elif kind == "number":
        for bound in ("minimum", "maximum"):
            if bound in c and not _is_integer(c[bound]):
                problems.append(_item(f"{where}/{bound}", f"{bound} must be an integer"))
    elif kind == "array" and "elements" in c:
        problems += _check_constraint(c["elements"], f"{where}/elements", element=True)
    return problems


def _value_problems(
    value: Any, constraint: dict[str, Any] | None, where: str
) -> list[dict[str, str]]:
    """An attribute value: the schema's types, then the attribute's constraint."""
    if isinstance(value, str):
        if len(value) > 1024:
            return [_item(where, "string values are at most 1024 characters", value=value[:64])]
    elif isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            if any(len(v) > 1024 for v in value):
                return [_item(where, "string values are at most 1024 characters")]
        elif not all(_is_number(v) for v in value):
            return [_item(where, "arrays hold only strings or only numbers", value=value)]
    elif not (_is_number(value) or isinstance(value, bool)):
        return [_item(where, "not a string, number, boolean or array", value=value)]
    if not constraint:
        return []
    kind = constraint.get("type")
    expected = {
        "string": lambda v: isinstance(v, str),
        "number": _is_number,
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
    }.get(kind, lambda v: True)
    if not expected(value):
        return [_item(where, f"value must be of type {kind}", constraint="type", value=value)]
    items = value if kind == "array" else [value]
    element = constraint.get("elements") if kind == "array" else constraint
    problems: list[dict[str, str]] = []
    if not element:
        return problems
    for item in items:
        if element.get("type") == "string":
            if not isinstance(item, str):
                problems.append(_item(where, "elements must be strings", value=item))
                continue
            if "pattern" in element and not re.search(element["pattern"], item):
                problems.append(
                    _item(
                        where,
                        f"value does not match pattern {element['pattern']}",
                        constraint="pattern",
                        value=item,
                    )
                )
            if "enum" in element and item not in element["enum"]:
                problems.append(
                    _item(where, "value is not one of the enum", constraint="enum", value=item)
                )
        elif element.get("type") == "number":
            if not _is_number(item):
                problems.append(_item(where, "elements must be numbers", value=item))
                continue
            if "minimum" in element and item < element["minimum"]:
                problems.append(
                    _item(
                        where,
                        f"value is below the minimum {element['minimum']}",
                        constraint="minimum",
                        value=item,
                    )
                )
            if "maximum" in element and item > element["maximum"]:
                problems.append(
                    _item(
                        where,
                        f"value is above the maximum {element['maximum']}",
                        constraint="maximum",
                        value=item,
                    )
                )
    return problems


def feature_flag_problems(document: Any) -> list[dict[str, str]]:
    """What AWS would list under ``Details.InvalidConfiguration`` for this document."""
    if not isinstance(document, dict):
        return [_item("/", "the document must be a JSON object")]
    problems: list[dict[str, str]] = []
    for key in set(document) - {"version", "flags", "values"}:
        problems.append(_item(f"/{key}", "additional properties are not allowed"))
    if document.get("version") != "1":
        problems.append(
            _item("/version", 'version must be the string "1"', value=document.get("version"))
        )
    flags = document.get("flags", {})
    values = document.get("values", {})
    if not isinstance(flags, dict) or not isinstance(values, dict):
        return [*problems, _item("/", "flags and values must be objects")]
    for key, flag in flags.items():
        where = f"/flags/{key}"
        if not KEY.match(key):
            problems.append(_item(where, "flag key does not match ^[a-z][a-zA-Z\\d_-]{0,63}$"))
        if not isinstance(flag, dict):
            problems.append(_item(where, "a flag definition must be an object"))
            continue
        allowed = {"name", "description", "_createdAt", "_updatedAt", "_deprecation", "attributes"}
        for extra in set(flag) - allowed:
            problems.append(_item(f"{where}/{extra}", "additional properties are not allowed"))
        if "name" in flag and not (isinstance(flag["name"], str) and NAME.match(flag["name"])):
            problems.append(_item(f"{where}/name", "name must be 1–64 characters, one line"))
        description = flag.get("description", "")
        if not isinstance(description, str) or len(description) > 1024:
            problems.append(_item(f"{where}/description", "description is at most 1024 characters"))
        deprecation = flag.get("_deprecation")
        if deprecation is not None and (
            not isinstance(deprecation, dict)
            or set(deprecation) - {"status", "date"}
            or deprecation.get("status", "planned") != "planned"
            or ("date" in deprecation and not DATE.match(str(deprecation["date"])))
        ):
            problems.append(_item(f"{where}/_deprecation", "status planned and a YYYY-MM-DD date"))
        attributes = flag.get("attributes", {})
        if not isinstance(attributes, dict):
            problems.append(_item(f"{where}/attributes", "attributes must be an object"))
            continue
        if len(attributes) > 25:
            problems.append(_item(f"{where}/attributes", "at most 25 attributes"))
        for name, attribute in attributes.items():
            at = f"{where}/attributes/{name}"
            if not KEY.match(name):
                problems.append(_item(at, "attribute name does not match the key pattern"))
            if not isinstance(attribute, dict) or set(attribute) - {"description", "constraints"}:
                problems.append(_item(at, "an attribute has only a description and constraints"))
                continue
            if len(str(attribute.get("description", ""))) > 1024:
                problems.append(_item(f"{at}/description", "at most 1024 characters"))
            if "constraints" in attribute:
                problems += _check_constraint(attribute["constraints"], f"{at}/constraints")
    for key, value in values.items():
        where = f"/values/{key}"
        if key not in flags:
            problems.append(_item(where, "a value for a flag that is not defined"))
            continue
        if not isinstance(value, dict):
            problems.append(_item(where, "a flag value must be an object"))
            continue
        definitions = flags[key].get("attributes", {}) if isinstance(flags[key], dict) else {}
        if "enabled" in value and not isinstance(value["enabled"], bool):
            problems.append(_item(f"{where}/enabled", "enabled must be a boolean"))
        attribute_values = {
            k: v
            for k, v in value.items()
            if k not in ("enabled", "_createdAt", "_updatedAt", "_variants")
        }
        if len(attribute_values) > 25:
            problems.append(_item(where, "at most 25 attribute values"))
        problems += _attribute_values_problems(attribute_values, definitions, where)
        if value.get("enabled"):
            for name, attribute in definitions.items():
                constraint = attribute.get("constraints") if isinstance(attribute, dict) else None
                if constraint and constraint.get("required") and name not in attribute_values:
                    problems.append(
                        _item(
                            f"{where}/{name}",
                            "required attribute is missing",
                            constraint="required",
                        )
                    )
        variants = value.get("_variants")
        if variants is not None:
            problems += _variant_problems(variants, definitions, f"{where}/_variants")
    return problems


def _attribute_values_problems(
    attribute_values: dict[str, Any], definitions: dict[str, Any], where: str
) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    for name, attribute_value in attribute_values.items():
        at = f"{where}/{name}"
        if not KEY.match(name):
            problems.append(_item(at, "attribute name does not match the key pattern"))
            continue
        if name not in definitions:
            problems.append(_item(at, "a value for an attribute that is not defined"))
            continue
        definition = definitions[name]
        constraint = definition.get("constraints") if isinstance(definition, dict) else None
        problems += _value_problems(attribute_value, constraint, at)
    return problems


def _variant_problems(
    variants: Any, definitions: dict[str, Any], where: str
) -> list[dict[str, str]]:
    if not isinstance(variants, list) or len(variants) > 32:
        return [_item(where, "_variants is a list of at most 32 variants")]
    problems: list[dict[str, str]] = []
    for i, variant in enumerate(variants):
        at = f"{where}/{i}"
        if not isinstance(variant, dict) or set(variant) - {
            "name",
            "enabled",
            "rule",
            "attributeValues",
        }:
            problems.append(_item(at, "a variant has name, enabled, rule and attributeValues"))
            continue
        if not (isinstance(variant.get("name"), str) and NAME.match(variant["name"])):
            problems.append(_item(f"{at}/name", "name must be 1–64 characters, one line"))
        if not isinstance(variant.get("enabled"), bool):
            problems.append(_item(f"{at}/enabled", "enabled is required and a boolean"))
        last = i == len(variants) - 1
        if last and "rule" in variant:
            problems.append(
                _item(f"{at}/rule", "the default variant must come last, without a rule")
            )
        if not last and not variant.get("rule"):
            problems.append(_item(at, "only the last (default) variant may go without a rule"))
        if len(str(variant.get("rule", ""))) > 16384:
            problems.append(_item(f"{at}/rule", "a rule is at most 16384 characters"))
        values = variant.get("attributeValues", {})
        if not isinstance(values, dict) or len(values) > 25:
            problems.append(_item(f"{at}/attributeValues", "at most 25 attribute values"))
            continue
        problems += _attribute_values_problems(values, definitions, f"{at}/attributeValues")
    return problems


# --- SigV4 ------------------------------------------------------------------------------------

AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def canonical_query(raw: str) -> str:
    pairs = [
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, v in parse_qsl(raw, keep_blank_values=True)
    ]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def expected_signature(
    *,
    secret: str,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    signed: list[str],
    body: bytes,
    amz_date: str,
    scope_date: str,
    region: str,
    service: str,
) -> str:
    """Recompute a SigV4 signature from the request as received (AWS's algorithm)."""
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed
    )
    payload = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical_request = "\n".join(
        [
            method,
            quote(path, safe="/~"),
            canonical_query(query),
            canonical_headers,
            ";".join(signed),
            payload,
        ]
    )
    scope = f"{scope_date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(f"AWS4{secret}".encode(), scope_date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


# --- routes -----------------------------------------------------------------------------------

_APP = r"/applications/(?P<app>[^/]+)"
_ENV = _APP + r"/environments/(?P<env>[^/]+)"
_PROFILE = _APP + r"/configurationprofiles/(?P<profile>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(f"^{pattern}$"), op)
    for method, pattern, op in (
        ("POST", r"/applications", "CreateApplication"),
        ("GET", r"/applications", "ListApplications"),
        ("GET", _APP, "GetApplication"),
        ("POST", _APP + r"/environments", "CreateEnvironment"),
        ("GET", _APP + r"/environments", "ListEnvironments"),
        ("GET", _ENV, "GetEnvironment"),
        ("POST", _APP + r"/configurationprofiles", "CreateConfigurationProfile"),
        ("GET", _APP + r"/configurationprofiles", "ListConfigurationProfiles"),
        ("GET", _PROFILE, "GetConfigurationProfile"),
        ("POST", _PROFILE + r"/hostedconfigurationversions", "CreateHostedConfigurationVersion"),
        ("GET", _PROFILE + r"/hostedconfigurationversions", "ListHostedConfigurationVersions"),
        (
            "GET",
            _PROFILE + r"/hostedconfigurationversions/(?P<version>[^/]+)",
            "GetHostedConfigurationVersion",
        ),
        ("POST", r"/deploymentstrategies", "CreateDeploymentStrategy"),
        ("GET", r"/deploymentstrategies", "ListDeploymentStrategies"),
        ("GET", r"/deploymentstrategies/(?P<strategy>[^/]+)", "GetDeploymentStrategy"),
        ("POST", _ENV + r"/deployments", "StartDeployment"),
        ("GET", _ENV + r"/deployments", "ListDeployments"),
        ("GET", _ENV + r"/deployments/(?P<number>[^/]+)", "GetDeployment"),
        ("DELETE", _ENV + r"/deployments/(?P<number>[^/]+)", "StopDeployment"),
    )
]


@dataclass
class Request:
    op: str
    method: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            value = json.loads(self.body)
        except ValueError:
            raise AwsError(400, "SerializationException", "The request body is not JSON.") from None
        if not isinstance(value, dict):
            raise AwsError(400, "SerializationException", "The request body is not an object.")
        return value


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    lose: str = ""  # "reset" / "timeout": the request was carried out, the answer is lost
    lose_after: float = 0.0


class AppConfigFake:
    """The fake service: state, the HTTP server, and the knobs tests turn."""

    def __init__(
        self,
        *,
        region: str = "eu-west-1",
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        session_token: str | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.region = region
        self.credentials = {access_key: (secret_key, session_token)}
        self.clock = clock or FakeClock()
        self.rollback_seconds = 0.0  # how long an alarm rollback stays ROLLING_BACK
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, int]] = []  # (operation, status) of every request
        self.lost: list[str] = []  # operations carried out whose answer was lost
        self.denied: set[str] = set()
        self._faults: dict[str, list[Fault]] = {}
        self._lock = threading.RLock()
        self.applications: dict[str, dict[str, Any]] = {}
        self.environments: dict[tuple[str, str], dict[str, Any]] = {}
        self.profiles: dict[tuple[str, str], dict[str, Any]] = {}
        self.versions: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.strategies: dict[str, dict[str, Any]] = {}
        self.deployments: dict[tuple[str, str], list[Deployment]] = {}
        self.alarms: dict[str, tuple[str, dt.datetime]] = {}  # arn → (state, since)
        for name, (duration, growth, factor, bake) in PREDEFINED.items():
            self.strategies[name] = {
                "Id": name,
                "Name": name,
                "Description": "Predefined by AWS AppConfig",
                "DeploymentDurationInMinutes": duration,
                "GrowthType": growth,
                "GrowthFactor": factor,
                "FinalBakeTimeInMinutes": bake,
                "ReplicateTo": "NONE",
            }
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> AppConfigFake:
        fake = self

        class Handler(_Handler):
            service = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aws-appconfig-fake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> AppConfigFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- knobs --------------------------------------------------------------------------------

    def fail_next(
        self,
        operation: str,
        *,
        status: int = 500,
        times: int = 1,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The next ``times`` requests for ``operation`` fail with ``status`` (with a
        ``Retry-After`` header of ``retry_after`` seconds if given)."""
        default_code = {
            429: "ThrottlingException",
            500: "InternalServerException",
            503: "ServiceUnavailableException",
            403: "AccessDeniedException",
        }.get(status, "InternalServerException")
        default_message = {429: "Rate exceeded"}.get(status, "Internal failure. Please retry.")
        with self._lock:
            self._faults.setdefault(operation, []).append(
                Fault(
                    status,
                    code or default_code,
                    message or default_message,
                    times,
                    retry_after=retry_after,
                )
            )

    def lose_answer(
        self, operation: str, *, how: str = "reset", seconds: float = 0.0, times: int = 1
    ) -> None:
        """The next ``times`` requests for ``operation`` are carried out, then their answer is
        lost: ``how="reset"`` resets the connection instead of answering; ``how="timeout"`` holds
        the answer ``seconds`` (longer than the client's read timeout) and then closes the
        connection without it."""
        assert how in ("reset", "timeout"), how
        with self._lock:
            self._faults.setdefault(operation, []).append(
                Fault(0, "", "", times, delay=seconds, lose=how)
            )

    def slow(self, operation: str, *, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests for ``operation`` answer after ``seconds``."""
        with self._lock:
            self._faults.setdefault(operation, []).append(Fault(0, "", "", times, delay=seconds))

    def deny(self, *operations: str) -> None:
        """The caller's IAM policy lacks ``appconfig:<operation>``."""
        self.denied.update(operations)

    def allow(self, *operations: str) -> None:
        self.denied.difference_update(operations)

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()
            self.log.clear()
            self.lost.clear()

    def set_alarm(self, arn: str, state: str) -> None:
        """A CloudWatch alarm changes state (``ALARM`` or ``OK``) at the fake's now."""
        with self._lock:
            now = self.clock.now()
            self._advance_all(now)
            self.alarms[arn] = (state, now)
            self._advance_all(now)

    # --- direct state, for test setup (not requests; not counted) ------------------------------

    def create_application(self, name: str) -> str:
        with self._lock:
            return self._create_application({"Name": name})["Id"]

    def create_environment(self, app_id: str, name: str, monitors: list[str] | None = None) -> str:
        body = {
            "Name": name,
            "Monitors": [
                {"AlarmArn": arn, "AlarmRoleArn": f"arn:aws:iam::{ACCOUNT}:role/appconfig-alarms"}
                for arn in monitors or []
            ],
        }
        with self._lock:
            return self._create_environment(app_id, body)["Id"]

    def create_profile(
        self, app_id: str, name: str, *, type: str = FEATURE_FLAGS, location: str = "hosted"
    ) -> str:
        with self._lock:
            return self._create_profile(
                app_id, {"Name": name, "LocationUri": location, "Type": type}
            )["Id"]

    def create_version(
        self, app_id: str, profile_id: str, document: dict[str, Any], label: str | None = None
    ) -> int:
        """A hosted configuration version written by someone else (the console, a script)."""
        with self._lock:
            versions = self.versions.setdefault((app_id, profile_id), [])
            number = len(versions) + 1
            versions.append(
                {
                    "VersionNumber": number,
                    "Content": json.dumps(document).encode(),
                    "ContentType": "application/json",
                    "Description": "written outside flagdash",
                    "VersionLabel": label,
                }
            )
            return number

    def start_deployment(
        self, app_id: str, env_id: str, profile_id: str, version: int, strategy: str
    ) -> int:
        """A deployment started outside flagdash (the console, another tool)."""
        with self._lock:
            body = {
                "ConfigurationProfileId": profile_id,
                "ConfigurationVersion": str(version),
                "DeploymentStrategyId": strategy,
                "Description": "started outside flagdash",
            }
            return self._start_deployment(app_id, env_id, body)["DeploymentNumber"]

    def deployment(self, app_id: str, env_id: str, number: int) -> Deployment:
        with self._lock:
            self._advance_all(self.clock.now())
            return self._deployment(app_id, env_id, number)

    def document(self, app_id: str, profile_id: str, version: int) -> dict[str, Any]:
        with self._lock:
            return json.loads(self.versions[(app_id, profile_id)][version - 1]["Content"])

    def served_version(self, app_id: str, env_id: str, profile_id: str) -> str | None:
        """The version clients of the environment get: the latest completed deployment's."""
        with self._lock:
            self._advance_all(self.clock.now())
            for d in sorted(self.deployments.get((app_id, env_id), []), key=lambda d: -d.number):
                if d.profile["Id"] == profile_id and d.state == "COMPLETE":
                    return d.version
            return None

    # --- request handling ---------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[str, Response]:
        """Serve one request. A ``Response`` with ``lose`` set must not be sent (the request was
        carried out; its answer is lost)."""
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        op, params = "Unknown", {}
        for route_method, pattern, name in ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                op, params = name, match.groupdict()
                break
        with self._lock:
            self.calls[op] += 1
        try:
            self._authenticate(method, parts.path, parts.query, headers, body)
            if op == "Unknown":
                raise AwsError(404, "UnknownOperationException", f"No operation at {method} {path}")
            fault = self._take_fault(op)
            if fault is not None and fault.delay and not fault.lose:
                time.sleep(fault.delay)
            if op in self.denied:
                raise AwsError(
                    403,
                    "AccessDeniedException",
                    f"User: arn:aws:iam::{ACCOUNT}:user/flagdash is not authorized to perform: "
                    f"appconfig:{op} on resource: arn:aws:appconfig:{self.region}:{ACCOUNT}:"
                    f"{path.strip('/')} because no identity-based policy allows the "
                    f"appconfig:{op} action",
                )
            request = Request(op, method, params, dict(parse_qsl(parts.query)), headers, body)
            with self._lock:
                self._advance_all(self.clock.now())
                response = getattr(self, f"_op_{op}")(request)
            if fault is not None and fault.lose:
                response.lose, response.lose_after = fault.lose, fault.delay
        except AwsError as exc:
            headers_out = {
                "x-amzn-errortype": f"{exc.code}:http://internal.amazon.com/coral/com.amazonaws.appconfig/"
            }
            if exc.retry_after is not None:
                headers_out["Retry-After"] = f"{exc.retry_after:g}"
            response = Response(exc.status, {"Message": exc.message, **exc.extra}, headers_out)
        with self._lock:
            self.log.append((op, response.status))
            if response.lose:
                self.lost.append(op)
        return op, response

    def _take_fault(self, op: str) -> Fault | None:
        """The next fault for ``op``: raised if it is an error, returned if it is a delay or a
        lost answer."""
        with self._lock:
            queue = self._faults.get(op) or []
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
        if fault.delay or fault.lose:
            return fault
        error = AwsError(fault.status, fault.code, fault.message)
        error.retry_after = fault.retry_after
        raise error

    def _authenticate(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> None:
        authorization = headers.get("authorization", "")
        if not authorization:
            raise AwsError(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        match = AUTH.match(authorization)
        if not match:
            raise AwsError(
                403,
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'.",
            )
        key = match["key"]
        if key not in self.credentials:
            raise AwsError(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        secret, token = self.credentials[key]
        if token is not None and headers.get("x-amz-security-token") != token:
            raise AwsError(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        if match["service"] != "appconfig":
            raise AwsError(
                403,
                "InvalidSignatureException",
                "Credential should be scoped to correct service: 'appconfig'. ",
            )
        if match["region"] != self.region:
            raise AwsError(
                403,
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not '{match['region']}'. ",
            )
        amz_date = headers.get("x-amz-date", "")
        try:
            signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            raise AwsError(
                403, "IncompleteSignatureException", "X-Amz-Date is missing or malformed."
            ) from None
        if abs(dt.datetime.now(dt.UTC) - signed_at) > SIGNATURE_SKEW:
            raise AwsError(
                403, "InvalidSignatureException", "Signature expired: the request is too old."
            )
        signed = match["signed"].split(";")
        # AWS's SDKs always sign both; AWS refuses a signature that leaves either out (it would
        # let a captured Authorization header be replayed to another host or at another time).
        if "host" not in signed:
            raise AwsError(
                403,
                "IncompleteSignatureException",
                "'Host' must be a 'SignedHeader' in the AWS Authorization.",
            )
        if "x-amz-date" not in signed:
            raise AwsError(
                403,
                "IncompleteSignatureException",
                "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.",
            )
        expected = expected_signature(
            secret=secret,
            method=method,
            path=path,
            query=query,
            headers=headers,
            signed=signed,
            body=body,
            amz_date=amz_date,
            scope_date=match["date"],
            region=match["region"],
            service=match["service"],
        )
        if not hmac.compare_digest(expected, match["sig"]):
            raise AwsError(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details.",
            )

    # --- state helpers --------------------------------------------------------------------------

    def _application(self, app_id: str) -> dict[str, Any]:
        if app_id not in self.applications:
            raise not_found(f"Application {app_id} not found", "Application")
        return self.applications[app_id]

    def _environment(self, app_id: str, env_id: str) -> dict[str, Any]:
        self._application(app_id)
        if (app_id, env_id) not in self.environments:
            raise not_found(f"Environment {env_id} not found", "Environment")
        return self.environments[(app_id, env_id)]

    def _profile(self, app_id: str, profile_id: str) -> dict[str, Any]:
        self._application(app_id)
        if (app_id, profile_id) not in self.profiles:
            raise not_found(f"Configuration profile {profile_id} not found", "ConfigurationProfile")
        return self.profiles[(app_id, profile_id)]

    def _deployment(self, app_id: str, env_id: str, number: int) -> Deployment:
        self._environment(app_id, env_id)
        for d in self.deployments.get((app_id, env_id), []):
            if d.number == number:
                return d
        raise not_found(f"Deployment {number} not found", "Deployment")

    @staticmethod
    def _page(items: list[Any], query: dict[str, str]) -> dict[str, Any]:
        try:
            size = int(query.get("max_results", "50"))
            start = int(query.get("next_token", "0") or 0)
        except ValueError:
            raise bad_request("Invalid max_results or next_token") from None
        if not 1 <= size <= 50:
            raise bad_request("max_results must be between 1 and 50")
        body: dict[str, Any] = {"Items": items[start : start + size]}
        if start + size < len(items):
            body["NextToken"] = str(start + size)
        return body

    @staticmethod
    def _require_name(body: dict[str, Any], limit: int) -> str:
        name = body.get("Name")
        if not isinstance(name, str) or not 1 <= len(name) <= limit:
            raise bad_request(f"Name must be 1–{limit} characters")
        return name

    def _create_application(self, body: dict[str, Any]) -> dict[str, Any]:
        name = self._require_name(body, 64)
        if len(self.applications) >= 100:
            raise AwsError(402, "ServiceQuotaExceededException", "Applications quota reached")
        app = {"Id": new_id(), "Name": name, "Description": body.get("Description", "")}
        self.applications[app["Id"]] = app
        return app

    def _create_environment(self, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._application(app_id)
        name = self._require_name(body, 64)
        monitors = body.get("Monitors", [])
        if len(monitors) > 5:
            raise bad_request("At most 5 monitors per environment")
        env = {
            "ApplicationId": app_id,
            "Id": new_id(),
            "Name": name,
            "Description": body.get("Description", ""),
            "State": "READY_FOR_DEPLOYMENT",
            "Monitors": monitors,
        }
        self.environments[(app_id, env["Id"])] = env
        return env

    def _create_profile(self, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._application(app_id)
        name = self._require_name(body, 128)
        if not body.get("LocationUri"):
            raise bad_request("LocationUri is required")
        profile = {
            "ApplicationId": app_id,
            "Id": new_id(),
            "Name": name,
            "Description": body.get("Description", ""),
            "LocationUri": body["LocationUri"],
            "Type": body.get("Type", "AWS.Freeform"),
            "Validators": body.get("Validators", []),
        }
        self.profiles[(app_id, profile["Id"])] = profile
        return profile

    def _start_deployment(self, app_id: str, env_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._environment(app_id, env_id)
        profile = self._profile(app_id, str(body.get("ConfigurationProfileId", "")))
        strategy_id = str(body.get("DeploymentStrategyId", ""))
        if strategy_id not in self.strategies:
            raise not_found(f"Deployment strategy {strategy_id} not found", "DeploymentStrategy")
        version = str(body.get("ConfigurationVersion", ""))
        label = None
        if profile["LocationUri"] == "hosted":
            versions = self.versions.get((app_id, profile["Id"]), [])
            if not version.isdigit() or not 1 <= int(version) <= len(versions):
                raise not_found(
                    f"Hosted configuration version {version} not found",
                    "HostedConfigurationVersion",
                )
            label = versions[int(version) - 1]["VersionLabel"]
        existing = self.deployments.setdefault((app_id, env_id), [])
        for d in existing:
            if d.state in ACTIVE:
                raise AwsError(
                    409,
                    "ConflictException",
                    f"Cannot start a deployment while deployment {d.number} is in progress in "
                    f"environment {env_id}.",
                )
        now = self.clock.now()
        deployment = Deployment(
            number=len(existing) + 1,
            application_id=app_id,
            environment_id=env_id,
            profile=profile,
            strategy=self.strategies[strategy_id],
            version=version,
            version_label=label,
            description=str(body.get("Description", "")),
            started_at=now,
            tags=dict(body.get("Tags") or {}),
        )
        deployment.events.append(Event("DEPLOYMENT_STARTED", "USER", "Deployment started", now))
        existing.append(deployment)
        self.environments[(app_id, env_id)]["State"] = "DEPLOYING"
        self._advance(deployment, now)
        return deployment.wire()

    # --- the rollout state machine --------------------------------------------------------------

    def _advance_all(self, now: dt.datetime) -> None:
        for deployments in self.deployments.values():
            for d in deployments:
                if d.state in ACTIVE:
                    self._advance(d, now)

    def _alarm_time(self, d: Deployment) -> tuple[dt.datetime, str] | None:
        """When (and which) monitored alarm went into ALARM while ``d`` was in progress."""
        env = self.environments[(d.application_id, d.environment_id)]
        found: list[tuple[dt.datetime, str]] = []
        for monitor in env.get("Monitors", []):
            state = self.alarms.get(monitor["AlarmArn"])
            if state and state[0] == "ALARM":
                found.append((max(state[1], d.started_at), monitor["AlarmArn"]))
        return min(found) if found else None

    def _advance(self, d: Deployment, now: dt.datetime) -> None:
        """Play ``d``'s schedule forward to ``now``, event by event, in time order."""
        env = self.environments[(d.application_id, d.environment_id)]
        while d.state in ACTIVE:
            if d.state == "ROLLING_BACK":
                assert d.rollback_done_at is not None
                if d.rollback_done_at > now:
                    return
                self._finish_rollback(d, d.rollback_done_at, env)
                return
            alarm = self._alarm_time(d)
            steps = d.step_times()
            percentages = d.percentages()
            candidates: list[tuple[dt.datetime, int, str]] = []
            if d.steps_done < len(steps):
                candidates.append((steps[d.steps_done], 1, "step"))
            elif d.state == "DEPLOYING":
                candidates.append((d.started_at + d.duration, 1, "bake"))
            elif d.state == "BAKING":
                candidates.append((d.started_at + d.duration + d.bake, 1, "complete"))
            if alarm is not None:
                candidates.append((alarm[0], 0, "alarm"))  # an alarm wins a tie
            at, _, what = min(candidates)
            if at > now:
                return
            if what == "alarm":
                assert alarm is not None
                d.events.append(
                    Event(
                        "ROLLBACK_STARTED",
                        "CLOUDWATCH_ALARM",
                        f"Rollback initiated by CloudWatch Alarm: {alarm[1]}",
                        at,
                    )
                )
                d.state = "ROLLING_BACK"
                env["State"] = "ROLLING_BACK"
                d.rollback_done_at = at + dt.timedelta(seconds=self.rollback_seconds)
            elif what == "step":
                d.percentage = percentages[d.steps_done]
                d.steps_done += 1
                d.events.append(
                    Event(
                        "PERCENTAGE_UPDATED",
                        "APPCONFIG",
                        f"Configuration deployment updated to {d.percentage:.2f}% of targets",
                        at,
                    )
                )
            elif what == "bake":
                if d.bake:
                    d.state = "BAKING"
                    d.events.append(
                        Event("BAKE_TIME_STARTED", "APPCONFIG", "Deployment bake time started", at)
                    )
                else:
                    self._complete(d, at, env)
            else:
                self._complete(d, at, env)

    @staticmethod
    def _complete(d: Deployment, at: dt.datetime, env: dict[str, Any]) -> None:
        d.state = "COMPLETE"
        d.percentage = 100.0
        d.completed_at = at
        d.events.append(Event("DEPLOYMENT_COMPLETED", "APPCONFIG", "Deployment completed", at))
        env["State"] = "READY_FOR_DEPLOYMENT"

    @staticmethod
    def _finish_rollback(d: Deployment, at: dt.datetime, env: dict[str, Any]) -> None:
        d.state = "ROLLED_BACK"
        d.completed_at = at
        d.events.append(Event("ROLLBACK_COMPLETED", "APPCONFIG", "Rollback completed", at))
        env["State"] = "ROLLED_BACK"

    # --- operations -----------------------------------------------------------------------------

    def _op_CreateApplication(self, r: Request) -> Response:
        return Response(201, self._create_application(r.json()))

    def _op_ListApplications(self, r: Request) -> Response:
        return Response(200, self._page(list(self.applications.values()), r.query))

    def _op_GetApplication(self, r: Request) -> Response:
        return Response(200, self._application(r.params["app"]))

    def _op_CreateEnvironment(self, r: Request) -> Response:
        return Response(201, self._create_environment(r.params["app"], r.json()))

    def _op_ListEnvironments(self, r: Request) -> Response:
        app = r.params["app"]
        self._application(app)
        items = [e for (a, _), e in self.environments.items() if a == app]
        return Response(200, self._page(items, r.query))

    def _op_GetEnvironment(self, r: Request) -> Response:
        return Response(200, self._environment(r.params["app"], r.params["env"]))

    def _op_CreateConfigurationProfile(self, r: Request) -> Response:
        return Response(201, self._create_profile(r.params["app"], r.json()))

    def _op_ListConfigurationProfiles(self, r: Request) -> Response:
        app = r.params["app"]
        self._application(app)
        items = [
            {k: p[k] for k in ("ApplicationId", "Id", "Name", "LocationUri", "Type")}
            for (a, _), p in self.profiles.items()
            if a == app and (not r.query.get("type") or p["Type"] == r.query["type"])
        ]
        return Response(200, self._page(items, r.query))

    def _op_GetConfigurationProfile(self, r: Request) -> Response:
        return Response(200, self._profile(r.params["app"], r.params["profile"]))

    def _op_CreateHostedConfigurationVersion(self, r: Request) -> Response:
        app, profile_id = r.params["app"], r.params["profile"]
        profile = self._profile(app, profile_id)
        content_type = r.headers.get("content-type", "")
        label = r.headers.get("versionlabel")
        if label is not None and (not 1 <= len(label) <= 64 or label.isdigit()):
            raise bad_request("VersionLabel must be 1–64 characters and contain a non-digit")
        versions = self.versions.setdefault((app, profile_id), [])
        latest = r.headers.get("latest-version-number")
        if latest is not None and int(latest) != len(versions):
            raise AwsError(
                409,
                "ConflictException",
                f"The latest version number is {len(versions)}, not {latest}: another version was "
                "created meanwhile.",
            )
        if len(r.body) > MAX_DOCUMENT_BYTES:
            raise AwsError(
                413,
                "PayloadTooLargeException",
                "Configuration size is too large",
                Measure="KILOBYTES",
                Limit=MAX_DOCUMENT_BYTES / 1024,
                Size=round(len(r.body) / 1024, 2),
            )
        if profile["Type"] == FEATURE_FLAGS:
            if not content_type.startswith("application/json"):
                raise bad_request(
                    "Feature flag configurations must have Content-Type application/json"
                )
            try:
                document = json.loads(r.body)
            except ValueError:
                raise bad_request("The configuration is not valid JSON.") from None
            problems = feature_flag_problems(document)
            if problems:
                raise bad_request(
                    "Configuration data does not match the feature flag schema.",
                    Reason="InvalidConfiguration",
                    Details={"InvalidConfiguration": problems},
                )
        version = {
            "VersionNumber": len(versions) + 1,
            "Content": r.body,
            "ContentType": content_type,
            "Description": r.headers.get("description", ""),
            "VersionLabel": label,
        }
        versions.append(version)
        return Response(201, raw=r.body, headers=self._version_headers(app, profile_id, version))

    @staticmethod
    def _version_headers(app: str, profile_id: str, version: dict[str, Any]) -> dict[str, str]:
        headers = {
            "Application-Id": app,
            "Configuration-Profile-Id": profile_id,
            "Version-Number": str(version["VersionNumber"]),
            "Content-Type": version["ContentType"],
        }
        if version["Description"]:
            headers["Description"] = version["Description"]
        if version["VersionLabel"]:
            headers["VersionLabel"] = version["VersionLabel"]
        return headers

    def _op_ListHostedConfigurationVersions(self, r: Request) -> Response:
        app, profile_id = r.params["app"], r.params["profile"]
        self._profile(app, profile_id)
        wanted = r.query.get("version_label")
        items = []
        for v in reversed(self.versions.get((app, profile_id), [])):  # newest first
            label = v["VersionLabel"] or ""
            if wanted is not None:
                if wanted.endswith("*") and not label.startswith(wanted[:-1]):
                    continue
                if not wanted.endswith("*") and label != wanted:
                    continue
            item = {
                "ApplicationId": app,
                "ConfigurationProfileId": profile_id,
                "VersionNumber": v["VersionNumber"],
                "ContentType": v["ContentType"],
                "Description": v["Description"],
            }
            if v["VersionLabel"]:
                item["VersionLabel"] = v["VersionLabel"]
            items.append(item)
        return Response(200, self._page(items, r.query))

    def _op_GetHostedConfigurationVersion(self, r: Request) -> Response:
        app, profile_id = r.params["app"], r.params["profile"]
        self._profile(app, profile_id)
        versions = self.versions.get((app, profile_id), [])
        number = r.params["version"]
        if not number.isdigit() or not 1 <= int(number) <= len(versions):
            raise not_found(f"Version {number} not found", "HostedConfigurationVersion")
        version = versions[int(number) - 1]
        return Response(
            200, raw=version["Content"], headers=self._version_headers(app, profile_id, version)
        )

    def _op_CreateDeploymentStrategy(self, r: Request) -> Response:
        body = r.json()
        name = self._require_name(body, 64)
        duration = body.get("DeploymentDurationInMinutes")
        factor = body.get("GrowthFactor")
        bake = body.get("FinalBakeTimeInMinutes", 0)
        growth = body.get("GrowthType", "LINEAR")
        if not (isinstance(duration, int) and 0 <= duration <= 1440):
            raise bad_request("DeploymentDurationInMinutes must be 0–1440")
        if not (_is_number(factor) and 1 <= factor <= 100):
            raise bad_request("GrowthFactor must be 1–100")
        if not (isinstance(bake, int) and 0 <= bake <= 1440):
            raise bad_request("FinalBakeTimeInMinutes must be 0–1440")
        if growth not in ("LINEAR", "EXPONENTIAL"):
            raise bad_request("GrowthType must be LINEAR or EXPONENTIAL")
        custom = [s for s in self.strategies.values() if not s["Id"].startswith("AppConfig.")]
        if len(custom) >= 20:
            raise AwsError(
                402, "ServiceQuotaExceededException", "Deployment strategies quota reached"
            )
        strategy = {
            "Id": new_id(),
            "Name": name,
            "Description": body.get("Description", ""),
            "DeploymentDurationInMinutes": duration,
            "GrowthType": growth,
            "GrowthFactor": float(factor),
            "FinalBakeTimeInMinutes": bake,
            "ReplicateTo": body.get("ReplicateTo", "NONE"),
        }
        self.strategies[strategy["Id"]] = strategy
        return Response(201, strategy)

    def _op_ListDeploymentStrategies(self, r: Request) -> Response:
        return Response(200, self._page(list(self.strategies.values()), r.query))

    def _op_GetDeploymentStrategy(self, r: Request) -> Response:
        strategy = self.strategies.get(r.params["strategy"])
        if strategy is None:
            raise not_found("Deployment strategy not found", "DeploymentStrategy")
        return Response(200, strategy)

    def _op_StartDeployment(self, r: Request) -> Response:
        return Response(201, self._start_deployment(r.params["app"], r.params["env"], r.json()))

    def _op_ListDeployments(self, r: Request) -> Response:
        app, env = r.params["app"], r.params["env"]
        self._environment(app, env)
        items = [
            d.wire(summary=True)
            for d in sorted(self.deployments.get((app, env), []), key=lambda d: -d.number)
        ]
        return Response(200, self._page(items, r.query))

    def _number(self, r: Request) -> int:
        number = r.params["number"]
        if not number.isdigit():
            raise bad_request("DeploymentNumber must be a number")
        return int(number)

    def _op_GetDeployment(self, r: Request) -> Response:
        d = self._deployment(r.params["app"], r.params["env"], self._number(r))
        return Response(200, d.wire())

    def _op_StopDeployment(self, r: Request) -> Response:
        app, env_id = r.params["app"], r.params["env"]
        d = self._deployment(app, env_id, self._number(r))
        env = self.environments[(app, env_id)]
        now = self.clock.now()
        revert = r.headers.get("allow-revert", "").lower() == "true"
        # "This API action works only on deployments that have a status of DEPLOYING, unless an
        # AllowRevert parameter is supplied" (AWS's API reference for StopDeployment).
        if d.state in ("BAKING", "VALIDATING") and not revert:
            raise bad_request(
                f"Deployment {d.number} is {d.state}: only a DEPLOYING deployment can be stopped "
                "without AllowRevert."
            )
        if d.state in ("DEPLOYING", "BAKING", "VALIDATING"):
            d.events.append(Event("ROLLBACK_STARTED", "USER", "Rollback initiated by user", now))
            self._finish_rollback(d, now, env)
        elif d.state == "COMPLETE":
            if not revert:
                raise bad_request(
                    f"Deployment {d.number} is complete: set Allow-Revert to revert it."
                )
            latest = max(self.deployments[(app, env_id)], key=lambda x: x.number)
            if latest is not d:
                raise bad_request(
                    f"Only the latest deployment can be reverted; deployment {latest.number} "
                    "came after it."
                )
            assert d.completed_at is not None
            if now - d.completed_at > REVERT_WINDOW:
                raise bad_request(
                    f"Deployment {d.number} completed more than 72 hours ago and can no longer "
                    "be reverted."
                )
            d.state = "REVERTED"
            d.events.append(Event("REVERT_COMPLETED", "USER", "Revert completed", now))
            env["State"] = "REVERTED"
        else:
            raise bad_request(f"Deployment {d.number} is {d.state} and cannot be stopped.")
        return Response(202, d.wire())


class _Handler(BaseHTTPRequestHandler):
    service: AppConfigFake
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        _, response = self.service.handle(self.command, self.path, headers, body)
        if response.lose:
            self._lose(response)
            return
        if response.raw is not None:
            payload = response.raw
        elif response.body is not None:
            payload = json.dumps(response.body).encode()
        else:
            payload = b""
        try:
            self.send_response(response.status)
            headers_out = {"Content-Type": "application/json", **response.headers}
            for name, value in headers_out.items():
                self.send_header(name, value)
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a read timeout): fine

    def _lose(self, response: Response) -> None:
        """Answer nothing: reset the connection at once, or hold it past the client's read
        timeout and then close it."""
        self.close_connection = True
        if response.lose == "timeout":
            time.sleep(response.lose_after)
        else:  # SO_LINGER 0: closing sends a TCP reset rather than a clean end of stream
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
        with contextlib.suppress(OSError):
            self.connection.close()

    do_GET = do_POST = do_DELETE = do_PUT = _serve


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[AppConfigFake]:
    fake = AppConfigFake(**kwargs).start()
    try:
        yield fake
    finally:
        fake.stop()
