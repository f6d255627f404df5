"""Evaluation counts: summed in memory, pushed to Redis, flushed to the database by a task."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings as django_settings

from flagdash.evaluation import counters
from flagdash.evaluation.counters import tally
from flagdash.evaluation.models import ApiKey, EvaluationCount, FlagLastEvaluated
from flagdash.evaluation.selectors import last_evaluated_by_flag, sparklines
from flagdash.evaluation.tasks import evaluation_counts_flush_task
from tests.evaluation.conftest import post

pytestmark = pytest.mark.django_db
ONE = "/ofrep/v1/evaluate/flags/"


@pytest.fixture(autouse=True)
def _empty_buffer():
    if django_settings.REDIS_URL:
        counters._redis().delete(counters.COUNTS_HASH, counters.LAST_HASH, counters.KEYS_HASH)
    yield
    if django_settings.REDIS_URL:
        counters._redis().delete(counters.COUNTS_HASH, counters.LAST_HASH, counters.KEYS_HASH)


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
