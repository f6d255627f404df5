"""The in-memory, compiled copy of what every environment serves, and the API keys.

Evaluation never queries the database per request. Each process keeps one ``Snapshot``:

- per environment, chosen by the kind of its backend: on the built-in backend, the stable
  version served to everyone and, during a gradual rollout, the candidate version with its
  percentage (``LocalServedState``); on a cloud backend (AWS, Azure), its live version — a
  ``LocalServedState`` left over from when it was on the built-in backend is ignored;
- each of those versions compiled once (rules as closures; versions are immutable, so a
  compiled version is reused until no environment serves it), and only for the environment it
  belongs to: a version of another environment is never served (logged instead);
- the SHA-256 of every active API key with its environment.

Isolation: a version whose document cannot be read, or a flag whose rules do not compile, is
logged once with the version id and does not stop the reload. Its flags (for an unreadable
document, the keys listed in the version's ``flag_digests``) answer ``PARSE_ERROR``; every
other flag and environment is served normally.

Freshness: at most every ``OFREP_REFRESH_SECONDS`` (1 s) a request reads two cache tokens, which
the built-in backend (every rollout step) and the key services replace after each commit; a
changed token reloads the snapshot (three small queries, plus one per version not yet
compiled). Every ``OFREP_RESYNC_SECONDS`` (30 s) it reloads anyway, so a lost cache write or a
cloud backend's new live version is noticed too. A reload happens in the request that finds it
due; other threads keep answering from the previous snapshot meanwhile.

Outages: the cache (Redis) has short timeouts (``REDIS_TIMEOUT_SECONDS``). When the tokens
cannot be read, evaluation goes on from the snapshot it has (a fresh process loads one from the
database); the tokens are not read again for a while (from ``OFREP_REFRESH_SECONDS``, at least
1 s, doubling up to ``OFREP_RESYNC_SECONDS``), so requests do not each wait for a dead Redis,
and the snapshot still reloads from the database every ``OFREP_RESYNC_SECONDS``. One warning is
logged when the outage starts and one line when the cache answers again. A reload that fails
on a database error keeps the previous snapshot (logged the same way).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError

from flagdash.backends.local import SERVED_TOKEN_CACHE_KEY
from flagdash.backends.models import BackendKind
from flagdash.core.canonical import canonical_json
from flagdash.evaluation.models import ApiKey
from flagdash.evaluation.rules import BOOLEAN_VARIANTS, CompiledRule, compile_rules
from flagdash.evaluation.services import KEYS_TOKEN_CACHE_KEY
from flagdash.flags import documents
from flagdash.flags.models import ConfigVersion, Environment, ValueType

logger = logging.getLogger(__name__)

# The tokens of a snapshot loaded while the cache could not be read: unequal to any tokens read
# later, so the first successful read after an outage reloads.
UNKNOWN_TOKENS: tuple[Any, Any] = (object(), object())


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
    error: str = ""  # not empty: the flag's definition could not be compiled (PARSE_ERROR)


@dataclass(frozen=True)
class CompiledVersion:
    version_id: int
    number: int
    flags: Mapping[str, CompiledFlag]
    environment_id: int | None = None  # the environment the version belongs to

    @property
    def broken(self) -> list[str]:
        """Keys of the flags that could not be compiled."""
        return sorted(key for key, flag in self.flags.items() if flag.error)


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


def broken_flag(key: str, number: int, details: str) -> CompiledFlag:
    """A flag whose definition could not be compiled: every evaluation answers PARSE_ERROR."""
    return CompiledFlag(
        key=key,
        value_type=ValueType.BOOLEAN,
        enabled=False,
        variants={},
        default_variant="",
        off_variant="",
        rules=(),
        metadata={"flagdash.version": number},
        entry={},
        error=details,
    )


def compile_version(
    version_id: int,
    number: int,
    document_text: str,
    *,
    environment_id: int | None = None,
    known_keys: Iterable[str] = (),
) -> CompiledVersion:
    """Compile a version; what cannot be compiled is logged and answers PARSE_ERROR.

    A document that cannot be read breaks every flag it lists (``known_keys``: the version's
    ``flag_digests``, stored apart from the document); a flag whose definition does not compile
    breaks only itself. This is the boundary that keeps one bad version from stopping the
    snapshot of every environment, so any exception is caught here (and logged with its trace).
    """
    try:
        document = documents.load(document_text)
        entries = document.get("flags", {})
        if not isinstance(entries, dict):
            raise TypeError(f"“flags” is a {type(entries).__name__}, not an object")
    except Exception:
        logger.exception(
            "Version %s (v%s of environment %s) cannot be read: its flags answer PARSE_ERROR",
            version_id,
            number,
            environment_id,
        )
        details = f"Version {number} of this environment could not be read by flagdash."
        return CompiledVersion(
            version_id=version_id,
            number=number,
            flags={key: broken_flag(key, number, details) for key in known_keys},
            environment_id=environment_id,
        )
    flags: dict[str, CompiledFlag] = {}
    for key, entry in entries.items():
        try:
            flags[key] = compile_flag(key, number, entry)
        except Exception:
            logger.exception(
                "Flag %r of version %s (v%s of environment %s) does not compile: it answers "
                "PARSE_ERROR",
                key,
                version_id,
                number,
                environment_id,
            )
            flags[key] = broken_flag(
                key,
                number,
                f"The definition of “{key[:64]}” in version {number} could not be compiled by "
                "flagdash.",
            )
    return CompiledVersion(
        version_id=version_id, number=number, flags=flags, environment_id=environment_id
    )


def _read_tokens() -> tuple[Any, Any]:
    found = cache.get_many([SERVED_TOKEN_CACHE_KEY, KEYS_TOKEN_CACHE_KEY])
    return found.get(SERVED_TOKEN_CACHE_KEY), found.get(KEYS_TOKEN_CACHE_KEY)


def _plan(env: Environment) -> tuple[int | None, int | None, float]:
    """(stable, candidate, candidate percentage) the environment serves, by its backend kind."""
    if env.backend.kind == BackendKind.LOCAL:
        state = getattr(env, "local_state", None)
        if state is not None:
            return (
                state.stable_version_id,
                state.candidate_version_id,
                float(state.candidate_percentage),
            )
    # A cloud backend serves its live version (a leftover LocalServedState is not what it
    # serves); so does the built-in backend before it has any state.
    return env.live_version_id, None, 0.0


def _own(
    versions: Mapping[int, CompiledVersion], version_id: int | None, env: Environment
) -> CompiledVersion | None:
    """The compiled version, if it belongs to this environment (never another's flags)."""
    if not version_id:
        return None
    version = versions.get(version_id)
    if version is None:
        return None
    if version.environment_id != env.pk:
        logger.error(
            "Environment %s points at version %s of environment %s: not served",
            env.pk,
            version_id,
            version.environment_id,
        )
        return None
    return version


def load_snapshot(
    previous: Mapping[int, CompiledVersion] | None = None, tokens: tuple[Any, Any] = (None, None)
) -> Snapshot:
    """Read what is served and the active keys (reusing versions compiled before)."""
    environments = list(
        Environment.objects.select_related("application", "backend", "local_state").only(
            "id",
            "key",
            "live_version_id",
            "application__key",
            "backend__kind",
            "local_state__stable_version_id",
            "local_state__candidate_version_id",
            "local_state__candidate_percentage",
        )
    )
    plan = [(env, *_plan(env)) for env in environments]
    wanted = {v for _, stable, candidate, _ in plan for v in (stable, candidate) if v}
    versions = {vid: c for vid, c in (previous or {}).items() if vid in wanted}
    missing = wanted - set(versions)
    if missing:
        for vid, number, text, env_id, digests in ConfigVersion.objects.filter(
            pk__in=missing
        ).values_list("id", "number", "document", "environment_id", "flag_digests"):
            versions[vid] = compile_version(
                vid,
                number,
                text,
                environment_id=env_id,
                known_keys=list(digests) if isinstance(digests, dict) else (),
            )
    served = {}
    for env, stable_id, candidate_id, percentage in plan:
        candidate = _own(versions, candidate_id, env)
        served[env.pk] = ServedEnvironment(
            environment_id=env.pk,
            application_key=env.application.key,
            environment_key=env.key,
            stable=_own(versions, stable_id, env),
            candidate=candidate,
            candidate_percentage=percentage if candidate is not None else 0.0,
        )
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
        self._tokens_retry_at = 0.0  # after a failed token read: not before this
        self._tokens_backoff = 0.0
        self._reload_failing = False

    def get(self) -> Snapshot:
        snapshot = self._snapshot
        now = time.monotonic()
        if snapshot is None:
            with self._lock:
                if self._snapshot is None:
                    self._reload(self._tokens(now))  # from the database even if Redis is down
                assert self._snapshot is not None  # noqa: S101
                return self._snapshot
        if now - self._checked_at < settings.OFREP_REFRESH_SECONDS:
            return snapshot
        if not self._lock.acquire(blocking=False):
            return snapshot  # another thread is checking: answer from what we have
        try:
            self._checked_at = now
            tokens = self._tokens(now)
            resync = now - snapshot.loaded_at >= settings.OFREP_RESYNC_SECONDS
            changed = tokens is not UNKNOWN_TOKENS and tokens != snapshot.tokens
            if changed or resync:
                self._reload_keeping(tokens)
        finally:
            self._lock.release()
        assert self._snapshot is not None  # noqa: S101
        return self._snapshot

    def _tokens(self, now: float) -> tuple[Any, Any]:
        """The cache tokens, or UNKNOWN_TOKENS while the cache is failing (backing off)."""
        if now < self._tokens_retry_at:
            return UNKNOWN_TOKENS
        try:
            tokens = _read_tokens()
        except (redis.RedisError, OSError) as exc:
            first = self._tokens_backoff == 0
            floor = max(float(settings.OFREP_REFRESH_SECONDS), 1.0)
            self._tokens_backoff = min(
                max(self._tokens_backoff * 2, floor), float(settings.OFREP_RESYNC_SECONDS)
            )
            self._tokens_retry_at = time.monotonic() + self._tokens_backoff
            if first:
                logger.warning(
                    "The cache is unreachable (%s): OFREP answers from the snapshot it has, "
                    "reloaded from the database every %s s until the cache answers again",
                    exc,
                    settings.OFREP_RESYNC_SECONDS,
                )
            return UNKNOWN_TOKENS
        if self._tokens_backoff:
            logger.info("The cache answers again: OFREP follows its tokens again")
            self._tokens_backoff = 0.0
            self._tokens_retry_at = 0.0
        return tokens

    def _reload(self, tokens: tuple[Any, Any]) -> None:
        previous = self._snapshot.versions if self._snapshot is not None else None
        self._snapshot = load_snapshot(previous, tokens)
        self._checked_at = time.monotonic()

    def _reload_keeping(self, tokens: tuple[Any, Any]) -> None:
        """Reload; on a database error keep answering from the snapshot we have."""
        try:
            self._reload(tokens)
        except DatabaseError as exc:
            if not self._reload_failing:
                logger.warning(
                    "Could not reload the OFREP snapshot (%s): answering from the previous one",
                    exc,
                )
            self._reload_failing = True
            return
        if self._reload_failing:
            logger.info("The OFREP snapshot reloads again")
            self._reload_failing = False

    def reset(self) -> None:
        """Forget the snapshot (tests; the next request loads a fresh one)."""
        with self._lock:
            self._snapshot = None
            self._checked_at = 0.0
            self._tokens_retry_at = 0.0
            self._tokens_backoff = 0.0
            self._reload_failing = False


holder = SnapshotHolder()


def current() -> Snapshot:
    return holder.get()
