"""Azure App Configuration: each flag is a feature-flag setting, and flagdash steps rollouts itself.

Every flag of a version becomes one key-value ``.appconfig.featureflag/<flag key>`` with the
environment's label and Microsoft's feature-flag content type, its value in the FeatureFlag v2
schema that Microsoft's feature-management libraries read (``render``):

- ``id``, ``description``, ``display_name``, ``enabled``, ``conditions.client_filters``;
- multi-variant flags: ``variants`` (name, ``configuration_value``) and ``allocation``
  (``default_when_enabled`` = the default variant, a fixed ``seed``; no
  ``default_when_disabled``, so a disabled flag gives applications their own default, as if
  absent);
- attribute values in ``telemetry.metadata`` (``{"<attribute>": "<JSON text of the value>"}``)
  with ``telemetry.enabled`` false: the evaluators ignore it, Microsoft's configuration providers
  carry it through to applications, and nothing is sent anywhere.

Azure has no deployments, so this backend is self-driven (``RolloutPlan.at``): ``start`` writes
the plan's first step, ``status`` writes each later step when it is due, ``stop`` writes the
previous version back. What a step writes depends on how a flag's *outcome* changes (what an
application gets: off, on, or the default variant's value):

- off → on: ``enabled`` with a ``Microsoft.Targeting`` filter whose
  ``Audience.DefaultRolloutPercentage`` is the plan's percentage (rounded to a whole percent,
  1–99 while rolling out); at 100 % the filter is removed.
- on → off (and a removed flag that was on): still enabled, with a Targeting filter at
  ``100 − p`` %, so the share that sees the new version (off) grows with the plan; at 100 % the
  flag is written disabled (a removed flag is deleted).
- on → on with another default variant (or the default variant's value changed):
  ``allocation.percentile`` gives the new variant to ``[0, p)`` and the old one to ``[p, 100)``
  (the old variant is kept in ``variants`` under its name, or ``<name>~previous`` if the name now
  holds another value); at 100 % only the new variant remains.
- Everything else (descriptions, names, attribute values, other variants, disabled flags, flags
  added disabled, flags removed while off) is written once, at the start: Azure cannot serve two
  sets of attribute values split by percentage. Removed flags are deleted at 100 %.

Targeting is sticky: Microsoft's evaluators hash ``"<user id>\\n<flag id>"`` (and the allocation
``seed`` for variants), so a user who got the new version at 20 % keeps it at 40 %.

Writes are conditional: ``If-Match`` the ETag flagdash wrote or verified last, ``If-None-Match:
*`` to create. ``AzureSettingState`` remembers that ETag per store, key and label; ``start``
lists the label's flags first and raises ``DriftError`` (one line per setting added, changed or
deleted outside flagdash since flagdash last wrote it) without writing anything, unless the
person chose to overwrite. A 412 during a write is re-read: if Azure holds exactly what flagdash
meant to write (its own write, whose answer was lost and retried), flagdash carries on;
otherwise it is drift. Flags that do not change are not written.

Credentials: a connection string from the process environment variable named by the
``connection_string_env`` option, else ``DefaultAzureCredential`` with the ``endpoint`` option
(one per process, without the developer and interactive credentials a server must not wait on).
Nothing secret is stored or logged. Requests use API version ``2023-11-01`` (pinned), a few
quick retries (``AZURE_APPCONFIG_RETRIES``, default 2) and short timeouts
(``AZURE_APPCONFIG_TIMEOUT_SECONDS``, default 10), so a worker never blocks long; the engine
retries transient errors with its own backoff.

Targeting ``rules`` in the document (per-environment targeting for OFREP) are not pushed yet.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from flagdash.backends.base import (
    Backend,
    CheckResult,
    DeploymentSpec,
    DriftError,
    PermanentBackendError,
    RolloutStatus,
    StartResult,
    TransientBackendError,
    parse_retry_after,
    register,
)
from flagdash.backends.endpoints import EndpointNotAllowed, azure_audience, check_endpoint
from flagdash.backends.models import AzureRollout, AzureSettingState, BackendKind
from flagdash.core.canonical import canonical_json, normalize_numbers, sha256_hex

if TYPE_CHECKING:
    from azure.appconfiguration import AzureAppConfigurationClient

logger = logging.getLogger(__name__)
# The SDK logs every request and response (headers redacted) at INFO: quiet unless asked for.
http_logger = logging.getLogger(f"{__name__}.http")
http_logger.setLevel(logging.WARNING)

API_VERSION = "2023-11-01"
FEATURE_FLAG_PREFIX = ".appconfig.featureflag/"
FEATURE_FLAG_CONTENT_TYPE = "application/vnd.microsoft.appconfig.ff+json;charset=utf-8"
TARGETING_FILTER = "Microsoft.Targeting"
MAX_SETTING_BYTES = 10 * 1024  # Azure's limit for one key-value (key, label, value, tags)
FLAG_ID = re.compile(r"^[^:%]*$")  # Microsoft's rule for a feature flag id
ABSENT = "absent"  # the digest of a setting that does not exist
DATA_OWNER_ROLE = "App Configuration Data Owner"
DATA_READER_ROLE = "App Configuration Data Reader"
WRITE_CHECK_KEY = "flagdash-write-check"
WRITE_CHECK_ETAG = "flagdash-write-check-never-matches"


def setting_key(flag_key: str) -> str:
    return FEATURE_FLAG_PREFIX + flag_key


def flag_id(key: str) -> str:
    return key.removeprefix(FEATURE_FLAG_PREFIX)


def value_digest(value: dict[str, Any] | None) -> str:
    """The digest flagdash compares settings by: content type and canonical value."""
    if value is None:
        return ABSENT
    return sha256_hex(FEATURE_FLAG_CONTENT_TYPE + "\n" + canonical_json(normalize_numbers(value)))


def text_digest(content_type: str | None, text: str | None) -> str:
    """The digest of a setting as read from Azure (any content type, any text)."""
    if (content_type or "") == FEATURE_FLAG_CONTENT_TYPE and text is not None:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return value_digest(_normalized_read(parsed))
    return sha256_hex(f"{content_type or ''}\n{text or ''}")


def _normalized_read(value: dict[str, Any]) -> dict[str, Any]:
    """Undo what the SDK's FeatureFlagConfigurationSetting adds when it re-serialises a value."""
    value = dict(value)
    conditions = value.get("conditions")
    if isinstance(conditions, dict) and conditions.get("client_filters") is None:
        value["conditions"] = {**conditions, "client_filters": []}
    return value


def _percent(p: float) -> int:
    """A whole percentage for Azure while a rollout is under way (1–99: never all or none)."""
    return min(99, max(1, round(p)))


def _flag_seed(key: str) -> str:
    return f"flagdash/{key}"


# --- rendering -------------------------------------------------------------------------------


def _variant_value(entry: dict[str, Any], name: str) -> Any:
    for variant in entry.get("variants") or []:
        if variant.get("name") == name:
            return variant.get("value")
    return None


def outcome(entry: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What an application gets from a flag: None (off), ("on",) or ("variant", name, value)."""
    if entry is None or not entry.get("enabled"):
        return None
    if entry.get("kind") == "multivariant":
        name = entry.get("default_variant") or ""
        return ("variant", name, canonical_json(_variant_value(entry, name)))
    return ("on",)


def flag_value(key: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A flag's final setting value (FeatureFlag v2 schema)."""
    value: dict[str, Any] = {
        "id": key,
        "description": entry.get("description") or "",
        "display_name": entry.get("name") or key,
        "enabled": bool(entry.get("enabled")),
        "conditions": {"client_filters": []},
    }
    if entry.get("kind") == "multivariant":
        value["variants"] = [
            {"name": v["name"], "configuration_value": v.get("value")}
            for v in entry.get("variants") or []
        ]
        value["allocation"] = {
            "default_when_enabled": entry.get("default_variant") or None,
            "seed": _flag_seed(key),
        }
    attribute_values = entry.get("attribute_values") or {}
    if attribute_values:
        value["telemetry"] = {
            "enabled": False,
            "metadata": {
                name: canonical_json(attribute_values[name]) for name in sorted(attribute_values)
            },
        }
    return value


def _targeting(percentage: int) -> dict[str, Any]:
    return {
        "name": TARGETING_FILTER,
        "parameters": {
            "Audience": {
                "Users": [],
                "Groups": [],
                "DefaultRolloutPercentage": percentage,
            }
        },
    }


def _with_variant(value: dict[str, Any], name: str, variant_value: Any) -> str:
    """Make sure ``value`` has a variant serving ``variant_value``; return its name."""
    variants = value.setdefault("variants", [])
    for variant in variants:
        if variant["name"] == name and canonical_json(
            variant.get("configuration_value")
        ) == canonical_json(variant_value):
            return name
    names = {v["name"] for v in variants}
    unique = name
    while unique in names:
        unique = f"{unique}~previous"
    variants.append({"name": unique, "configuration_value": variant_value})
    return unique


def transition_kind(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """How a flag moves from one version to the next: "" (at once), "enable", "disable",
    "variant" (a percentile split between the old and new default variant)."""
    before, after = outcome(old), outcome(new)
    if before == after:
        return ""
    if before is None:
        return "enable"
    if after is None:
        return "disable"
    if (
        new is not None
        and old is not None
        and new.get("kind") == "multivariant"
        and old.get("kind") == "multivariant"
    ):
        return "variant"
    return ""


def step_value(
    key: str, old: dict[str, Any] | None, new: dict[str, Any] | None, percentage: float
) -> dict[str, Any] | None:
    """The setting for ``key`` when ``percentage`` % of targets have the new version."""
    if percentage >= 100:
        return None if new is None else flag_value(key, new)
    kind = transition_kind(old, new)
    if kind == "enable" and new is not None:
        value = flag_value(key, new)
        value["conditions"]["client_filters"] = [_targeting(_percent(percentage))]
        return value
    if kind == "disable" and old is not None:
        base = new if new is not None else old
        value = flag_value(key, base)
        value["enabled"] = True
        value["conditions"]["client_filters"] = [_targeting(100 - _percent(percentage))]
        if old.get("kind") == "multivariant" and base.get("kind") == "multivariant":
            old_name = old.get("default_variant") or ""
            name = _with_variant(value, old_name, _variant_value(old, old_name))
            value.setdefault("allocation", {"seed": _flag_seed(key)})["default_when_enabled"] = name
        return value
    if kind == "variant" and old is not None and new is not None:
        value = flag_value(key, new)
        old_name = old.get("default_variant") or ""
        name = _with_variant(value, old_name, _variant_value(old, old_name))
        split = _percent(percentage)
        value["allocation"]["percentile"] = [
            {"variant": new.get("default_variant"), "from": 0, "to": split},
            {"variant": name, "from": split, "to": 100},
        ]
        return value
    if new is None:
        return None if old is None else flag_value(key, old)  # deleted when it reaches 100 %
    return flag_value(key, new)


def _flags(document: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if document is None:
        return {}
    flags = document.get("flags")
    if not isinstance(flags, dict):
        raise PermanentBackendError("The version has no flags object.")
    return flags


def validate_document(document: dict[str, Any], label: str | None) -> None:
    """Refuse, before any call, what Azure would refuse (one detail per flag)."""
    problems: list[str] = []
    for key, entry in sorted(_flags(document).items()):
        if not key or key in (".", "..") or not FLAG_ID.match(key):
            problems.append(f"{key!r}: a feature flag id cannot be empty or contain ':' or '%'.")
            continue
        if entry.get("kind") == "multivariant":
            names = [v.get("name") for v in entry.get("variants") or []]
            if entry.get("default_variant") not in names:
                problems.append(
                    f"{key}: the default variant {entry.get('default_variant')!r} is not one of "
                    "its variants."
                )
        text = canonical_json(flag_value(key, entry))
        size = len((setting_key(key) + (label or "") + text).encode()) + 64
        if size > MAX_SETTING_BYTES:
            problems.append(
                f"{key}: its setting would be {size:,} bytes; Azure App Configuration allows "
                f"{MAX_SETTING_BYTES:,} bytes per key-value (shorten the description, the "
                "variants or the attribute values)."
            )
    if problems:
        raise PermanentBackendError(
            f"Azure App Configuration would refuse {len(problems)} flag(s) of this version.",
            details=problems,
        )


# --- talking to Azure ------------------------------------------------------------------------


@dataclass(frozen=True)
class Actual:
    """A setting as read from Azure."""

    key: str
    etag: str
    digest: str
    locked: bool
    last_modified: dt.datetime | None
    value: dict[str, Any] | None


def _retry_after(exc: Any) -> float | None:
    """How long Azure asked to wait (seconds): ``retry-after-ms``, ``x-ms-retry-after-ms`` or
    ``Retry-After`` (seconds or an HTTP date), as azure-core reads them."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        raw = headers.get(name)
        if raw:
            with contextlib.suppress(ValueError):
                return max(0.0, float(raw) / 1000.0)
    return parse_retry_after(headers.get("Retry-After"))


def _problem_detail(exc: Any) -> str:
    """Azure's own words from an application/problem+json answer, if any."""
    response = getattr(exc, "response", None)
    if response is None:
        return ""
    try:
        body = json.loads(response.text() or "{}")
    except (ValueError, TypeError, AttributeError):
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
    return ": ".join(parts)


def _status(exc: Any) -> int | None:
    code = getattr(exc, "status_code", None)
    if code is None and getattr(exc, "response", None) is not None:
        code = getattr(exc.response, "status_code", None)
    return int(code) if code is not None else None


class _ModestRetry:
    """Factory for azure-core's RetryPolicy that never waits long inside a worker."""

    @staticmethod
    def build(retries: int, max_wait: float) -> Any:
        from azure.core.pipeline.policies import RetryPolicy

        class ModestRetryPolicy(RetryPolicy):  # type: ignore[misc]
            def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
                wait = self.get_retry_after(response)
                if wait is not None and wait > max_wait:
                    return False  # the engine waits instead, without holding a worker
                return bool(super().is_retry(settings, response))

        return ModestRetryPolicy(
            retry_total=retries,
            retry_connect=retries,
            retry_read=retries,
            retry_status=retries,
            retry_backoff_factor=0.4,
            retry_backoff_max=2,
            timeout=max(5.0, 3 * _timeout()),
        )


def _timeout() -> float:
    return float(getattr(settings, "AZURE_APPCONFIG_TIMEOUT_SECONDS", 10))


def _retries() -> int:
    return int(getattr(settings, "AZURE_APPCONFIG_RETRIES", 2))


# DefaultAzureCredential, limited to what a server has: a service principal in the environment,
# workload identity, managed identity. The developer tools (Azure CLI, PowerShell, Developer CLI,
# VS Code, the shared token cache, the Windows broker) and the interactive browser are left out:
# in a web request ("Test connection") or a worker they would start subprocesses or wait for a
# person, and stall the request for up to their 10-second timeouts each.
SERVER_CREDENTIAL_EXCLUDES = {
    "exclude_cli_credential": True,
    "exclude_powershell_credential": True,
    "exclude_developer_cli_credential": True,
    "exclude_visual_studio_code_credential": True,
    "exclude_shared_token_cache_credential": True,
    "exclude_interactive_browser_credential": True,
    "exclude_broker_credential": True,
}
_credential_lock = threading.Lock()
_credential: tuple[int, Any] | None = None


def _default_credential() -> Any:
    """One DefaultAzureCredential per process (created once under a lock; a forked child makes
    its own), so its tokens are cached between calls."""
    global _credential
    with _credential_lock:
        if _credential is None or _credential[0] != os.getpid():
            from azure.identity import DefaultAzureCredential

            _credential = (os.getpid(), DefaultAzureCredential(**SERVER_CREDENTIAL_EXCLUDES))
        return _credential[1]


def _format_time(when: dt.datetime | None) -> str:
    return f" (last modified {when:%Y-%m-%d %H:%M} UTC)" if when else ""


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


@register
class AzureAppConfigBackend(Backend):
    kind = BackendKind.AZURE_APPCONFIG
    self_driven = True

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self._client_cache: AzureAppConfigurationClient | None = None
        self._endpoint_cache: str | None = None
        self._auth = ""  # how we authenticate, for messages: "the connection string in $X" …

    # --- the connection's settings -------------------------------------------------------------

    @property
    def label(self) -> str | None:
        return str(self.options.get("label") or "") or None

    @property
    def label_text(self) -> str:
        return f"label '{self.label}'" if self.label else "no label"

    @property
    def connection_string_env(self) -> str:
        return str(self.options.get("connection_string_env") or "").strip()

    def _connection_string(self) -> str | None:
        name = self.connection_string_env
        return (os.environ.get(name) or "").strip() or None if name else None

    def _auth_hint(self) -> str:
        if self._connection_string():
            return f"check the connection string in ${self.connection_string_env}"
        return (
            "check the managed identity or Microsoft Entra ID credentials DefaultAzureCredential "
            "uses"
        )

    def _client(self) -> AzureAppConfigurationClient:
        """The SDK client (raises PermanentBackendError when the settings cannot work)."""
        if self._client_cache is not None:
            return self._client_cache
        from azure.appconfiguration import AzureAppConfigurationClient
        from azure.core.pipeline.policies import HttpLoggingPolicy

        common: dict[str, Any] = {
            "api_version": API_VERSION,
            "http_logging_policy": HttpLoggingPolicy(logger=http_logger),
            "retry_policy": _ModestRetry.build(_retries(), max_wait=min(5.0, _timeout())),
            "connection_timeout": min(5.0, _timeout()),
            "read_timeout": _timeout(),
        }
        connection_string = self._connection_string()
        if connection_string:
            try:
                parts = dict(
                    part.strip().split("=", 1) for part in connection_string.split(";") if part
                )
                endpoint = parts["Endpoint"]
                base64.b64decode(parts["Secret"], validate=True)
                if not parts.get("Id") or urlsplit(endpoint).scheme not in ("http", "https"):
                    raise ValueError("incomplete")
                client = AzureAppConfigurationClient.from_connection_string(
                    connection_string, **common
                )
            except (ValueError, KeyError, binascii.Error):
                raise PermanentBackendError(
                    f"The connection string in ${self.connection_string_env} is not valid: "
                    "expected Endpoint=https://<store>.azconfig.io;Id=<access key id>;"
                    "Secret=<access key secret>, as in the store's Access settings."
                ) from None
            configured = str(self.options.get("endpoint") or "").strip()
            if configured and _host(configured) != _host(endpoint):
                raise PermanentBackendError(
                    f"The connection string in ${self.connection_string_env} is for "
                    f"{_host(endpoint)}, but this environment's store is {_host(configured)}: "
                    "flagdash will not write one environment's flags into another store. Name "
                    "the variable that holds this store's connection string."
                )
            self._auth = f"the connection string in ${self.connection_string_env}"
        else:
            endpoint = str(self.options.get("endpoint") or "").strip()
            if not endpoint:
                missing = (
                    f"${self.connection_string_env} is not set"
                    if self.connection_string_env
                    else "no connection string variable is configured"
                )
                raise PermanentBackendError(
                    f"No Azure App Configuration endpoint: {missing} and the connection has no "
                    "endpoint for DefaultAzureCredential."
                )
            if urlsplit(endpoint).scheme != "https":
                raise PermanentBackendError(
                    f"The endpoint {endpoint} must start with https:// to sign in with "
                    "DefaultAzureCredential (Microsoft Entra ID)."
                )
            client = AzureAppConfigurationClient(
                endpoint, _default_credential(), audience=azure_audience(endpoint), **common
            )
            self._auth = "DefaultAzureCredential"
        try:
            check_endpoint(endpoint, "azure_appconfig")
        except EndpointNotAllowed as exc:
            raise PermanentBackendError(str(exc)) from None
        self._endpoint_cache = endpoint.rstrip("/").lower()
        self._client_cache = client
        return client

    @property
    def endpoint(self) -> str:
        if self._endpoint_cache is None:
            self._client()
        return self._endpoint_cache or ""

    @contextlib.contextmanager
    def _azure(self, what: str, *, expected: tuple[int, ...] = ()) -> Iterator[None]:
        """Turn the SDK's errors into flagdash's, with a message a person can act on.

        Errors with a status in ``expected`` (412 for a conditional write) reach the caller.
        """
        from azure.appconfiguration import ResourceReadOnlyError
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        where = self.endpoint
        try:
            yield
        except ResourceReadOnlyError as exc:
            raise self._locked_error([_locked_key(exc) or what]) from None
        except ClientAuthenticationError as exc:
            if _status(exc) == 401:
                raise PermanentBackendError(
                    f"Azure App Configuration at {where} refused the credentials (401) while "
                    f"{what}: {self._auth_hint()} (the access key may have been regenerated)."
                ) from None
            first_line = (str(getattr(exc, "message", "") or exc).splitlines() or [""])[0]
            unset = (
                f"${self.connection_string_env} is not set and "
                if self.connection_string_env
                else ""
            )
            raise PermanentBackendError(
                f"No Azure credentials while {what}: {unset}DefaultAzureCredential found none "
                f"({first_line[:300]}). Set ${self.connection_string_env or 'the variable'} to "
                "the store's connection string, or give this host a managed identity."
            ) from None
        except HttpResponseError as exc:
            status = _status(exc)
            if status in expected:
                raise
            detail = _problem_detail(exc)
            if status == 403:
                raise PermanentBackendError(
                    f"Azure App Configuration at {where} forbids {what} (403): the identity "
                    f"needs the '{DATA_OWNER_ROLE}' role on the store ('{DATA_READER_ROLE}' "
                    "only reads), or use a read-write access key."
                    + (f" Azure said: {detail}" if detail else "")
                ) from None
            if status == 409:
                raise self._locked_error([_locked_key(exc) or what]) from None
            if status in (408, 429) or (status is not None and status >= 500):
                wait = _retry_after(exc)
                asked = f"; it asked to wait {wait:g} s" if wait else ""
                reason = "is throttling requests" if status == 429 else "did not answer properly"
                raise TransientBackendError(
                    f"Azure App Configuration at {where} {reason} ({status}) while {what}"
                    f"{asked}." + (f" {detail}" if detail and status != 429 else ""),
                    retry_in=wait,
                ) from None
            raise PermanentBackendError(
                f"Azure App Configuration at {where} refused {what} ({status}): "
                f"{detail or exc.reason or exc}"
            ) from None
        except ServiceRequestError as exc:
            raise TransientBackendError(
                f"Could not reach Azure App Configuration at {where} while {what}: {_short(exc)}"
            ) from None
        except ServiceResponseError as exc:
            raise TransientBackendError(
                f"Azure App Configuration at {where} did not answer in time while {what}: "
                f"{_short(exc)}"
            ) from None
        except AzureError as exc:
            raise TransientBackendError(
                f"Azure App Configuration at {where} failed while {what}: {_short(exc)}"
            ) from None

    def _locked_error(self, keys: list[str]) -> PermanentBackendError:
        label = f" --label '{self.label}'" if self.label else ""
        return PermanentBackendError(
            f"{len(keys)} feature flag setting(s) are locked (read-only) in Azure App "
            f"Configuration at {self.endpoint}, {self.label_text}: unlock them (portal: "
            "Configuration explorer → … → Unlock, or az appconfig kv unlock) and deploy again.",
            details=[
                f"{flag_id(key)}: az appconfig kv unlock --endpoint {self.endpoint} "
                f"--key '{key}'{label} --auth-mode login"
                for key in keys
            ],
        )

    # --- reading ---------------------------------------------------------------------------

    def _read(self, setting: Any) -> Actual:
        text = setting.value
        value: dict[str, Any] | None = None
        if text:
            with contextlib.suppress(ValueError):
                parsed = json.loads(text)
                value = _normalized_read(parsed) if isinstance(parsed, dict) else None
        return Actual(
            key=setting.key,
            etag=str(setting.etag or "").strip('"'),
            digest=text_digest(setting.content_type, text),
            locked=bool(setting.read_only),
            last_modified=setting.last_modified,
            value=value,
        )

    def _label_filter(self) -> str:
        if self.label is None:
            return "\0"
        return re.sub(r"([\\*,])", r"\\\1", self.label)

    def _list(self, *, one_page: bool = False) -> dict[str, Actual]:
        """Every feature-flag setting with the connection's label, by key."""
        client = self._client()
        found: dict[str, Actual] = {}
        with self._azure(f"listing the feature flags with {self.label_text}"):
            pages = client.list_configuration_settings(
                key_filter=FEATURE_FLAG_PREFIX + "*", label_filter=self._label_filter()
            ).by_page()
            for page in pages:
                for setting in page:
                    found[setting.key] = self._read(setting)
                if one_page:
                    break
        return found

    def _get(self, key: str) -> Actual | None:
        from azure.core.exceptions import ResourceNotFoundError

        client = self._client()
        with self._azure(f"reading {key}"):
            try:
                setting = client.get_configuration_setting(key, label=self.label)
            except ResourceNotFoundError:
                return None
        return None if setting is None else self._read(setting)

    # --- remembering what flagdash wrote ----------------------------------------------------

    def _states(self) -> dict[str, AzureSettingState]:
        return {
            row.key: row
            for row in AzureSettingState.objects.filter(
                connection=self.connection, endpoint=self.endpoint, label=self.label or ""
            )
        }

    def _state(self, key: str) -> AzureSettingState:
        row, _ = AzureSettingState.objects.get_or_create(
            connection=self.connection,
            endpoint=self.endpoint,
            label=self.label or "",
            key=key,
            defaults={"etag": "", "digest": ABSENT},
        )
        return row

    @staticmethod
    def _remember(
        row: AzureSettingState, etag: str, digest: str, deployment_id: int | None
    ) -> None:
        row.etag, row.digest, row.pending_digest = etag, digest, ""
        if deployment_id is not None:
            row.deployment_id = deployment_id
        row.save(update_fields=["etag", "digest", "pending_digest", "deployment_id", "updated_at"])

    def _drift_line(self, key: str, what: str, when: dt.datetime | None = None) -> str:
        return f"{flag_id(key)} ({key}, {self.label_text}): {what}{_format_time(when)}"

    # --- writing ---------------------------------------------------------------------------

    def _ensure(
        self,
        key: str,
        value: dict[str, Any] | None,
        *,
        deployment_id: int,
        version_number: int | None,
        overwrite: bool = False,
    ) -> bool:
        """Make Azure hold ``value`` (None: no setting) for ``key``. True if it wrote."""
        want = value_digest(value)
        row = self._state(key)
        if row.pending_digest:
            self._resolve_pending(row)
        if row.digest == want:
            return False
        row.pending_digest = want
        row.save(update_fields=["pending_digest", "updated_at"])
        try:
            etag = self._write(key, value, row.etag, version_number)
        except _PreconditionFailed:
            current = self._get(key)
            current_digest = current.digest if current else ABSENT
            if current_digest == want:  # our own write landed; its answer was lost
                self._remember(row, current.etag if current else "", want, deployment_id)
                return True
            if not overwrite:
                row.pending_digest = ""
                row.save(update_fields=["pending_digest", "updated_at"])
                what = "deleted" if current is None else "changed"
                raise DriftError(
                    f"{flag_id(key)} was {what} in Azure App Configuration outside flagdash "
                    "while flagdash was deploying; nothing was overwritten.",
                    details=[
                        self._drift_line(
                            key,
                            f"{what} outside flagdash",
                            current.last_modified if current else None,
                        )
                    ],
                ) from None
            etag = self._write(key, value, current.etag if current else "", version_number)
        self._remember(row, etag, want, deployment_id)
        return True

    def _write(
        self, key: str, value: dict[str, Any] | None, etag: str, version_number: int | None
    ) -> str:
        """One conditional write; returns the new ETag ("" after a delete)."""
        from azure.appconfiguration import ConfigurationSetting
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )

        client = self._client()
        try:
            if value is None:
                if not etag:
                    return ""
                with self._azure(f"deleting {key}", expected=(412,)):
                    client.delete_configuration_setting(
                        key,
                        label=self.label,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                return ""
            tags = {"managed-by": "flagdash"}
            if version_number is not None:
                tags["flagdash-version"] = str(version_number)
            setting = ConfigurationSetting(
                key=key,
                label=self.label,
                value=canonical_json(value),
                content_type=FEATURE_FLAG_CONTENT_TYPE,
                tags=tags,
            )
            with self._azure(f"writing {key}", expected=(412,)):
                if etag:
                    result = client.set_configuration_setting(
                        setting, match_condition=MatchConditions.IfNotModified, etag=etag
                    )
                else:
                    result = client.set_configuration_setting(
                        setting, match_condition=MatchConditions.IfMissing
                    )
            return str(result.etag or "").strip('"')
        except (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError) as exc:
            if _status(exc) == 412:
                raise _PreconditionFailed(key) from None
            raise

    def _resolve_pending(self, row: AzureSettingState) -> None:
        """A write was under way when a worker stopped: did it reach Azure?"""
        current = self._get(row.key)
        current_digest = current.digest if current else ABSENT
        current_etag = current.etag if current else ""
        if current_digest == row.pending_digest:
            self._remember(row, current_etag, row.pending_digest, None)
        else:
            row.pending_digest = ""  # it did not land; Azure still has what the row says (or drift)
            row.save(update_fields=["pending_digest", "updated_at"])

    # --- rollouts ----------------------------------------------------------------------------

    def render(self, document: dict[str, Any]) -> list[dict[str, Any]]:
        """The version as Azure settings: key, label, content type and value of each flag."""
        validate_document(document, self.label)
        return [
            {
                "key": setting_key(key),
                "label": self.label,
                "content_type": FEATURE_FLAG_CONTENT_TYPE,
                "value": flag_value(key, entry),
            }
            for key, entry in sorted(_flags(document).items())
        ]

    def _targets(self, spec: DeploymentSpec, percentage: float) -> dict[str, dict[str, Any] | None]:
        """Every setting the deployment decides, as it should be at ``percentage``."""
        new, old = _flags(spec.document), _flags(spec.previous_document)
        return {
            setting_key(key): step_value(key, old.get(key), new.get(key), percentage)
            for key in sorted(set(new) | set(old))
        }

    def _restore_targets(self, spec: DeploymentSpec) -> dict[str, dict[str, Any] | None]:
        new, old = _flags(spec.document), _flags(spec.previous_document)
        return {
            setting_key(key): (flag_value(key, old[key]) if key in old else None)
            for key in sorted(set(new) | set(old))
        }

    def _all_steps(self, spec: DeploymentSpec) -> list[dict[str, dict[str, Any] | None]]:
        return [self._targets(spec, p) for p in [*spec.plan.percentages(), 100.0]]

    def _reconcile(self, spec: DeploymentSpec, actual: dict[str, Actual]) -> list[str]:
        """Compare Azure with what flagdash last wrote; raise DriftError or adopt (overwrite)."""
        rows = self._states()
        steps = self._all_steps(spec)
        first = steps[0]
        drift: list[str] = []
        adopt: list[str] = []
        for key in sorted(set(rows) | set(actual)):
            row, kv = rows.get(key), actual.get(key)
            kv_digest = kv.digest if kv else ABSENT
            if row is not None and row.pending_digest and row.pending_digest == kv_digest:
                self._remember(row, kv.etag if kv else "", kv_digest, None)
                continue
            if row is None:
                if kv is None:
                    continue
                if kv_digest == value_digest(first.get(key)):
                    adopt.append(key)  # already what flagdash would write: take it as ours
                    continue
                drift.append(self._drift_line(key, "added outside flagdash", kv.last_modified))
            elif kv is None:
                if row.digest != ABSENT:
                    drift.append(self._drift_line(key, "deleted outside flagdash"))
            elif row.digest == ABSENT:
                drift.append(self._drift_line(key, "added outside flagdash", kv.last_modified))
            elif kv.etag != row.etag:
                drift.append(self._drift_line(key, "changed outside flagdash", kv.last_modified))
        for key in adopt:
            kv = actual[key]
            self._remember(self._state(key), kv.etag, kv.digest, None)
        if drift and not spec.overwrite_drift:
            raise DriftError(
                f"{len(drift)} feature flag setting(s) with {self.label_text} in {self.endpoint} "
                "changed outside flagdash since its last deployment to this environment; "
                "nothing was overwritten. Deploy again and choose to overwrite them, or copy "
                "the changes into flagdash first.",
                details=drift,
            )
        if drift:
            for key in sorted(set(rows) | set(actual)):
                kv = actual.get(key)
                self._remember(
                    self._state(key), kv.etag if kv else "", kv.digest if kv else ABSENT, None
                )
        # Settings outside any version that flagdash now owns under this label go away.
        locked = [
            key
            for key, kv in sorted(actual.items())
            if kv.locked and any(value_digest(step.get(key)) != kv.digest for step in steps)
        ]
        if locked:
            raise self._locked_error(locked)
        return drift

    def start(self, spec: DeploymentSpec, now: dt.datetime) -> StartResult:
        validate_document(spec.document, self.label)
        rollout, _ = AzureRollout.objects.get_or_create(
            deployment_id=spec.deployment_id,
            defaults={
                "connection": self.connection,
                "endpoint": self.endpoint,
                "label": self.label or "",
            },
        )
        if rollout.started_at is None:
            actual = self._list()
            overwritten = self._reconcile(spec, actual)
            extra = {k: None for k in actual if k not in self._targets(spec, 0)}
            first = spec.plan.at(0).percentage
            targets = {**extra, **self._targets(spec, first)}
            written = 0
            for key, value in sorted(targets.items()):
                written += self._ensure(
                    key,
                    value,
                    deployment_id=spec.deployment_id,
                    version_number=spec.version_number,
                    overwrite=spec.overwrite_drift,
                )
            message = (
                f"Wrote {written} feature flag setting(s) to {self.endpoint} with "
                f"{self.label_text} at {first:g} %"
            )
            if overwritten:
                message += (
                    f"; overwrote {len(overwritten)} setting(s) changed outside flagdash: "
                    + "; ".join(overwritten)
                )
            rollout.started_at = now
            rollout.applied_percentage = first
            rollout.full_at = now if first >= 100 else None
            rollout.message = message[:1000]
            rollout.overwritten = overwritten
            rollout.save()
            logger.info("azure deployment %s: %s", spec.deployment_id, message)
        return StartResult(
            backend_ref=f"azure-{spec.deployment_id}",
            backend_data=self._data(spec, rollout),
            message=rollout.message,
        )

    def _data(self, spec: DeploymentSpec, rollout: AzureRollout) -> dict[str, Any]:
        new, old = _flags(spec.document), _flags(spec.previous_document)
        gradual = {
            key: kind
            for key in sorted(set(new) | set(old))
            if (kind := transition_kind(old.get(key), new.get(key)))
        }
        data: dict[str, Any] = {
            "endpoint": rollout.endpoint,
            "label": rollout.label,
            "started_at": rollout.started_at.isoformat() if rollout.started_at else None,
            "applied_percentage": rollout.applied_percentage,
            "gradual": gradual,
        }
        if rollout.overwritten:
            data["overwritten"] = rollout.overwritten
        return data

    def _rollout(self, spec: DeploymentSpec) -> AzureRollout:
        rollout = AzureRollout.objects.filter(deployment_id=spec.deployment_id).first()
        if rollout is None or rollout.started_at is None:
            raise PermanentBackendError(
                f"flagdash has no Azure rollout for deployment {spec.deployment_id}."
            )
        return rollout

    def status(self, spec: DeploymentSpec, now: dt.datetime) -> RolloutStatus:
        """Write the step the plan says is due (never one already written, never going back).

        The final bake counts from when 100 % was actually written: a rollout whose worker was
        away past the plan's end still bakes in full before it is complete.
        """
        rollout = self._rollout(spec)
        if rollout.stopped_at is not None:
            return RolloutStatus("rolled_back", 0.0, backend_data=self._data(spec, rollout))
        started = rollout.started_at or now  # _rollout() checked it is set
        point = spec.plan.at((now - started).total_seconds())
        target = point.percentage
        if target > rollout.applied_percentage:
            for key, value in self._targets(spec, target).items():
                self._ensure(
                    key,
                    value,
                    deployment_id=spec.deployment_id,
                    version_number=spec.version_number,
                )
            rollout.applied_percentage = target
            if target >= 100 and rollout.full_at is None:
                rollout.full_at = now
            rollout.save(update_fields=["applied_percentage", "full_at"])
            logger.info("azure deployment %s: at %g %%", spec.deployment_id, target)
        state, next_check_in = point.state, point.next_change_in
        if state == "complete" and rollout.full_at is not None:
            bake_end = rollout.full_at + dt.timedelta(seconds=spec.plan.final_bake_seconds)
            if now < bake_end:
                state, next_check_in = "baking", (bake_end - now).total_seconds()
        if state == "complete" and rollout.completed_at is None:
            rollout.completed_at = now
            rollout.save(update_fields=["completed_at"])
        return RolloutStatus(
            state,
            rollout.applied_percentage,
            next_check_in=next_check_in,
            backend_data=self._data(spec, rollout),
        )

    def stop(self, spec: DeploymentSpec, now: dt.datetime) -> RolloutStatus:
        """Write the previous version's settings back (flags it did not have are deleted).

        A setting changed outside flagdash meanwhile is left alone (unless the deployment
        overwrites drift); the others are restored, then DriftError names what was left.
        """
        drift: list[str] = []
        for key, value in self._restore_targets(spec).items():
            try:
                self._ensure(
                    key,
                    value,
                    deployment_id=spec.deployment_id,
                    version_number=spec.previous_version_number,
                    overwrite=spec.overwrite_drift,
                )
            except DriftError as exc:
                drift.extend(exc.details)
        with transaction.atomic():
            rollout = (
                AzureRollout.objects.select_for_update()
                .filter(deployment_id=spec.deployment_id)
                .first()
            )
            if rollout is not None and rollout.stopped_at is None:
                rollout.stopped_at = now
                rollout.save(update_fields=["stopped_at"])
        if drift:
            raise DriftError(
                f"Rolled back in Azure except {len(drift)} setting(s) changed outside flagdash "
                "during the rollout; those were left as they are.",
                details=drift,
            )
        data = self._data(spec, rollout) if rollout is not None else None
        return RolloutStatus("rolled_back", 0.0, backend_data=data)

    # --- reading back --------------------------------------------------------------------------

    def current(self, application_key: str, environment_key: str) -> dict[str, Any] | None:
        actual = self._list()
        flags: dict[str, Any] = {}
        for key, kv in sorted(actual.items()):
            if kv.value is None:
                continue
            flags[flag_id(key)] = document_entry(kv.value)
        if not flags:
            return None
        return {
            "schema": 1,
            "application": application_key,
            "environment": environment_key,
            "flags": flags,
        }

    def check(self) -> CheckResult:
        details: list[str] = []
        try:
            self._client()
            details.append(f"Endpoint: {self.endpoint}")
            details.append(f"Label: {self.label or '(no label)'}")
            details.append(f"Credentials: {self._auth}")
            found = self._list(one_page=True)
            details.append(
                f"Read {len(found)} feature flag(s) with {self.label_text}"
                + (" (first page)" if len(found) >= 100 else "")
            )
            details.append(self._check_write())
        except PermanentBackendError as exc:
            return CheckResult(False, exc.message, details + exc.details)
        except TransientBackendError as exc:
            return CheckResult(False, exc.message, details)
        except Exception as exc:  # check() never raises: the page shows what went wrong
            logger.exception("azure check failed")
            return CheckResult(False, f"Unexpected error: {_short(exc)}", details)
        return CheckResult(
            True,
            f"Connected to {self.endpoint} ({self.label_text}); flagdash can read and write "
            "feature flags.",
            details,
        )

    def _check_write(self) -> str:
        """Prove write permission with a write that cannot succeed (If-Match a made-up ETag)."""
        from azure.appconfiguration import ConfigurationSetting
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        client = self._client()
        setting = ConfigurationSetting(key=WRITE_CHECK_KEY, label=self.label, value="")
        try:
            with self._azure(
                "checking write permission (a conditional write that cannot succeed)",
                expected=(412,),
            ):
                client.set_configuration_setting(
                    setting, match_condition=MatchConditions.IfNotModified, etag=WRITE_CHECK_ETAG
                )
        except ResourceModifiedError:
            return "Write permission: verified (Azure refused a write that could not match, 412)"
        raise PermanentBackendError(
            f"A write to {WRITE_CHECK_KEY} that could not match succeeded; delete that setting."
        )


class _PreconditionFailed(Exception):
    """412: the setting is not what flagdash's condition said."""


def _locked_key(exc: Any) -> str:
    try:
        body = json.loads(exc.response.text() or "{}")
    except (ValueError, TypeError, AttributeError):
        return ""
    return str(body.get("name") or "") if isinstance(body, dict) else ""


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def document_entry(value: dict[str, Any]) -> dict[str, Any]:
    """A feature-flag setting's value in flagdash's document shape, as far as it goes."""
    entry: dict[str, Any] = {
        "name": value.get("display_name") or value.get("id") or "",
        "description": value.get("description") or "",
        "enabled": bool(value.get("enabled")),
    }
    variants = value.get("variants")
    if isinstance(variants, list) and variants:
        entry["kind"] = "multivariant"
        entry["variants"] = [
            {"name": v.get("name"), "value": v.get("configuration_value")}
            for v in variants
            if isinstance(v, dict)
        ]
        allocation = value.get("allocation") or {}
        entry["default_variant"] = allocation.get("default_when_enabled") or ""
    else:
        entry["kind"] = "boolean"
    metadata = (value.get("telemetry") or {}).get("metadata") or {}
    attribute_values: dict[str, Any] = {}
    for name, text in metadata.items():
        if not name[:1].islower():
            continue  # not one of flagdash's (providers add ETag, FeatureFlagReference, …)
        try:
            attribute_values[name] = json.loads(text)
        except (TypeError, ValueError):
            attribute_values[name] = text
    entry["attribute_values"] = attribute_values
    for client_filter in (value.get("conditions") or {}).get("client_filters") or []:
        if isinstance(client_filter, dict) and client_filter.get("name") == TARGETING_FILTER:
            audience = (client_filter.get("parameters") or {}).get("Audience") or {}
            entry["rollout_percentage"] = audience.get("DefaultRolloutPercentage")
    return entry
