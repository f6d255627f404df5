"""Weekly snapshots for the chart: recorded now, estimated from history for earlier weeks."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from flagdash.flags.models import Flag
from flagdash.lifecycle import charts, snapshots, tasks
from flagdash.lifecycle.models import StatusSnapshot
from tests.factories import make_flag
from tests.lifecycle.conftest import deploy_at, store_scan

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(app, beta, production):
    """A flag created 10 weeks ago and deployed off everywhere then; another 3 weeks ago."""
    now = timezone.now()
    old = make_flag(app, "old-release", short_term=True)
    Flag.objects.filter(pk=old.pk).update(created_at=now - dt.timedelta(weeks=10))
    deploy_at(beta, now - dt.timedelta(weeks=10))
    deploy_at(production, now - dt.timedelta(weeks=10))
    new = make_flag(app, "new-release", short_term=True)
    Flag.objects.filter(pk=new.pk).update(created_at=now - dt.timedelta(weeks=3))
    store_scan(app, [])
    return app


def test_missing_weeks_are_estimated_from_deployment_history(history):
    now = timezone.now()
    assert snapshots.snapshots_backfill(history, now=now) == 11
    rows = {s.week: s for s in StatusSnapshot.objects.filter(application=history)}
    this_week = charts.monday(timezone.localdate(now))
    assert all(s.estimated for s in rows.values())
    eleven_ago = rows[this_week - dt.timedelta(weeks=11)]
    assert eleven_ago.total == 0  # before either flag existed
    # The week the old flag was deployed (off everywhere): less than 14 days, active
    ten_ago = rows[this_week - dt.timedelta(weeks=10)]
    assert (ten_ago.ready, ten_ago.active) == (0, 1)
    seven_ago = rows[this_week - dt.timedelta(weeks=7)]  # three weeks off everywhere: ready
    assert (seven_ago.ready, seven_ago.active) == (1, 0)
    last_week = rows[this_week - dt.timedelta(weeks=1)]
    # off everywhere for weeks: ready; the new flag was never deployed: active
    assert (last_week.ready, last_week.active, last_week.unused) == (1, 1, 0)
    assert snapshots.snapshots_backfill(history, now=now) == 0  # nothing left to estimate


def test_this_weeks_snapshot_is_recorded_with_every_rule(history):
    snap = snapshots.snapshot_record(history)
    assert (snap.ready, snap.unused, snap.estimated) == (1, 1, False)  # unused: not in the scan
    again = snapshots.snapshot_record(history)
    assert again.pk == snap.pk  # one row per week, overwritten


def test_the_beat_task_records_and_backfills_every_application(history):
    assert tasks.lifecycle_snapshots_task() == 1
    assert StatusSnapshot.objects.filter(application=history).count() == 12


def test_the_chart_marks_estimated_and_missing_weeks(history, viewer_client):
    snapshots.snapshots_backfill(history)
    StatusSnapshot.objects.filter(
        application=history, week=charts.monday(timezone.localdate()) - dt.timedelta(weeks=2)
    ).delete()
    html = viewer_client.get(reverse("short_term", args=["checkout"])).content.decode()
    assert html.count('class="week estimated') == 10
    assert html.count('class="week missing') == 1
    assert 'class="week current"' in html
    assert "faded weeks are estimated from deployment history" in html


def test_the_y_axis_has_nice_steps():
    assert charts._nice_max(0) == 4
    assert charts._nice_max(7) == 8
    assert charts._nice_max(13) == 20
    assert charts._nice_max(300) == 400
