"""The rollout chart: a pure layout of a deployment's events (and plan) for the SVG template."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from django.template.loader import render_to_string

from flagdash.backends.base import RolloutPlan
from flagdash.deployments.charts import (
    HEIGHT,
    PLOT_BOTTOM,
    PLOT_LEFT,
    PLOT_RIGHT,
    PLOT_TOP,
    WIDTH,
    deployment_chart,
    format_seconds,
    rollout_chart,
)
from flagdash.deployments.models import EventType

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
PLOT_W = WIDTH - PLOT_LEFT - PLOT_RIGHT  # 568
PLOT_H = HEIGHT - PLOT_TOP - PLOT_BOTTOM  # 172


@dataclass
class Ev:
    seconds: float
    type: str
    percentage: float | None = None

    @property
    def occurred_at(self) -> dt.datetime:
        return T0 + dt.timedelta(seconds=self.seconds)


def x(seconds, domain):
    return round(PLOT_LEFT + seconds / domain * PLOT_W, 1)


def y(percentage):
    return round(PLOT_TOP + PLOT_H - percentage / 100 * PLOT_H, 1)


LINEAR = RolloutPlan(240, "linear", 25, 60)  # 25 % a minute over 4 min, 1 min bake


def linear_events(*extra):
    return [
        Ev(0, EventType.STARTED),
        Ev(0, EventType.PERCENTAGE, 25),
        Ev(60, EventType.PERCENTAGE, 50),
        Ev(120, EventType.PERCENTAGE, 75),
        Ev(180, EventType.PERCENTAGE, 100),
        *extra,
    ]


def test_the_step_line_follows_the_recorded_percentages():
    events = linear_events(Ev(240, EventType.BAKE_STARTED), Ev(300, EventType.COMPLETED, 100))
    chart = rollout_chart(events=events, start=T0, end=T0 + dt.timedelta(seconds=300), plan=LINEAR)
    assert chart.domain_seconds == 300
    assert [(p.seconds, p.percentage) for p in chart.steps] == [
        (0, 25),
        (60, 50),
        (120, 75),
        (180, 100),
    ]
    assert [(p.x, p.y) for p in chart.steps] == [
        (x(0, 300), y(25)),
        (x(60, 300), y(50)),
        (x(120, 300), y(75)),
        (x(180, 300), y(100)),
    ]
    assert chart.path.startswith(f"M{PLOT_LEFT} {y(0):g}")
    assert f"H{x(60, 300):g} V{y(50):g}" in chart.path
    assert chart.path.endswith(f"H{x(300, 300):g}")  # held at 100 % until the end
    assert chart.steps[1].label == "50 % at 1 min"


def test_bake_and_completion_are_marked_and_the_bake_is_shaded():
    events = linear_events(Ev(240, EventType.BAKE_STARTED), Ev(300, EventType.COMPLETED, 100))
    chart = rollout_chart(events=events, start=T0, end=T0 + dt.timedelta(seconds=300), plan=LINEAR)
    assert [(m.kind, m.label, m.seconds, m.x) for m in chart.marks] == [
        ("bake_started", "bake", 240, x(240, 300)),
        ("completed", "complete", 300, x(300, 300)),
    ]
    assert chart.bake is not None
    assert (chart.bake.x, chart.bake.start_seconds, chart.bake.end_seconds) == (
        x(240, 300),
        240,
        300,
    )
    assert chart.bake.width == pytest.approx(x(300, 300) - x(240, 300), abs=0.11)
    assert chart.marks[-1].anchor == "end"  # a label at the right edge grows leftwards


def test_a_rollback_is_marked_and_drops_the_line_to_zero():
    events = linear_events(
        Ev(240, EventType.BAKE_STARTED),
        Ev(250, EventType.ROLLBACK_REQUESTED, 100),
        Ev(251, EventType.ROLLBACK_STARTED),
        Ev(255, EventType.ROLLED_BACK, 0),
    )
    chart = rollout_chart(events=events, start=T0, end=T0 + dt.timedelta(seconds=255), plan=LINEAR)
    kinds = [m.kind for m in chart.marks]
    assert kinds == ["bake_started", "rollback_requested", "rollback_started", "rolled_back"]
    assert chart.steps[-1].percentage == 0 and chart.steps[-1].seconds == 255
    assert chart.path.endswith(f"V{y(0):g} H{x(255, 300):g}")
    assert chart.bake is not None and chart.bake.end_seconds == 250 + 1  # until the rollback began
    # labels of marks close together are staggered so they do not overlap
    assert len({m.label_y for m in chart.marks[1:]}) == 3
    assert "Rolled back at 4 min 15 s" in chart.desc


def test_a_running_rollout_shows_the_whole_plan_ahead():
    events = [Ev(0, EventType.STARTED), Ev(0, EventType.PERCENTAGE, 25)]
    chart = rollout_chart(events=events, start=T0, end=T0 + dt.timedelta(seconds=30), plan=LINEAR)
    assert chart.domain_seconds == LINEAR.total_seconds == 300
    assert chart.path.endswith(f"H{x(30, 300):g}")
    assert f"H{x(180, 300):g} V{y(100):g}" in chart.plan_path  # the last planned step
    assert chart.plan_path.endswith(f"H{x(300, 300):g}")


def test_axes_have_ticks_and_labels():
    chart = rollout_chart(events=linear_events(), start=T0, end=T0 + dt.timedelta(seconds=300))
    assert [t.label for t in chart.y_ticks] == ["0 %", "25 %", "50 %", "75 %", "100 %"]
    assert [t.pos for t in chart.y_ticks] == [y(0), y(25), y(50), y(75), y(100)]
    assert [t.label for t in chart.x_ticks] == ["0", "1m", "2m", "3m", "4m", "5m"]
    assert chart.x_ticks[0].pos == PLOT_LEFT and chart.x_ticks[-1].pos == PLOT_LEFT + PLOT_W
    long = rollout_chart(events=[], start=T0, end=T0 + dt.timedelta(hours=2))
    assert len(long.x_ticks) <= 7 and long.x_ticks[1].label == "30m"


def test_an_empty_deployment_draws_only_the_plan():
    chart = rollout_chart(events=[], start=None, end=None, plan=LINEAR, title="Rollout of v3")
    assert chart.empty and chart.path == "" and chart.steps == [] and chart.marks == []
    assert chart.bake is None
    assert chart.plan_path.startswith(f"M{PLOT_LEFT} {y(0):g}")
    assert chart.domain_seconds == 300
    assert chart.desc.startswith("Not started yet. Planned: 25 % at 0 s, 50 % at 1 min")
    assert chart.desc.endswith("then a 1 min bake.")
    bare = rollout_chart(events=[], start=None, end=None)
    assert bare.empty and bare.plan_path == "" and bare.domain_seconds > 0
    assert bare.x_ticks and bare.y_ticks


def test_an_instant_deployment_still_has_a_visible_domain():
    events = [
        Ev(0, EventType.STARTED),
        Ev(0.01, EventType.PERCENTAGE, 100),
        Ev(0.02, EventType.COMPLETED, 100),
    ]
    chart = rollout_chart(
        events=events,
        start=T0,
        end=T0 + dt.timedelta(seconds=0.02),
        plan=RolloutPlan.immediate(),
    )
    assert chart.domain_seconds == 10
    assert [p.percentage for p in chart.steps] == [100]  # completion at 100 % adds no step


def test_the_svg_has_a_title_a_description_and_no_inline_style():
    events = linear_events(Ev(240, EventType.BAKE_STARTED), Ev(300, EventType.COMPLETED, 100))
    chart = rollout_chart(
        events=events,
        start=T0,
        end=T0 + dt.timedelta(seconds=300),
        plan=LINEAR,
        title="Rollout of v3 to Beta",
    )
    svg = render_to_string("deployments/fragments/chart.html", {"chart": chart})
    assert 'role="img"' in svg and 'aria-labelledby="rollout-chart-title rollout-chart-desc"' in svg
    assert '<title id="rollout-chart-title">Rollout of v3 to Beta</title>' in svg
    assert '<desc id="rollout-chart-desc">Share served: 25 % at 0 s' in svg
    assert f'd="{chart.path}"' in svg and f'd="{chart.plan_path}"' in svg
    assert svg.count('class="chart-step"') == 4
    assert 'class="chart-mark mark-bake_started"' in svg and 'class="chart-bake"' in svg
    assert "Time since start" in svg and "Share served</text>" in svg
    assert "style=" not in svg and "<script" not in svg


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (45.4, "45 s"), (60, "1 min"), (245, "4 min 05 s"), (3720, "1 h 02 min")],
)
def test_durations_read_at_a_glance(seconds, text):
    assert format_seconds(seconds) == text


@pytest.mark.django_db
def test_a_queued_deployment_of_the_database_is_an_empty_chart(app, beta, flag, linear):
    from flagdash.deployments import services
    from flagdash.flags import services as flag_services

    version = flag_services.config_version_create(actor=None, environment=beta, message="x")
    d = services.deployment_create(actor=None, environment=beta, version=version, strategy=linear)
    chart = deployment_chart(d, list(d.events.all()), now=T0)
    assert chart.empty and chart.plan_path
    assert chart.title == f"Rollout of v{version.number} to Beta"
