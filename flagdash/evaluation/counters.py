"""Counting evaluations without a write per request.

Three stages, none of them per request:

1. **In memory** (``tally``): each process adds every evaluation to a dictionary keyed by
   (minute, environment, flag, variant), plus the last time each flag was evaluated and each
   API key was used. A lock-protected dict update costs about a microsecond.
2. **Push** (``push``): every ``OFREP_COUNTS_PUSH_SECONDS`` a background thread of each process
   moves its tally into Redis (``HINCRBY`` in one pipeline) when ``REDIS_URL`` is set, or
   straight into the database without Redis (the one-machine `make run`).
3. **Flush** (``flush_redis``, Celery beat every ``OFREP_COUNTS_FLUSH_SECONDS``): the Redis
   hashes are renamed (atomically, so no increment is lost or counted twice) and added to
   ``EvaluationCount`` / ``FlagLastEvaluated`` / ``ApiKey.last_used_at`` with one upsert each.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import logging
import os
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction

from flagdash.evaluation.models import ApiKey, EvaluationCount, FlagLastEvaluated

logger = logging.getLogger(__name__)

COUNTS_HASH = "flagdash:evaluation:counts"
LAST_HASH = "flagdash:evaluation:last"
KEYS_HASH = "flagdash:evaluation:keys"
SEP = "|"
CHUNK = 1000  # rows per INSERT (PostgreSQL takes at most 65,535 parameters)

CountKey = tuple[int, int, str, str]  # (minute epoch, environment id, flag key, variant)


@dataclass
class Batch:
    counts: dict[CountKey, int] = field(default_factory=lambda: defaultdict(int))
    last: dict[tuple[int, str], float] = field(default_factory=dict)  # (env, flag) → epoch
    keys: dict[int, float] = field(default_factory=dict)  # api key id → epoch

    def __bool__(self) -> bool:
        return bool(self.counts or self.last or self.keys)


class Tally:
    """This process's evaluations since the last push."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batch = Batch()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(
        self, environment_id: int, key_id: int, evaluated: Iterable[tuple[str, str]], now: float
    ) -> None:
        """Record evaluations of (flag key, variant) pairs at ``now`` (epoch seconds)."""
        minute = int(now // 60) * 60
        with self._lock:
            batch = self._batch
            for flag_key, variant in evaluated:
                batch.counts[(minute, environment_id, flag_key, variant)] += 1
                if batch.last.get((environment_id, flag_key), 0.0) < now:
                    batch.last[(environment_id, flag_key)] = now
            if batch.keys.get(key_id, 0.0) < now:
                batch.keys[key_id] = now
        self._ensure_thread()

    def take(self) -> Batch:
        with self._lock:
            batch, self._batch = self._batch, Batch()
        return batch

    def _ensure_thread(self) -> None:
        interval = settings.OFREP_COUNTS_PUSH_SECONDS
        if interval <= 0 or (self._thread is not None and self._pid == _pid()):
            return
        with self._lock:
            if self._thread is not None and self._pid == _pid():
                return
            self._pid = _pid()  # a forked worker starts its own thread
            self._thread = threading.Thread(
                target=self._run, args=(interval,), name="evaluation-counts", daemon=True
            )
            self._thread.start()

    def _run(self, interval: int) -> None:
        while True:
            time.sleep(interval)
            try:
                push(self.take())
            except Exception:  # keep counting; the counts of this batch are lost, and logged
                logger.exception("could not push evaluation counts")
            finally:
                connection.close()  # this thread's own connection (database mode)


def _pid() -> int:
    return os.getpid()


tally = Tally()


@atexit.register
def _push_at_exit() -> None:
    batch = tally.take()
    if batch:
        try:
            push(batch)
        except Exception:
            logger.exception("could not push the last evaluation counts at exit")


# --- push: to Redis, or to the database without it ------------------------------------------


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)  # its pool reconnects by itself after a fork


def _redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


def push(batch: Batch) -> None:
    """Move one process's batch to the shared buffer (Redis) or to the database."""
    if not batch:
        return
    if not settings.REDIS_URL:
        store(batch)
        return
    client = _redis()
    with client.pipeline(transaction=False) as pipe:
        for (minute, env_id, flag_key, variant), n in batch.counts.items():
            pipe.hincrby(COUNTS_HASH, SEP.join((str(minute), str(env_id), flag_key, variant)), n)
        for (env_id, flag_key), at in batch.last.items():
            pipe.hset(LAST_HASH, f"{env_id}{SEP}{flag_key}", repr(at))
        for key_id, at in batch.keys.items():
            pipe.hset(KEYS_HASH, str(key_id), repr(at))
        pipe.execute()


def flush_redis() -> int:
    """Move what every process pushed to Redis into the database. Returns counted evaluations."""
    if not settings.REDIS_URL:
        return 0
    client = _redis()
    suffix = secrets.token_hex(6)
    taken: dict[str, dict[Any, Any]] = {}
    for name in (COUNTS_HASH, LAST_HASH, KEYS_HASH):
        temporary = f"{name}:flushing:{suffix}"
        try:
            client.rename(name, temporary)  # atomic: later increments start a new hash
        except redis.exceptions.ResponseError as exc:  # "no such key": nothing was pushed
            if "no such key" not in str(exc).lower():
                raise
            continue
        taken[name] = client.hgetall(temporary)
        client.delete(temporary)
    batch = Batch()
    for field_name, value in taken.get(COUNTS_HASH, {}).items():
        minute, env_id, flag_key, variant = field_name.decode().split(SEP, 3)
        batch.counts[(int(minute), int(env_id), flag_key, variant)] += int(value)
    for field_name, value in taken.get(LAST_HASH, {}).items():
        env_id, flag_key = field_name.decode().split(SEP, 1)
        batch.last[(int(env_id), flag_key)] = float(value)
    for field_name, value in taken.get(KEYS_HASH, {}).items():
        batch.keys[int(field_name)] = float(value)
    store(batch)
    return sum(batch.counts.values())


# --- the database: one upsert per table ---------------------------------------------------------


def _when(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


@transaction.atomic
def store(batch: Batch) -> None:
    """Add a batch to the tables (counts are summed; last-evaluated times only move forward)."""
    env_ids = {e for (_, e, _, _) in batch.counts} | {e for (e, _) in batch.last}
    known = set(_existing_environments(env_ids))  # environments deleted meanwhile: skipped
    counts = [(k, n) for k, n in batch.counts.items() if k[1] in known]
    last = [(k, at) for k, at in batch.last.items() if k[0] in known]
    table = EvaluationCount._meta.db_table
    last_table = FlagLastEvaluated._meta.db_table
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
    """Drop per-minute counts older than the retention (the flag page shows 7 days)."""
    cutoff = now - dt.timedelta(days=settings.OFREP_COUNTS_RETENTION_DAYS)
    deleted, _ = EvaluationCount.objects.filter(minute__lt=cutoff).delete()
    return deleted
