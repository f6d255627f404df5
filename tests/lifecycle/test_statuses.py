"""Status rules at their boundaries (LIFECYCLE_READY_DAYS = 14 by default)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from flagdash.backends.models import BackendConnection, BackendKind
from flagdash.evaluation.models import EnvironmentFetch, FetchKind, FlagLastEvaluated
from flagdash.flags.models import Environment
from flagdash.lifecycle import selectors
from tests.factories import make_flag
from tests.lifecycle.conftest import deploy_at, set_values, store_scan

DAY = dt.timedelta(days=1)


def row_of(app, key, now):
    lifecycle = selectors.short_term_flags(app, now=now)
    return next(r for r in lifecycle.rows if r.flag.key == key)


@pytest.fixture
def on_everywhere(app, beta, production, t0):
    """A short-term flag turned on in beta and production at t0 (nothing else changes)."""
    flag = make_flag(app, "release-x", short_term=True)
    for env in (beta, production):
        set_values(flag, env, enabled=True)
        deploy_at(env, t0)
    return flag


def test_a_flag_is_overdue_from_the_day_after_its_remove_by_date(app, envs):
    today = timezone.localdate()
    due_today = make_flag(app, "due-today", short_term=True, remove_by=today)
    due_yesterday = make_flag(app, "due-yesterday", short_term=True, remove_by=today - DAY)
    now = timezone.now()
    assert row_of(app, due_today.key, now).status != selectors.OVERDUE
    overdue = row_of(app, due_yesterday.key, now)
    assert overdue.status == selectors.OVERDUE
    assert "passed 1 day ago" in overdue.reasons[selectors.OVERDUE]


def test_ready_to_remove_after_14_days_unchanged_everywhere_not_after_13(app, on_everywhere, t0):
    store_scan(app, [("release-x", "a.py", 1)])
    assert row_of(app, "release-x", t0 + 13 * DAY).status == selectors.ACTIVE
    ready = row_of(app, "release-x", t0 + 14 * DAY)
    assert ready.status == selectors.READY
    assert ready.reasons[selectors.READY] == (
        "Serving on in every environment, unchanged for 14 days (at least 14)."
    )
    assert ready.unchanged_days == 14


def test_ready_days_follow_the_setting(app, on_everywhere, t0, settings):
    settings.LIFECYCLE_READY_DAYS = 3
    store_scan(app, [("release-x", "a.py", 1)])
    assert row_of(app, "release-x", t0 + 2 * DAY).status == selectors.ACTIVE
    assert row_of(app, "release-x", t0 + 3 * DAY).status == selectors.READY


def test_a_change_in_one_environment_restarts_the_count(app, on_everywhere, beta, t0):
    store_scan(app, [("release-x", "a.py", 1)])
    set_values(on_everywhere, beta, attribute_values={})  # nothing served changes: no new count
    set_values(on_everywhere, beta, enabled=False)
    deploy_at(beta, t0 + 10 * DAY)
    set_values(on_everywhere, beta, enabled=True)
    deploy_at(beta, t0 + 11 * DAY)
    row = row_of(app, "release-x", t0 + 24 * DAY)
    assert selectors.READY not in row.reasons  # on everywhere again, but only for 13 days
    assert row.unchanged_days == 13
    assert row_of(app, "release-x", t0 + 25 * DAY).status == selectors.READY


def test_a_version_that_changes_other_flags_does_not_restart_the_count(
    app, on_everywhere, beta, t0
):
    other = make_flag(app, "other", short_term=True)
    store_scan(app, [("release-x", "a.py", 1), ("other", "a.py", 2)])
    set_values(other, beta, enabled=True)
    deploy_at(beta, t0 + 10 * DAY)  # a new version of beta, release-x as it was
    assert row_of(app, "release-x", t0 + 14 * DAY).status == selectors.READY


def test_different_values_in_different_environments_are_never_ready(app, beta, production, t0):
    flag = make_flag(app, "half", short_term=True)
    set_values(flag, beta, enabled=True)
    deploy_at(beta, t0)
    deploy_at(production, t0)
    store_scan(app, [("half", "a.py", 1)])
    row = row_of(app, "half", t0 + 60 * DAY)
    assert [e.label for e in row.envs] == ["on", "off"]
    assert selectors.READY not in row.reasons


def test_targeting_rules_are_not_fully_on(app, beta, production, t0):
    flag = make_flag(app, "targeted", short_term=True)
    rule = {
        "conditions": [{"attribute": "country", "operator": "equals", "value": "SV"}],
        "serve": {"variant": "on"},
    }
    for env in (beta, production):
        set_values(flag, env, enabled=True, rules=[rule])
        deploy_at(env, t0)
    store_scan(app, [("targeted", "a.py", 1)])
    row = row_of(app, "targeted", t0 + 60 * DAY)
    assert [e.label for e in row.envs] == ["on · 1 rule", "on · 1 rule"]
    assert selectors.READY not in row.reasons


def test_off_everywhere_is_ready_too(app, beta, production, t0):
    make_flag(app, "abandoned", short_term=True)
    deploy_at(beta, t0)
    deploy_at(production, t0)
    store_scan(app, [("abandoned", "a.py", 1)])
    row = row_of(app, "abandoned", t0 + 14 * DAY)
    assert row.status == selectors.READY
    assert row.reasons[selectors.READY].startswith("Off in every environment")


def test_a_flag_never_deployed_somewhere_is_not_ready(app, beta, production, t0):
    make_flag(app, "beta-only", short_term=True)
    deploy_at(beta, t0)  # production never deployed
    store_scan(app, [("beta-only", "a.py", 1)])
    row = row_of(app, "beta-only", t0 + 60 * DAY)
    assert [e.label for e in row.envs] == ["off", "not deployed"]
    assert selectors.READY not in row.reasons


def test_no_reference_in_the_last_scan_is_unused_and_no_scan_says_nothing(app, envs):
    make_flag(app, "in-code", short_term=True)
    make_flag(app, "not-in-code", short_term=True)
    now = timezone.now()
    assert {r.flag.key: r.status for r in selectors.short_term_flags(app, now=now).rows} == {
        "in-code": selectors.ACTIVE,
        "not-in-code": selectors.ACTIVE,
    }
    store_scan(app, [("in-code", "src/a.py", 3)])
    rows = {r.flag.key: r for r in selectors.short_term_flags(app, now=now).rows}
    assert rows["in-code"].status == selectors.ACTIVE
    assert rows["in-code"].references == 1
    assert rows["not-in-code"].status == selectors.UNUSED
    assert (
        rows["not-in-code"]
        .reasons[selectors.UNUSED]
        .startswith("No reference in the last code scan")
    )


def test_not_evaluated_for_14_days_where_flagdash_serves_it_is_unused_13_is_not(
    app, beta, production, t0
):
    flag = make_flag(app, "quiet", short_term=True)
    set_values(flag, beta, enabled=True)
    deploy_at(beta, t0)
    deploy_at(production, t0)
    store_scan(app, [("quiet", "a.py", 1)])
    now = t0 + 30 * DAY
    FlagLastEvaluated.objects.create(
        environment=beta, flag_key="quiet", last_evaluated_at=now - 13 * DAY
    )
    row = row_of(app, "quiet", now)
    assert row.status == selectors.ACTIVE
    assert row.evaluation == "known"
    FlagLastEvaluated.objects.filter(flag_key="quiet").update(last_evaluated_at=now - 14 * DAY)
    row = row_of(app, "quiet", now)
    assert row.status == selectors.UNUSED
    assert row.reasons[selectors.UNUSED] == "Not evaluated for 14 days (at least 14)."


def test_never_evaluated_counts_from_when_flagdash_started_serving_it(app, beta, production, t0):
    flag = make_flag(app, "silent", short_term=True)
    set_values(flag, beta, enabled=True)
    deploy_at(beta, t0)
    deploy_at(production, t0)
    store_scan(app, [("silent", "a.py", 1)])
    assert row_of(app, "silent", t0 + 13 * DAY).status == selectors.ACTIVE
    row = row_of(app, "silent", t0 + 14 * DAY)
    assert (row.status, row.evaluation) == (selectors.UNUSED, "never")


def serve_from_aws(environment):
    """What the environment serves now comes from AWS AppConfig (the live version is kept:
    this branch has no AWS backend to deploy through)."""
    aws = BackendConnection.objects.create(name="AWS", kind=BackendKind.AWS_APPCONFIG)
    Environment.objects.filter(pk=environment.pk).update(backend=aws)


def test_evaluations_are_unknown_where_only_a_cloud_backend_serves_the_flag(
    app, beta, production, t0
):
    flag = make_flag(app, "cloud-only", short_term=True)
    set_values(flag, production, enabled=True)
    deploy_at(production, t0)  # beta never deployed: only production serves it...
    serve_from_aws(production)  # ...through AWS
    store_scan(app, [("cloud-only", "a.py", 1)])
    row = row_of(app, "cloud-only", t0 + 60 * DAY)
    assert row.evaluation == "unknown"
    assert row.last_evaluated is None
    assert row.evaluation_note == (
        "Served only by Production (AWS AppConfig): flagdash cannot see its evaluations."
    )
    assert row.status == selectors.ACTIVE  # never guessed unused


def test_a_flag_also_served_by_a_cloud_backend_is_never_unused_by_evaluations(
    app, beta, production, t0
):
    flag = make_flag(app, "mixed", short_term=True)
    set_values(flag, beta, enabled=True)
    deploy_at(beta, t0)
    deploy_at(production, t0)
    serve_from_aws(production)
    store_scan(app, [("mixed", "a.py", 1)])
    row = row_of(app, "mixed", t0 + 60 * DAY)  # never evaluated in beta, AWS unknown
    assert row.evaluation == "never"
    assert row.status == selectors.ACTIVE


def test_where_flagd_clients_fetch_the_flags_evaluations_are_unknown_not_never(
    app, beta, production, t0
):
    """flagd clients evaluate by themselves: no OFREP evaluation is no evidence of disuse."""
    flag = make_flag(app, "by-flagd", short_term=True)
    set_values(flag, beta, enabled=True)
    deploy_at(beta, t0)
    deploy_at(production, t0)
    store_scan(app, [("by-flagd", "a.py", 1)])
    now = t0 + 30 * DAY
    assert row_of(app, "by-flagd", now).status == selectors.UNUSED  # nothing else is known
    fetched_at = now - dt.timedelta(hours=3)
    EnvironmentFetch.objects.create(environment=beta, kind=FetchKind.FLAGD, last_at=fetched_at)
    row = row_of(app, "by-flagd", now)
    assert row.status == selectors.ACTIVE
    assert (row.evaluation, row.last_evaluated) == ("unknown", None)
    assert row.flagd_fetched == fetched_at
    assert row.evaluation_note == (
        "No evaluation over OFREP recorded. flagd clients fetch the flags of Beta (last "
        "fetched 3 hours ago) and evaluate them themselves: flagdash cannot see those "
        "evaluations."
    )
    assert (
        row.reasons[selectors.ACTIVE]
        == "In use or changing: 1 reference in code, evaluations unknown."
    )


def test_precedence_is_overdue_then_ready_then_unused(app, beta, production, t0):
    flag = make_flag(app, "everything", short_term=True)
    deploy_at(beta, t0)
    deploy_at(production, t0)
    store_scan(app, [])  # a scan without it: unused
    assert row_of(app, "everything", t0 + 5 * DAY).status == selectors.UNUSED
    ready = row_of(app, "everything", t0 + 14 * DAY)
    assert set(ready.reasons) == {selectors.READY, selectors.UNUSED}
    assert ready.status == selectors.READY
    flag.remove_by = (t0 + 10 * DAY).date()
    flag.save(update_fields=["remove_by"])
    overdue = row_of(app, "everything", t0 + 14 * DAY)
    assert set(overdue.reasons) == {selectors.OVERDUE, selectors.READY, selectors.UNUSED}
    assert overdue.status == selectors.OVERDUE
    assert overdue.explanation.startswith("Remove-by date")
    assert "Also: Off in every environment, unchanged for 14 days" in overdue.explanation
    assert "No reference in the last code scan" in overdue.explanation


def test_a_rollout_under_way_is_not_settled(app, beta, production, t0):
    from flagdash.deployments import services as deployment_services
    from flagdash.flags import services

    flag = make_flag(app, "moving", short_term=True)
    deploy_at(beta, t0)
    deploy_at(production, t0)
    store_scan(app, [("moving", "a.py", 1)])
    set_values(flag, beta, enabled=True)
    version = services.config_version_create(actor=None, environment=beta, message="on")
    deployment_services.deployment_create(actor=None, environment=beta, version=version)
    row = row_of(app, "moving", t0 + 30 * DAY)
    assert row.envs[0].rollout is not None
    assert row.envs[0].label == row.envs[1].label == "off"  # the same value is served...
    assert selectors.READY not in row.reasons  # ...but beta is changing it


def test_a_flag_an_open_deployment_brings_is_being_deployed_not_absent(app, beta, production, t0):
    from flagdash.deployments import services as deployment_services
    from flagdash.flags import services

    deploy_at(beta, t0)  # before the flag exists
    flag = make_flag(app, "arriving", short_term=True)
    set_values(flag, beta, enabled=True)
    version = services.config_version_create(actor=None, environment=beta, message="add")
    deployment_services.deployment_create(actor=None, environment=beta, version=version)
    row = row_of(app, "arriving", t0 + DAY)
    beta_state, production_state = row.envs
    assert beta_state.rollout is not None and beta_state.label == "being deployed"
    assert production_state.rollout is None and production_state.label == "not deployed"
