"""Weekly counts of short-term flags per status, for the chart.

- **Recorded**: Celery beat runs ``snapshot_record`` every day; it stores the current counts as
  this week's row, so the last run of a week stands for that week. These use every rule.
- **Estimated**: ``snapshots_backfill`` rebuilds weeks that have no row (before flagdash ran
  beat, or while it was down) by replaying completed deployments up to the end of each week.
  History tells what was served and since when, so ``overdue`` and ``ready`` are as they were
  (with the flags' current short-term marks and remove-by dates); past code scans and
  evaluations are not kept, so ``unused`` cannot be told: those flags count as active. The chart
  marks such weeks as estimated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils import timezone

from flagdash.flags import documents
from flagdash.flags.models import Application, Environment, Flag
from flagdash.lifecycle import selectors
from flagdash.lifecycle.charts import WEEKS, monday
from flagdash.lifecycle.models import StatusSnapshot
from flagdash.lifecycle.served import Timeline, completed_deployments


def snapshot_record(application: Application, *, now: dt.datetime | None = None) -> StatusSnapshot:
    """Store the application's current counts as this week's snapshot."""
    now = now or timezone.now()
    counts = selectors.short_term_flags(application, now=now).counts()
    snapshot, _ = StatusSnapshot.objects.update_or_create(
        application=application,
        week=monday(timezone.localdate(now)),
        defaults={**counts, "estimated": False, "recorded_at": now},
    )
    return snapshot


def _week_end(week: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(week + dt.timedelta(weeks=1), dt.time.min))


def _estimate(
    at: dt.datetime,
    flags: Sequence[Mapping[str, Any]],
    born: Mapping[int, dt.datetime],
    timeline: Timeline,
    days: int,
) -> dict[str, int]:
    counts = {"overdue": 0, "ready": 0, "unused": 0, "active": 0}
    last_day = (at - dt.timedelta(seconds=1)).date()
    envs = [env_id for env_id, when in born.items() if when < at]
    for flag in flags:
        if flag["created_at"] >= at or (flag["archived_at"] and flag["archived_at"] < at):
            continue
        if flag["remove_by"] is not None and flag["remove_by"] < last_day:
            counts["overdue"] += 1
            continue
        states = [timeline.states.get((env_id, flag["key"])) for env_id in envs]
        if envs and all(s is not None for s in states):
            uniforms = {s.uniform for s in states if s is not None}
            since = max(s.since for s in states if s is not None)
            if len(uniforms) == 1 and "" not in uniforms and at - since >= dt.timedelta(days=days):
                counts["ready"] += 1
                continue
        counts["active"] += 1
    return counts


def snapshots_backfill(
    application: Application, *, now: dt.datetime | None = None, weeks: int = WEEKS
) -> int:
    """Estimate the weeks of the last ``weeks`` (this one excluded) that have no snapshot.
    Returns how many rows it added. Reads each deployed version once, in order."""
    now = now or timezone.now()
    this_week = monday(timezone.localdate(now))
    wanted = [this_week - dt.timedelta(weeks=k) for k in range(weeks - 1, 0, -1)]
    have = set(
        StatusSnapshot.objects.filter(application=application, week__in=wanted).values_list(
            "week", flat=True
        )
    )
    missing = [w for w in wanted if w not in have]
    if not missing:
        return 0
    environments = list(Environment.objects.filter(application=application))
    flags = list(
        Flag.objects.filter(application=application, short_term=True).values(
            "key", "created_at", "remove_by", "archived_at"
        )
    )
    days = selectors.ready_days()
    timeline = Timeline()
    cuts = [(w, _week_end(w)) for w in missing]
    results: dict[dt.date, dict[str, int]] = {}
    history = (
        completed_deployments([e.pk for e in environments])
        .filter(finished_at__lt=cuts[-1][1])
        .values_list("environment_id", "finished_at", "version__document")
        .iterator(chunk_size=50)
    )
    # An environment existed from its creation, or from its first deployment if that is earlier
    # (imported or restored data).
    born = {e.pk: e.created_at for e in environments}
    i = 0
    for env_id, finished_at, text in history:
        while i < len(cuts) and cuts[i][1] <= finished_at:
            results[cuts[i][0]] = _estimate(cuts[i][1], flags, born, timeline, days)
            i += 1
        timeline.apply(env_id, documents.load(text), finished_at)
        born[env_id] = min(born[env_id], finished_at)
    for week, at in cuts[i:]:
        results[week] = _estimate(at, flags, born, timeline, days)
    StatusSnapshot.objects.bulk_create(
        [
            StatusSnapshot(
                application=application, week=week, estimated=True, recorded_at=now, **counts
            )
            for week, counts in results.items()
        ],
        ignore_conflicts=True,
    )
    return len(results)
