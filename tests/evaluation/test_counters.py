"""Evaluation counts: summed in memory, pushed to Redis, flushed to the database by a task."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
import redis
from django.conf import settings as django_settings
from django.db import OperationalError

from flagdash.evaluation import counters
from flagdash.evaluation.counters import FLUSHING, tally
from flagdash.evaluation.models import (
    ApiKey,
    EnvironmentFetch,
    EvaluationCount,
    FetchKind,
    FlagLastEvaluated,
)
from flagdash.evaluation.selectors import last_evaluated_by_flag, sparklines
from flagdash.evaluation.tasks import evaluation_counts_flush_task
from tests.evaluation.conftest import post

pytestmark = pytest.mark.django_db
ONE = "/ofrep/v1/evaluate/flags/"


def _empty() -> None:
    if django_settings.REDIS_URL:
        client = counters._client(django_settings.REDIS_URL)  # the real one, even if patched
        leftovers = list(client.scan_iter(match="flagdash:evaluation:*"))
        if leftovers:
            client.delete(*leftovers)


@pytest.fixture(autouse=True)
def _empty_buffer():
    _empty()
    yield
    _empty()


def test_requests_write_nothing_until_pushed_and_flushed(api, beta, beta_key):
    for email in ("a@example.com", "b@shop.test", "c@shop.test"):
        post(api, ONE + "new-checkout", {"context": {"email": email}}, beta_key)
    post(api, ONE + "no-such-flag", {}, beta_key)
    assert not EvaluationCount.objects.exists()
    counters.push(tally.take())
    assert not EvaluationCount.objects.exists()  # in Redis now
    assert evaluation_counts_flush_task() == 3
    rows = dict(
        EvaluationCount.objects.filter(environment=beta, flag_key="new-checkout").values_list(
            "variant", "count"
        )
    )
    assert rows == {"off": 1, "on": 2}
    assert FlagLastEvaluated.objects.get(environment=beta, flag_key="new-checkout")
    assert not FlagLastEvaluated.objects.filter(flag_key="no-such-flag").exists()
    assert ApiKey.objects.get().last_used_at is not None


def test_flushes_add_up_and_an_empty_buffer_is_fine(api, beta, beta_key):
    assert evaluation_counts_flush_task() == 0
    for _ in range(2):
        post(api, ONE + "old-flow", {}, beta_key)
        counters.push(tally.take())
        evaluation_counts_flush_task()
    assert EvaluationCount.objects.get(environment=beta, flag_key="old-flow").count == 2


def test_bulk_counts_every_flag_it_evaluated(api, beta, beta_key):
    post(api, "/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "u"}}, beta_key)
    batch = tally.take()
    assert sum(batch.counts.values()) == 6
    counters.store(batch)
    assert EvaluationCount.objects.filter(environment=beta).count() == 6


def test_without_redis_a_push_writes_the_database(settings, beta, served):
    settings.REDIS_URL = ""
    now = dt.datetime(2026, 5, 1, 12, 30, 15, tzinfo=dt.UTC).timestamp()
    tally.add(beta.pk, 0, [("new-checkout", "on"), ("new-checkout", "on")], now)
    counters.push(tally.take())
    row = EvaluationCount.objects.get()
    assert (row.count, row.minute) == (2, dt.datetime(2026, 5, 1, 12, 30, tzinfo=dt.UTC))


def test_last_evaluated_only_moves_forward(beta, served):
    late = dt.datetime(2026, 5, 2, tzinfo=dt.UTC).timestamp()
    early = dt.datetime(2026, 5, 1, tzinfo=dt.UTC).timestamp()
    for moment in (late, early):
        tally.add(beta.pk, 0, [("new-checkout", "on")], moment)
        counters.store(tally.take())
    assert FlagLastEvaluated.objects.get().last_evaluated_at == dt.datetime(
        2026, 5, 2, tzinfo=dt.UTC
    )


def test_sparkline_sums_hours_of_the_last_seven_days(beta, production, served, app):
    now = dt.datetime(2026, 5, 8, 10, 20, tzinfo=dt.UTC)
    for minutes_ago, n in ((0, 3), (5, 2), (60, 4), (60 * 24 * 8, 100)):
        at = (now - dt.timedelta(minutes=minutes_ago)).timestamp()
        tally.add(beta.pk, 0, [("new-checkout", "on")] * n, at)
    counters.store(tally.take())
    lines = sparklines("new-checkout", [beta, production], now=now)
    assert lines[beta.pk].total == 9  # the 8-day-old evaluations are outside the window
    assert lines[beta.pk].hourly[-1] == 5
    assert lines[beta.pk].hourly[-2] == 4
    assert lines[production.pk].total == 0
    assert len(lines[beta.pk].points.split()) == 168
    assert last_evaluated_by_flag(app)["new-checkout"] == now


def test_prune_drops_counts_past_the_retention(beta, served):
    now = dt.datetime(2026, 5, 20, tzinfo=dt.UTC)
    tally.add(beta.pk, 0, [("new-checkout", "on")], (now - dt.timedelta(days=9)).timestamp())
    tally.add(beta.pk, 0, [("new-checkout", "off")], (now - dt.timedelta(days=1)).timestamp())
    counters.store(tally.take())
    assert counters.prune(now) == 1
    assert list(EvaluationCount.objects.values_list("variant", flat=True)) == ["off"]


# --- durability: a failed push or flush loses nothing, counts nothing twice ---------------------


@pytest.fixture
def redis_down(monkeypatch):
    """The counters' client pointed at a port where no Redis listens."""
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    monkeypatch.setattr(counters, "_redis", lambda: dead)
    return dead


def _leftovers():
    client = counters._client(django_settings.REDIS_URL)
    return sorted(k.decode() for k in client.scan_iter(match="flagdash:evaluation:*"))


def test_a_push_that_fails_keeps_its_counts_for_the_next_one(
    api, beta, beta_key, monkeypatch, caplog
):
    real = counters._redis
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    monkeypatch.setattr(counters, "_redis", lambda: dead)
    with caplog.at_level(logging.INFO, logger="flagdash.evaluation.counters"):
        post(api, ONE + "old-flow", {}, beta_key)
        assert tally.push_pending() is False
        post(api, ONE + "old-flow", {}, beta_key)
        assert tally.push_pending() is False
        monkeypatch.setattr(counters, "_redis", real)  # Redis is back
        assert tally.push_pending() is True
    assert evaluation_counts_flush_task() == 2
    assert EvaluationCount.objects.get(environment=beta, flag_key="old-flow").count == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per outage
    assert any("pushed again" in r.getMessage() for r in caplog.records)


def test_counts_waiting_for_a_push_are_bounded(beta, served, redis_down, monkeypatch, caplog):
    monkeypatch.setattr(counters, "MAX_PENDING_COUNTS", 3, raising=False)
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC).timestamp()
    for minute in range(5):  # five count keys
        tally.add(beta.pk, 0, [("new-checkout", "on")], start + 60 * minute)
    with caplog.at_level(logging.WARNING, logger="flagdash.evaluation.counters"):
        assert tally.push_pending() is False
    kept = tally.take()
    assert len(kept.counts) == 3
    assert any("2 evaluations dropped" in r.getMessage() for r in caplog.records)


def test_a_flush_that_fails_after_renaming_is_picked_up_by_the_next_one(
    api, beta, beta_key, monkeypatch
):
    post(api, ONE + "old-flow", {}, beta_key)
    counters.push(tally.take())

    def database_down(batch, **kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(counters, "store", database_down)
    with pytest.raises(OperationalError):
        evaluation_counts_flush_task()
    assert any(FLUSHING in k for k in _leftovers())  # the renamed hash is still in Redis
    monkeypatch.undo()
    post(api, ONE + "old-flow", {}, beta_key)  # a newer evaluation, pushed meanwhile
    counters.push(tally.take())
    assert evaluation_counts_flush_task() == 2
    assert EvaluationCount.objects.get(environment=beta, flag_key="old-flow").count == 2
    assert _leftovers() == []


def test_a_leftover_that_was_already_stored_is_not_counted_twice(api, beta, beta_key, monkeypatch):
    post(api, ONE + "old-flow", {}, beta_key)
    counters.push(tally.take())
    client = counters._redis()

    def lost_connection(*names):
        raise redis.ConnectionError("Connection reset by peer")

    monkeypatch.setattr(client, "delete", lost_connection)  # stored, then Redis went away
    with pytest.raises(redis.ConnectionError):
        evaluation_counts_flush_task()
    monkeypatch.undo()
    assert EvaluationCount.objects.get(environment=beta, flag_key="old-flow").count == 1
    assert any(FLUSHING in k for k in _leftovers())
    assert evaluation_counts_flush_task() == 0
    assert EvaluationCount.objects.get(environment=beta, flag_key="old-flow").count == 1
    assert _leftovers() == []


@pytest.fixture
def process_exit():
    """The atexit handler; the tally's push thread may start again afterwards (tests go on)."""
    yield counters._push_at_exit
    stop = getattr(tally, "_stop", None)
    if stop is not None:
        stop.clear()


def test_process_exit_pushes_what_is_left_to_the_database_when_redis_is_down(
    beta, served, redis_down, process_exit
):
    tally.add(beta.pk, 0, [("new-checkout", "on")] * 3, time.time())
    process_exit()
    assert EvaluationCount.objects.get(environment=beta, flag_key="new-checkout").count == 3


def test_process_exit_pushes_what_is_left_to_redis(beta, served, process_exit):
    tally.add(beta.pk, 0, [("new-checkout", "on")] * 2, time.time())
    process_exit()
    assert evaluation_counts_flush_task() == 2


# --- flagd downloads are fetches, not evaluations ------------------------------------------------


def test_a_flagd_download_records_the_environments_fetch_and_no_evaluation(api, beta, beta_key):
    response = api.get(
        "/ofrep/v1/flagd/flags.json", headers={"Authorization": f"Bearer {beta_key}"}
    )
    assert response.status_code == 200 and len(response.json()["flags"]) == 6
    counters.push(tally.take())
    evaluation_counts_flush_task()
    assert not EvaluationCount.objects.exists()
    assert not FlagLastEvaluated.objects.exists()
    fetch = EnvironmentFetch.objects.get()
    assert (fetch.environment_id, fetch.kind) == (beta.pk, FetchKind.FLAGD)
    assert ApiKey.objects.get().last_used_at is not None  # the key was used


def test_bulk_evaluation_counts_each_flag_once_for_its_environment(api, beta, beta_key):
    post(api, "/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "u"}}, beta_key)
    counters.push(tally.take())
    assert evaluation_counts_flush_task() == 6
    assert set(FlagLastEvaluated.objects.values_list("environment_id", flat=True)) == {beta.pk}
    assert not EnvironmentFetch.objects.exists()
