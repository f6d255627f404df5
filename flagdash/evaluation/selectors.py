"""Reads for pages: API keys, evaluation sparklines and "last evaluated", in fixed queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import Max, QuerySet, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from flagdash.evaluation.models import ApiKey, EvaluationCount, FlagLastEvaluated
from flagdash.flags.models import Application, Environment, FlagSetting

SPARKLINE_DAYS = 7
SPARK_WIDTH = 168  # one unit per hour
SPARK_HEIGHT = 28


def api_keys() -> QuerySet[ApiKey]:
    return ApiKey.objects.select_related("environment__application", "created_by").order_by(
        "environment__application__name",
        "environment__position",
        "environment_id",
        "revoked_at",
        "-created_at",
        "-id",
    )


@dataclass(frozen=True)
class Sparkline:
    """Evaluations per hour over the last 7 days, ready to draw as an SVG polyline."""

    hourly: tuple[int, ...]
    total: int
    peak: int
    start: dt.datetime
    last_evaluated: dt.datetime | None

    @property
    def points(self) -> str:
        if not self.hourly:
            return ""
        top = max(self.peak, 1)
        usable = SPARK_HEIGHT - 2
        return " ".join(
            f"{x},{SPARK_HEIGHT - 1 - round(n / top * usable, 1):g}"
            for x, n in enumerate(self.hourly)
        )

    @property
    def width(self) -> int:
        return SPARK_WIDTH

    @property
    def height(self) -> int:
        return SPARK_HEIGHT


def _hour(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def sparklines(
    flag_key: str, environments: Sequence[Environment], now: dt.datetime | None = None
) -> dict[int, Sparkline]:
    """Per environment: the flag's hourly evaluations over 7 days (two queries in all)."""
    end = _hour(now or timezone.now())
    start = end - dt.timedelta(hours=SPARK_WIDTH - 1)
    ids = [e.pk for e in environments]
    buckets: dict[int, list[int]] = {i: [0] * SPARK_WIDTH for i in ids}
    rows = (
        EvaluationCount.objects.filter(environment_id__in=ids, flag_key=flag_key, minute__gte=start)
        .annotate(hour=TruncHour("minute", tzinfo=dt.UTC))
        .values("environment_id", "hour")
        .annotate(n=Sum("count"))
        .order_by()
    )
    for row in rows:
        index = int((_hour(row["hour"]) - start).total_seconds() // 3600)
        if 0 <= index < SPARK_WIDTH:
            buckets[row["environment_id"]][index] += int(row["n"])
    last = last_evaluated(flag_key, environments)
    return {
        i: Sparkline(
            hourly=tuple(values),
            total=sum(values),
            peak=max(values),
            start=start,
            last_evaluated=last.get(i),
        )
        for i, values in buckets.items()
    }


def last_evaluated(flag_key: str, environments: Iterable[Environment]) -> dict[int, dt.datetime]:
    """When the flag was last evaluated in each environment (one query)."""
    return dict(
        FlagLastEvaluated.objects.filter(
            environment_id__in=[e.pk for e in environments], flag_key=flag_key
        ).values_list("environment_id", "last_evaluated_at")
    )


def last_evaluated_by_flag(application: Application) -> dict[str, dt.datetime]:
    """Per flag key: the last evaluation in any environment of the application (one query).

    A flag missing here was never evaluated through flagdash (or not since tracking began).
    """
    rows = (
        FlagLastEvaluated.objects.filter(environment__application=application)
        .values("flag_key")
        .annotate(at=Max("last_evaluated_at"))
        .order_by()
    )
    return {row["flag_key"]: row["at"] for row in rows}


def rule_lists(application: Application) -> Iterable[list[dict[str, object]]]:
    """The targeting rules of every flag and environment of the application that has some."""
    return (
        FlagSetting.objects.filter(flag__application=application)
        .exclude(rules=[])
        .values_list("rules", flat=True)
        .iterator()
    )
