"""The in-memory, compiled copy of what every environment serves, and the API keys.

Evaluation never queries the database per request. Each process keeps one ``Snapshot``:

- per environment, the stable version served to everyone and, during a gradual rollout on the
  built-in backend, the candidate version with its percentage (``LocalServedState``); for an
  environment on another backend, its live version;
- each of those versions compiled once (rules as closures; versions are immutable, so a
  compiled version is reused until no environment serves it);
- the SHA-256 of every active API key with its environment.

Freshness: at most every ``OFREP_REFRESH_SECONDS`` (1 s) a request reads two cache tokens, which
the built-in backend (every rollout step) and the key services replace after each commit; a
changed token reloads the snapshot (three small queries, plus one per version not yet
compiled). Every ``OFREP_RESYNC_SECONDS`` (30 s) it reloads anyway, so a lost cache write or a
cloud backend's new live version is noticed too. A reload happens in the request that finds it
due; other threads keep answering from the previous snapshot meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache

from flagdash.backends.local import SERVED_TOKEN_CACHE_KEY
from flagdash.core.canonical import canonical_json
from flagdash.evaluation.models import ApiKey
from flagdash.evaluation.rules import BOOLEAN_VARIANTS, CompiledRule, compile_rules
from flagdash.evaluation.services import KEYS_TOKEN_CACHE_KEY
from flagdash.flags import documents
from flagdash.flags.models import ConfigVersion, Environment, ValueType


@dataclass(frozen=True)
class CompiledFlag:
    key: str
    value_type: str
    enabled: bool
    variants: Mapping[str, Any]  # name → value (booleans: on → true, off → false)
    default_variant: str
    off_variant: str  # what a disabled flag serves
    rules: tuple[CompiledRule, ...]
    metadata: Mapping[str, str | int | float | bool]
    entry: Mapping[str, Any]  # the version document's entry, for the flagd export


@dataclass(frozen=True)
class CompiledVersion:
    version_id: int
    number: int
    flags: Mapping[str, CompiledFlag]


@dataclass(frozen=True)
class ServedEnvironment:
    environment_id: int
    application_key: str
    environment_key: str
    stable: CompiledVersion | None
    candidate: CompiledVersion | None = None
    candidate_percentage: float = 0.0

    @property
    def flag_keys(self) -> list[str]:
        keys = set(self.stable.flags) if self.stable else set()
        if self.candidate is not None:
            keys |= set(self.candidate.flags)
        return sorted(keys)


@dataclass(frozen=True)
class KeyEntry:
    key_id: int
    environment_id: int
    key_hash: str


@dataclass(frozen=True)
class Snapshot:
    environments: Mapping[int, ServedEnvironment]
    keys: Mapping[str, KeyEntry]  # sha256 hex → key
    tokens: tuple[Any, Any]
    loaded_at: float  # time.monotonic()
    versions: Mapping[int, CompiledVersion] = field(default_factory=dict)


def _metadata(number: int, entry: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """OFREP flag metadata: the version number and the flag's attribute values.

    Metadata values are strings, numbers or booleans; lists become JSON text.
    """
    meta: dict[str, str | int | float | bool] = {"flagdash.version": number}
    for name, value in (entry.get("attribute_values") or {}).items():
        if isinstance(value, str | int | float | bool):
            meta[name] = value
        else:
            meta[name] = canonical_json(value)
    return meta


def _typed(value_type: str, value: Any) -> Any:
    """The value as its declared type, so a float flag's 1 is served as 1.0."""
    if value_type == ValueType.FLOAT:
        return float(value)
    if value_type == ValueType.INTEGER:
        return int(value)
    return value


def compile_flag(key: str, number: int, entry: Mapping[str, Any]) -> CompiledFlag:
    value_type = entry.get("value_type", ValueType.BOOLEAN)
    if value_type == ValueType.BOOLEAN:
        variants: dict[str, Any] = dict(BOOLEAN_VARIANTS)
        default, off = "on", "off"
    else:
        variants = {v["name"]: _typed(value_type, v["value"]) for v in entry.get("variants", [])}
        default = entry.get("default_variant") or next(iter(variants), "")
        off = default
    return CompiledFlag(
        key=key,
        value_type=value_type,
        enabled=bool(entry.get("enabled")),
        variants=variants,
        default_variant=default,
        off_variant=off,
        rules=compile_rules(entry.get("rules") or []),
        metadata=_metadata(number, entry),
        entry=entry,
    )


def compile_version(version_id: int, number: int, document_text: str) -> CompiledVersion:
    document = documents.load(document_text)
    flags = {
        key: compile_flag(key, number, entry) for key, entry in document.get("flags", {}).items()
    }
    return CompiledVersion(version_id=version_id, number=number, flags=flags)


def _read_tokens() -> tuple[Any, Any]:
    found = cache.get_many([SERVED_TOKEN_CACHE_KEY, KEYS_TOKEN_CACHE_KEY])
    return found.get(SERVED_TOKEN_CACHE_KEY), found.get(KEYS_TOKEN_CACHE_KEY)


def load_snapshot(
    previous: Mapping[int, CompiledVersion] | None = None, tokens: tuple[Any, Any] = (None, None)
) -> Snapshot:
    """Read what is served and the active keys (reusing versions compiled before)."""
    environments = list(
        Environment.objects.select_related("application", "local_state").only(
            "id",
            "key",
            "live_version_id",
            "application__key",
            "local_state__stable_version_id",
            "local_state__candidate_version_id",
            "local_state__candidate_percentage",
        )
    )
    plan: list[tuple[Environment, int | None, int | None, float]] = []
    for env in environments:
        state = getattr(env, "local_state", None)
        if state is not None:
            plan.append(
                (
                    env,
                    state.stable_version_id,
                    state.candidate_version_id,
                    float(state.candidate_percentage),
                )
            )
        else:
            plan.append((env, env.live_version_id, None, 0.0))
    wanted = {v for _, stable, candidate, _ in plan for v in (stable, candidate) if v}
    versions = {vid: c for vid, c in (previous or {}).items() if vid in wanted}
    missing = wanted - set(versions)
    if missing:
        for vid, number, text in ConfigVersion.objects.filter(pk__in=missing).values_list(
            "id", "number", "document"
        ):
            versions[vid] = compile_version(vid, number, text)
    served = {
        env.pk: ServedEnvironment(
            environment_id=env.pk,
            application_key=env.application.key,
            environment_key=env.key,
            stable=versions.get(stable) if stable else None,
            candidate=versions.get(candidate) if candidate else None,
            candidate_percentage=percentage if candidate else 0.0,
        )
        for env, stable, candidate, percentage in plan
    }
    keys = {
        digest: KeyEntry(key_id, env_id, digest)
        for key_id, digest, env_id in ApiKey.objects.filter(revoked_at__isnull=True).values_list(
            "id", "key_hash", "environment_id"
        )
    }
    return Snapshot(
        environments=served,
        keys=keys,
        tokens=tokens,
        loaded_at=time.monotonic(),
        versions=versions,
    )


class SnapshotHolder:
    """One per process: hands out the current snapshot, reloading it when it is stale."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._checked_at = 0.0

    def get(self) -> Snapshot:
        snapshot = self._snapshot
        now = time.monotonic()
        if snapshot is None:
            with self._lock:
                if self._snapshot is None:
                    self._reload(_read_tokens())
                assert self._snapshot is not None  # noqa: S101
                return self._snapshot
        if now - self._checked_at < settings.OFREP_REFRESH_SECONDS:
            return snapshot
        if not self._lock.acquire(blocking=False):
            return snapshot  # another thread is checking: answer from what we have
        try:
            self._checked_at = now
            tokens = _read_tokens()
            if (
                tokens != snapshot.tokens
                or now - snapshot.loaded_at >= settings.OFREP_RESYNC_SECONDS
            ):
                self._reload(tokens)
        finally:
            self._lock.release()
        assert self._snapshot is not None  # noqa: S101
        return self._snapshot

    def _reload(self, tokens: tuple[Any, Any]) -> None:
        previous = self._snapshot.versions if self._snapshot is not None else None
        self._snapshot = load_snapshot(previous, tokens)
        self._checked_at = time.monotonic()

    def reset(self) -> None:
        """Forget the snapshot (tests; the next request loads a fresh one)."""
        with self._lock:
            self._snapshot = None
            self._checked_at = 0.0


holder = SnapshotHolder()


def current() -> Snapshot:
    return holder.get()
