"""Counting evaluations without a write per request.

Three stages, none of them per request:

1. **In memory** (``tally``): each process adds every evaluation to a dictionary keyed by
   (minute, environment, flag, variant), plus the last time each flag was evaluated, each API
   key was used, and each environment's flag definitions were fetched by a flagd client (not
   an evaluation: see ``api.flagd_export``). A lock-protected dict update costs about a
   microsecond.
2. **Push** (``push``): every ``OFREP_COUNTS_PUSH_SECONDS`` a background thread of each process
   moves its tally into Redis (``HINCRBY`` in one ``MULTI``, so all or nothing) when
   ``REDIS_URL`` is set, or straight into the database without Redis (the one-machine
   `make run`). A push that fails (Redis or the database unreachable) keeps its counts: they
   go back into the tally and leave with the next push. What waits is bounded
   (``MAX_PENDING_COUNTS`` count keys); past it the oldest counts are dropped, with a warning.
   One warning per outage, one line when pushing works again. At process exit (``atexit``)
   the thread is stopped and what is left is pushed (to the database if Redis is down).
3. **Flush** (``flush_redis``, Celery beat every ``OFREP_COUNTS_FLUSH_SECONDS``): the Redis
   hashes are renamed together (atomically, so no increment is lost or counted twice) and added
   to ``EvaluationCount`` / ``FlagLastEvaluated`` / ``ApiKey.last_used_at`` /
   ``EnvironmentFetch`` with one upsert each. The renamed hashes are deleted only after the
   database transaction committed; a flush that failed in between leaves them in Redis, and the
   next flush stores those leftovers first. Each renamed batch has a token recorded in
   ``CountFlush`` in the same transaction, so a leftover that was in fact stored (its delete
   failed) or that two flushes pick up at once is stored once.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import logging
import os
import secrets
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from flagdash.evaluation.models import (
    ApiKey,
    CountFlush,
    EnvironmentFetch,
    EvaluationCount,
    FlagLastEvaluated,
)

logger = logging.getLogger(__name__)

COUNTS_HASH = "flagdash:evaluation:counts"
LAST_HASH = "flagdash:evaluation:last"
KEYS_HASH = "flagdash:evaluation:keys"
FETCH_HASH = "flagdash:evaluation:fetches"
HASHES = (COUNTS_HASH, LAST_HASH, KEYS_HASH, FETCH_HASH)
FLUSHING = ":flushing:"
SEP = "|"
CHUNK = 1000  # rows per INSERT (PostgreSQL takes at most 65,535 parameters)
# Count keys (minute, environment, flag, variant) a process keeps while pushes fail: a few
# hundred bytes each, so at most some tens of megabytes.
MAX_PENDING_COUNTS = 100_000
COUNT_FLUSH_RETENTION = dt.timedelta(days=1)

CountKey = tuple[int, int, str, str]  # (minute epoch, environment id, flag key, variant)


@dataclass
class Batch:
    counts: dict[CountKey, int] = field(default_factory=lambda: defaultdict(int))
    last: dict[tuple[int, str], float] = field(default_factory=dict)  # (env, flag) → epoch
    keys: dict[int, float] = field(default_factory=dict)  # api key id → epoch
    fetches: dict[tuple[int, str], float] = field(default_factory=dict)  # (env, kind) → epoch

    def __bool__(self) -> bool:
        return bool(self.counts or self.last or self.keys or self.fetches)


def _later(target: dict[Any, float], key: Any, at: float) -> None:
    if target.get(key, 0.0) < at:
        target[key] = at


class Tally:
    """This process's evaluations since the last successful push."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batch = Batch()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = 0
        self._failing = False

    def add(
        self, environment_id: int, key_id: int, evaluated: Iterable[tuple[str, str]], now: float
    ) -> None:
        """Record evaluations of (flag key, variant) pairs at ``now`` (epoch seconds)."""
        minute = int(now // 60) * 60
        with self._lock:
            batch = self._batch
            for flag_key, variant in evaluated:
                batch.counts[(minute, environment_id, flag_key, variant)] += 1
                _later(batch.last, (environment_id, flag_key), now)
            _later(batch.keys, key_id, now)
        self._ensure_thread()

    def add_fetch(self, environment_id: int, key_id: int, kind: str, now: float) -> None:
        """Record that a client fetched the environment's flag definitions (no evaluation)."""
        with self._lock:
            _later(self._batch.fetches, (environment_id, kind), now)
            _later(self._batch.keys, key_id, now)
        self._ensure_thread()

    def take(self) -> Batch:
        with self._lock:
            batch, self._batch = self._batch, Batch()
        return batch

    def restore(self, batch: Batch) -> None:
        """Put back a batch that could not be pushed (merged with what arrived since).

        At most ``MAX_PENDING_COUNTS`` count keys are kept: counts of the returned batch that
        do not fit are dropped, with a warning.
        """
        dropped = 0
        with self._lock:
            current = self._batch
            for key, n in batch.counts.items():
                if key in current.counts or len(current.counts) < MAX_PENDING_COUNTS:
                    current.counts[key] += n
                else:
                    dropped += n
            for (env_id, flag_key), at in batch.last.items():
                _later(current.last, (env_id, flag_key), at)
            for key_id, at in batch.keys.items():
                _later(current.keys, key_id, at)
            for fetch, at in batch.fetches.items():
                _later(current.fetches, fetch, at)
        if dropped:
            logger.warning(
                "Evaluation counts could not be pushed for a while: %s evaluations dropped "
                "(more than %s count keys were waiting)",
                dropped,
                MAX_PENDING_COUNTS,
            )

    def push_pending(self) -> bool:
        """Push what was tallied; on failure keep it for the next push. True when pushed."""
        batch = self.take()
        try:
            push(batch)
        except (redis.RedisError, DatabaseError) as exc:
            self.restore(batch)
            if not self._failing:
                logger.warning(
                    "Could not push evaluation counts (%s): they are kept and pushed with the "
                    "next batch",
                    exc,
                )
            self._failing = True
            return False
        if self._failing:
            logger.info("Evaluation counts are pushed again")
            self._failing = False
        return True

    def _ensure_thread(self) -> None:
        interval = settings.OFREP_COUNTS_PUSH_SECONDS
        if interval <= 0 or (self._thread is not None and self._pid == _pid()):
            return
        with self._lock:
            if self._thread is not None and self._pid == _pid():
                return
            if self._stop.is_set():
                return  # the process is exiting
            self._pid = _pid()  # a forked worker starts its own thread
            self._thread = threading.Thread(
                target=self._run, args=(interval,), name="evaluation-counts", daemon=True
            )
            self._thread.start()

    def _run(self, interval: int) -> None:
        while not self._stop.wait(interval):
            try:
                self.push_pending()
            except Exception:  # a bug, not an outage: keep counting; this batch is lost
                logger.exception("could not push evaluation counts")
            finally:
                connection.close()  # this thread's own connection (database mode)

    def stop(self, timeout: float) -> None:
        """Stop this process's push thread, letting a push under way finish (process exit)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and self._pid == _pid() and thread.is_alive():
            thread.join(timeout)


def _pid() -> int:
    return os.getpid()


tally = Tally()


@atexit.register
def _push_at_exit() -> None:
    """What this process tallied and did not push yet: to Redis, else to the database."""
    tally.stop(timeout=2 * settings.REDIS_TIMEOUT_SECONDS + 1)
    batch = tally.take()
    if not batch:
        return
    try:
        push(batch)
        return
    except (redis.RedisError, DatabaseError) as exc:
        logger.warning("Could not push the last evaluation counts at exit (%s)", exc)
    if settings.REDIS_URL:
        try:
            store(batch)  # straight into the database (what a push without Redis does)
            return
        except DatabaseError:
            logger.exception("Could not store the last evaluation counts at exit either")
    logger.error("%s evaluations were not counted at exit", sum(batch.counts.values()))


# --- push: to Redis, or to the database without it ------------------------------------------


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Its pool reconnects by itself after a fork; short timeouts, so a dead Redis costs a push
    # (or a flush) seconds, not forever.
    return redis.Redis.from_url(url, **settings.REDIS_SOCKET_OPTIONS)


def _redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


def push(batch: Batch) -> None:
    """Move one process's batch to the shared buffer (Redis) or to the database.

    Raises ``redis.RedisError`` or ``DatabaseError`` when that fails; nothing of the batch was
    added then (one ``MULTI``, or one transaction).
    """
    if not batch:
        return
    if not settings.REDIS_URL:
        store(batch)
        return
    client = _redis()
    with client.pipeline(transaction=True) as pipe:
        for (minute, env_id, flag_key, variant), n in batch.counts.items():
            pipe.hincrby(COUNTS_HASH, SEP.join((str(minute), str(env_id), flag_key, variant)), n)
        for (env_id, flag_key), at in batch.last.items():
            pipe.hset(LAST_HASH, f"{env_id}{SEP}{flag_key}", repr(at))
        for key_id, at in batch.keys.items():
            pipe.hset(KEYS_HASH, str(key_id), repr(at))
        for (env_id, kind), at in batch.fetches.items():
            pipe.hset(FETCH_HASH, f"{env_id}{SEP}{kind}", repr(at))
        pipe.execute()


def _taken(name: str, token: str) -> str:
    return f"{name}{FLUSHING}{token}"


def flush_redis() -> int:
    """Move what every process pushed to Redis into the database. Returns counted evaluations.

    Leftovers of an earlier flush that failed after renaming are stored first.
    """
    if not settings.REDIS_URL:
        return 0
    client = _redis()
    total = 0
    for token in _leftover_tokens(client):
        logger.info("Storing evaluation counts left in Redis by an earlier flush (%s)", token)
        total += _store_taken(client, token)
    token = secrets.token_hex(8)
    with client.pipeline(transaction=True) as pipe:  # all hashes at once: no flush sees half
        for name in HASHES:
            pipe.rename(name, _taken(name, token))  # later increments start new hashes
        results = pipe.execute(raise_on_error=False)
    renamed = False
    for result in results:
        if isinstance(result, redis.exceptions.ResponseError):
            if "no such key" not in str(result).lower():  # nothing pushed: nothing to rename
                raise result
        else:
            renamed = True
    if renamed:
        total += _store_taken(client, token)
    return total


def _leftover_tokens(client: redis.Redis) -> list[str]:
    tokens = set()
    for name in HASHES:
        for key in client.scan_iter(match=f"{name}{FLUSHING}*", count=200):
            text = key.decode() if isinstance(key, bytes) else str(key)
            tokens.add(text.rsplit(FLUSHING, 1)[1])
    return sorted(tokens)


def _store_taken(client: redis.Redis, token: str) -> int:
    """Store one renamed batch, then delete its hashes. Returns the evaluations it added."""
    names = [_taken(name, token) for name in HASHES]
    with client.pipeline(transaction=True) as pipe:
        for name in names:
            pipe.hgetall(name)
        taken = dict(zip(HASHES, pipe.execute(), strict=True))
    batch = _parse(taken, token)
    stored = store(batch, flush_token=token)  # raises on a database error: hashes stay
    client.delete(*names)
    return sum(batch.counts.values()) if stored else 0


def _parse(taken: dict[str, dict[Any, Any]], token: str) -> Batch:
    batch = Batch()
    bad = 0
    for field_name, value in taken.get(COUNTS_HASH, {}).items():
        try:
            minute, env_id, flag_key, variant = field_name.decode().split(SEP, 3)
            batch.counts[(int(minute), int(env_id), flag_key, variant)] += int(value)
        except ValueError:
            bad += 1
    for field_name, value in taken.get(LAST_HASH, {}).items():
        try:
            env_id, flag_key = field_name.decode().split(SEP, 1)
            _later(batch.last, (int(env_id), flag_key), float(value))
        except ValueError:
            bad += 1
    for field_name, value in taken.get(KEYS_HASH, {}).items():
        try:
            _later(batch.keys, int(field_name), float(value))
        except ValueError:
            bad += 1
    for field_name, value in taken.get(FETCH_HASH, {}).items():
        try:
            env_id, kind = field_name.decode().split(SEP, 1)
            _later(batch.fetches, (int(env_id), kind), float(value))
        except ValueError:
            bad += 1
    if bad:
        logger.warning("Skipped %s unreadable evaluation count fields (flush %s)", bad, token)
    return batch


# --- the database: one upsert per table ---------------------------------------------------------


def _when(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def store(batch: Batch, *, flush_token: str | None = None) -> bool:
    """Add a batch to the tables (counts are summed; last-evaluated times only move forward).

    With ``flush_token`` (a batch renamed in Redis) the token is recorded in the same
    transaction; a token already recorded means the batch was stored before: nothing is added
    and False is returned.
    """
    with transaction.atomic():
        if flush_token is not None and not _claim(flush_token):
            return False
        _store(batch)
    return True


def _claim(token: str) -> bool:
    """Record a flush token; False if it was recorded before (waits for a concurrent one)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {CountFlush._meta.db_table} (token, flushed_at) "  # noqa: S608
            "VALUES (%s, %s) ON CONFLICT (token) DO NOTHING",
            [token, dt.datetime.now(tz=dt.UTC)],
        )
        return bool(cursor.rowcount)


def _store(batch: Batch) -> None:
    env_ids = (
        {e for (_, e, _, _) in batch.counts}
        | {e for (e, _) in batch.last}
        | {e for (e, _) in batch.fetches}
    )
    known = set(_existing_environments(env_ids))  # environments deleted meanwhile: skipped
    counts = [(k, n) for k, n in batch.counts.items() if k[1] in known]
    last = [(k, at) for k, at in batch.last.items() if k[0] in known]
    fetches = [(k, at) for k, at in batch.fetches.items() if k[0] in known]
    table = EvaluationCount._meta.db_table
    last_table = FlagLastEvaluated._meta.db_table
    fetch_table = EnvironmentFetch._meta.db_table
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    with connection.cursor() as cursor:
        for start in range(0, len(counts), CHUNK):
            chunk = counts[start : start + CHUNK]
            params: list[Any] = []
            for (minute, env_id, flag_key, variant), n in chunk:
                params += [env_id, flag_key, variant, _when(minute), n]
            cursor.execute(
                f"INSERT INTO {table} (environment_id, flag_key, variant, minute, count) "  # noqa: S608
                f"VALUES {', '.join(['(%s, %s, %s, %s, %s)'] * len(chunk))} "
                "ON CONFLICT (environment_id, flag_key, variant, minute) "
                f"DO UPDATE SET count = {table}.count + EXCLUDED.count",
                params,
            )
        for start in range(0, len(last), CHUNK):
            rows = last[start : start + CHUNK]
            params = []
            for (env_id, flag_key), at in rows:
                params += [env_id, flag_key, _when(at)]
            cursor.execute(
                f"INSERT INTO {last_table} (environment_id, flag_key, last_evaluated_at) "  # noqa: S608
                f"VALUES {', '.join(['(%s, %s, %s)'] * len(rows))} "
                "ON CONFLICT (environment_id, flag_key) DO UPDATE SET "
                f"last_evaluated_at = {greatest}({last_table}.last_evaluated_at, "
                "EXCLUDED.last_evaluated_at)",
                params,
            )
        if fetches:  # a few rows: one per environment and kind
            params = []
            for (env_id, kind), at in fetches:
                params += [env_id, kind, _when(at)]
            cursor.execute(
                f"INSERT INTO {fetch_table} (environment_id, kind, last_at) "  # noqa: S608
                f"VALUES {', '.join(['(%s, %s, %s)'] * len(fetches))} "
                "ON CONFLICT (environment_id, kind) DO UPDATE SET "
                f"last_at = {greatest}({fetch_table}.last_at, EXCLUDED.last_at)",
                params,
            )
    if batch.keys:
        # Bookkeeping, not audited; at most one write per key per flush.
        for key_id, at in batch.keys.items():
            ApiKey.objects.filter(pk=key_id).exclude(last_used_at__gte=_when(at)).update(
                last_used_at=_when(at)
            )


def _existing_environments(ids: set[int]) -> list[int]:
    from flagdash.flags.models import Environment

    return list(Environment.objects.filter(pk__in=ids).values_list("id", flat=True))


def prune(now: dt.datetime) -> int:
    """Drop per-minute counts older than the retention (the flag page shows 7 days).

    Also forgets flush tokens older than a day (leftovers are retried every flush, long before).
    """
    cutoff = now - dt.timedelta(days=settings.OFREP_COUNTS_RETENTION_DAYS)
    deleted, _ = EvaluationCount.objects.filter(minute__lt=cutoff).delete()
    CountFlush.objects.filter(flushed_at__lt=now - COUNT_FLUSH_RETENTION).delete()
    return deleted
