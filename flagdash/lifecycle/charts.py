"""The chart of short-term flags by status over the last 12 weeks, drawn on the server as SVG.

One stacked bar per week (weeks start on Monday). The current week's bar is computed live, so it
always agrees with the counts above it; earlier weeks come from ``StatusSnapshot`` rows that
Celery beat records every day (the last one of a week stands for that week) or that were rebuilt
from deployment history (marked "estimated"). A week without either is drawn as an empty
outline. ``templates/lifecycle/fragments/chart.html`` renders it; colours come from CSS.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from flagdash.flags.models import Application
from flagdash.lifecycle.models import StatusSnapshot

WEEKS = 12
WIDTH = 600
HEIGHT = 190
LEFT, RIGHT, TOP, BOTTOM = 34, 8, 12, 30
STACK = ("active", "unused", "ready", "overdue")  # bottom to top
LABELS = {"overdue": "overdue", "ready": "ready to remove", "unused": "unused", "active": "active"}


def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


@dataclass(frozen=True)
class Segment:
    status: str
    y: float
    height: float
    count: int


@dataclass
class Bar:
    week: dt.date
    x: float
    width: float
    label: str
    segments: list[Segment] = field(default_factory=list)
    total: int = 0
    estimated: bool = False
    missing: bool = False
    current: bool = False

    @property
    def center(self) -> float:
        return round(self.x + self.width / 2, 1)

    @property
    def title(self) -> str:
        when = "this week" if self.current else f"week of {self.week:%Y-%m-%d}"
        if self.missing:
            return f"{when}: no snapshot recorded"
        parts = ", ".join(f"{s.count} {LABELS[s.status]}" for s in reversed(self.segments))
        note = " (estimated from deployment history)" if self.estimated else ""
        return (
            f"{when}: {self.total} short-term flag{'s' if self.total != 1 else ''}"
            + (f" — {parts}" if parts else "")
            + note
        )


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass
class StatusChart:
    bars: list[Bar]
    ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    plot_x: int = LEFT
    plot_y: int = TOP
    plot_width: int = WIDTH - LEFT - RIGHT
    plot_height: int = HEIGHT - TOP - BOTTOM

    @property
    def plot_bottom(self) -> int:
        return self.plot_y + self.plot_height

    @property
    def plot_right(self) -> int:
        return self.plot_x + self.plot_width

    @property
    def any_estimated(self) -> bool:
        return any(b.estimated for b in self.bars)

    @property
    def any_missing(self) -> bool:
        return any(b.missing for b in self.bars)

    @property
    def description(self) -> str:
        return "; ".join(b.title for b in self.bars)


def _nice_max(value: int) -> int:
    """The top of the y axis: four equal steps of 1, 2 or 5 × 10ⁿ, at or above ``value``."""
    raw = max(1, math.ceil(value / 4))
    magnitude = 10 ** (len(str(raw)) - 1)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return 4 * step


def build_chart(
    weeks: list[tuple[dt.date, Mapping[str, int] | None, bool]], current_week: dt.date
) -> StatusChart:
    """``weeks``: (Monday, counts or None, estimated), oldest first."""
    chart = StatusChart(bars=[], ticks=[])
    totals = [sum(c.values()) for _, c, _ in weeks if c]
    top = _nice_max(max(totals, default=0))
    slot = chart.plot_width / max(1, len(weeks))
    width = slot * 0.68
    scale = chart.plot_height / top
    for i, (week, counts, estimated) in enumerate(weeks):
        bar = Bar(
            week=week,
            x=round(chart.plot_x + i * slot + (slot - width) / 2, 1),
            width=round(width, 1),
            label=f"{week:%d %b}".lstrip("0"),
            estimated=estimated,
            missing=counts is None,
            current=week == current_week,
        )
        y = float(chart.plot_bottom)
        for status in STACK:
            n = int((counts or {}).get(status, 0))
            if n <= 0:
                continue
            h = n * scale
            y -= h
            bar.segments.append(Segment(status, round(y, 1), round(h, 1), n))
            bar.total += n
        chart.bars.append(bar)
    for k in range(5):
        value = top * k / 4
        chart.ticks.append(Tick(round(chart.plot_bottom - value * scale, 1), f"{value:g}"))
    return chart


def status_chart(
    application: Application, current: Mapping[str, int], today: dt.date
) -> StatusChart:
    """The last 12 weeks (one query): snapshots, and ``current`` for this week."""
    this_week = monday(today)
    first = this_week - dt.timedelta(weeks=WEEKS - 1)
    snapshots = {
        s.week: s
        for s in StatusSnapshot.objects.filter(
            application=application, week__gte=first, week__lt=this_week
        )
    }
    weeks: list[tuple[dt.date, Mapping[str, int] | None, bool]] = []
    for k in range(WEEKS):
        week = first + dt.timedelta(weeks=k)
        if week == this_week:
            weeks.append((week, current, False))
            continue
        snap = snapshots.get(week)
        if snap is None:
            weeks.append((week, None, False))
        else:
            counts = {
                "overdue": snap.overdue,
                "ready": snap.ready,
                "unused": snap.unused,
                "active": snap.active,
            }
            weeks.append((week, counts, snap.estimated))
    return build_chart(weeks, this_week)
