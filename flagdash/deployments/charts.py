"""The rollout chart: a deployment's share served over time, drawn on the server as SVG.

``rollout_chart`` is a pure function of the event log (and the planned schedule): it returns a
``RolloutChart`` holding ready-made coordinates that ``deployments/fragments/chart.html`` turns
into SVG. No JavaScript, no inline styles: colours come from CSS classes.

x is the time since the rollout started, y the share of targets served the new version
(0–100 %). The solid step line follows the recorded percentage changes; the dashed line is the
strategy's plan; vertical marks show when the bake started, the deployment completed, a rollback
was requested, started and finished, or the deployment failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from flagdash.backends.base import RolloutPlan
from flagdash.deployments.models import Deployment, EventType

WIDTH = 640
HEIGHT = 260
PLOT_LEFT = 56
PLOT_RIGHT = 16
PLOT_TOP = 44
PLOT_BOTTOM = 44
MIN_DOMAIN_SECONDS = 10.0
NICE_INTERVALS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip
MAX_X_TICKS = 6
LABEL_ROWS = 3  # mark labels above the plot, staggered so that close marks stay readable
LABEL_CHAR_WIDTH = 6.5  # about one bold 11px character

# Events that change the line (they carry the share served after them).
LINE_EVENTS = (EventType.PERCENTAGE, EventType.COMPLETED, EventType.ROLLED_BACK)
MARK_LABELS = {
    EventType.BAKE_STARTED: "bake",
    EventType.COMPLETED: "complete",
    EventType.ROLLBACK_REQUESTED: "rollback requested",
    EventType.ROLLBACK_STARTED: "rollback started",
    EventType.ROLLED_BACK: "rolled back",
    EventType.FAILED: "failed",
}
BAKE_ENDS = (
    EventType.COMPLETED,
    EventType.ROLLBACK_STARTED,
    EventType.ROLLED_BACK,
    EventType.FAILED,
)


class ChartEvent(Protocol):
    """What the chart reads from a DeploymentEvent (tests pass plain objects)."""

    @property
    def occurred_at(self) -> dt.datetime: ...

    @property
    def type(self) -> str: ...

    @property
    def percentage(self) -> float | None: ...


@dataclass(frozen=True)
class Tick:
    pos: float  # x for the time axis, y for the percentage axis
    label: str


@dataclass(frozen=True)
class Point:
    seconds: float
    percentage: float
    x: float
    y: float

    @property
    def label(self) -> str:
        return f"{format_percentage(self.percentage)} at {format_seconds(self.seconds)}"


@dataclass(frozen=True)
class Mark:
    kind: str  # an EventType value
    label: str
    seconds: float
    x: float
    label_y: float
    anchor: str  # text-anchor: "start" or "end"

    @property
    def title(self) -> str:
        return f"{self.label} at {format_seconds(self.seconds)}"

    @property
    def line_top(self) -> float:
        return self.label_y + 4


@dataclass(frozen=True)
class Band:
    x: float
    width: float
    start_seconds: float
    end_seconds: float


@dataclass(frozen=True)
class RolloutChart:
    title: str
    desc: str
    domain_seconds: float
    steps: list[Point] = field(default_factory=list)
    path: str = ""  # the recorded share, an SVG path
    plan_path: str = ""  # the strategy's schedule, an SVG path
    marks: list[Mark] = field(default_factory=list)
    bake: Band | None = None
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    plot_x: float = PLOT_LEFT
    plot_y: float = PLOT_TOP
    plot_width: float = WIDTH - PLOT_LEFT - PLOT_RIGHT
    plot_height: float = HEIGHT - PLOT_TOP - PLOT_BOTTOM

    @property
    def empty(self) -> bool:
        return not self.path

    @property
    def plot_right(self) -> float:
        return self.plot_x + self.plot_width

    @property
    def plot_bottom(self) -> float:
        return self.plot_y + self.plot_height

    @property
    def y_tick_x(self) -> float:
        return self.plot_x - 6

    @property
    def x_label_y(self) -> float:
        return self.plot_bottom + 36

    @property
    def x_label_x(self) -> float:
        return self.plot_x + self.plot_width / 2

    @property
    def y_label_x(self) -> float:
        return 14.0

    @property
    def y_label_y(self) -> float:
        return self.plot_y + self.plot_height / 2


# --- formatting ------------------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    """A duration a person reads at a glance: "0 s", "45 s", "4 min 05 s", "1 h 02 min"."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min" if secs == 0 else f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" if minutes == 0 else f"{hours} h {minutes:02d} min"


def format_percentage(value: float) -> str:
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} %"


def _tick_label(seconds: float) -> str:
    total = round(seconds)
    if total == 0:
        return "0"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)


def _num(value: float) -> str:
    """A coordinate for SVG: at most one decimal, never a locale's comma."""
    return f"{value:.1f}".removesuffix(".0")


# --- the chart -------------------------------------------------------------------------------


def _interval(domain: float) -> float:
    for step in NICE_INTERVALS:
        if domain / step <= MAX_X_TICKS:
            return float(step)
    return float(NICE_INTERVALS[-1] * (int(domain / NICE_INTERVALS[-1] / MAX_X_TICKS) + 1))


def rollout_chart(
    *,
    events: Sequence[ChartEvent],
    start: dt.datetime | None,
    end: dt.datetime | None,
    plan: RolloutPlan | None = None,
    title: str = "Rollout",
) -> RolloutChart:
    """Lay out the chart of one rollout.

    ``start`` is when the rollout started (None: not yet, only the plan is drawn); ``end`` is the
    right edge of what happened (the last event of a finished deployment, or now).
    """
    elapsed = 0.0
    if start is not None and end is not None:
        elapsed = max(0.0, (end - start).total_seconds())
    planned = float(plan.total_seconds) if plan is not None else 0.0
    domain = max(elapsed, MIN_DOMAIN_SECONDS)
    if start is None or elapsed < planned:
        domain = max(domain, planned)

    plot_w = float(WIDTH - PLOT_LEFT - PLOT_RIGHT)
    plot_h = float(HEIGHT - PLOT_TOP - PLOT_BOTTOM)

    def x(seconds: float) -> float:
        return round(PLOT_LEFT + min(max(seconds, 0.0), domain) / domain * plot_w, 1)

    def y(percentage: float) -> float:
        return round(PLOT_TOP + plot_h - min(max(percentage, 0.0), 100.0) / 100 * plot_h, 1)

    y_ticks = [Tick(y(p), format_percentage(p)) for p in (0, 25, 50, 75, 100)]
    interval = _interval(domain)
    x_ticks = []
    t = 0.0
    while t <= domain + 1e-9:
        x_ticks.append(Tick(x(t), _tick_label(t)))
        t += interval

    plan_path = ""
    if plan is not None:
        parts = [f"M{_num(x(0))} {_num(y(0))}"]
        for at, pct in plan.steps():
            if at > domain:
                break
            parts.append(f"H{_num(x(at))} V{_num(y(pct))}")
        parts.append(f"H{_num(x(min(planned, domain)))}")
        plan_path = " ".join(parts)

    if start is None:
        desc = "Not started yet."
        if plan is not None:
            desc += " " + _plan_text(plan)
        return RolloutChart(
            title=title,
            desc=desc,
            domain_seconds=domain,
            plan_path=plan_path,
            x_ticks=x_ticks,
            y_ticks=y_ticks,
        )

    def seconds_of(event: ChartEvent) -> float:
        return max(0.0, (event.occurred_at - start).total_seconds())

    ordered = sorted(events, key=lambda e: e.occurred_at)
    steps: list[Point] = []
    current = 0.0
    parts = [f"M{_num(x(0))} {_num(y(0))}"]
    for event in ordered:
        if event.type not in LINE_EVENTS or event.percentage is None:
            continue
        at = seconds_of(event)
        pct = float(event.percentage)
        if pct == current and event.type != EventType.PERCENTAGE:
            continue
        parts.append(f"H{_num(x(at))} V{_num(y(pct))}")
        steps.append(Point(round(at, 3), pct, x(at), y(pct)))
        current = pct
    parts.append(f"H{_num(x(elapsed))}")

    marks: list[Mark] = []
    row_ends = [float("-inf")] * LABEL_ROWS
    bake_start: float | None = None
    bake_end: float | None = None
    for event in ordered:
        label = MARK_LABELS.get(EventType(event.type)) if event.type in EventType.values else None
        if label is None:
            continue
        at = seconds_of(event)
        if event.type == EventType.BAKE_STARTED and bake_start is None:
            bake_start = at
        elif event.type in BAKE_ENDS and bake_start is not None and bake_end is None:
            bake_end = at
        mx = x(at)
        anchor = "end" if mx > PLOT_LEFT + plot_w * 0.7 else "start"
        width = len(label) * LABEL_CHAR_WIDTH + 6
        left, right = (mx, mx + width) if anchor == "start" else (mx - width, mx)
        # The first label row where this label does not overlap the last one placed there.
        free = [r for r, end in enumerate(row_ends) if end <= left]
        row = free[0] if free else min(range(LABEL_ROWS), key=row_ends.__getitem__)
        row_ends[row] = right
        marks.append(
            Mark(
                kind=event.type,
                label=label,
                seconds=round(at, 3),
                x=mx,
                label_y=PLOT_TOP - 30 + row * 11,
                anchor=anchor,
            )
        )
    bake = None
    if bake_start is not None:
        stop = elapsed if bake_end is None else bake_end
        bake = Band(
            x=x(bake_start),
            width=round(max(0.0, x(stop) - x(bake_start)), 1),
            start_seconds=bake_start,
            end_seconds=stop,
        )

    return RolloutChart(
        title=title,
        desc=_describe(steps, marks, elapsed),
        domain_seconds=domain,
        steps=steps,
        path=" ".join(parts),
        plan_path=plan_path,
        marks=marks,
        bake=bake,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
    )


def _plan_text(plan: RolloutPlan) -> str:
    steps = ", ".join(
        f"{format_percentage(pct)} at {format_seconds(at)}" for at, pct in plan.steps()[:20]
    )
    bake = (
        f", then a {format_seconds(plan.final_bake_seconds)} bake"
        if plan.final_bake_seconds
        else ""
    )
    return f"Planned: {steps}{bake}."


def _describe(steps: Sequence[Point], marks: Sequence[Mark], elapsed: float) -> str:
    if steps:
        shown = ", ".join(p.label for p in steps[:20])
        more = f" and {len(steps) - 20} more steps" if len(steps) > 20 else ""
        text = f"Share served: {shown}{more}."
    else:
        text = "No share served yet."
    if marks:
        text += " " + "; ".join(m.title.capitalize() for m in marks) + "."
    return f"{text} {format_seconds(elapsed)} since the start."


def deployment_chart(
    deployment: Deployment, events: Sequence[ChartEvent], *, now: dt.datetime
) -> RolloutChart:
    """The chart of one deployment from its (already loaded) events."""
    started = next((e for e in events if e.type == EventType.STARTED), None)
    start = started.occurred_at if started is not None else deployment.started_at
    if deployment.is_terminal:
        times = [e.occurred_at for e in events]
        end = max(times) if times else (deployment.finished_at or now)
    else:
        end = now
    try:
        plan: RolloutPlan | None = deployment.rollout_plan()
    except (KeyError, TypeError, ValueError):
        plan = None
    version = getattr(deployment.version, "number", "?")
    environment = getattr(deployment.environment, "name", "")
    title = f"Rollout of v{version}" + (f" to {environment}" if environment else "")
    return rollout_chart(events=events, start=start, end=end, plan=plan, title=title)
