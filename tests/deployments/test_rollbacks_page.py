"""The rollbacks page and the recent-rollback banner on the home page (the flag list)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from flagdash.deployments import services
from flagdash.deployments.models import (
    Deployment,
    DeploymentKind,
    DeploymentState,
    RollbackTrigger,
)
from flagdash.flags import services as flag_services
from tests.deployments.conftest import reload, run_due
from tests.deployments.test_views import (
    complete_deployment,
    deploying,
    first_version,
    new_version,
    run_out,
)
from tests.factories import make_flag

pytestmark = pytest.mark.django_db


def entries(html):
    return re.findall(
        r'<article class="panel rollback-entry" id="rollback-(\d+)".*?</article>', html, re.S
    )


def entry(html, d):
    found = re.search(
        rf'<article class="panel rollback-entry" id="rollback-{d.pk}".*?</article>', html, re.S
    )
    assert found, f"no entry for #{d.pk}"
    return found.group(0)


def test_an_empty_page_says_so(viewer_client, app, beta):
    html = viewer_client.get(reverse("rollbacks", args=[app.key])).content.decode()
    assert "No rollbacks" in html and entries(html) == []


def test_both_kinds_are_listed_newest_first_with_versions_trigger_reason_and_diff(
    clock, editor, viewer_client, app, beta, flag, linear
):
    # 1. a rollout stopped by a person
    stopped = deploying(clock, beta, flag, linear)  # v1 live, v2 at 25 %
    clock.tick(30)
    services.deployment_rollback(actor=editor, deployment=stopped, reason="checkout errors")
    run_due(clock)
    stopped = reload(stopped)
    assert stopped.state == DeploymentState.ROLLED_BACK
    # 2. a completed deployment (a new flag) restored by an alarm
    make_flag(app, "new-banner")
    bad_version = flag_services.config_version_create(actor=None, environment=beta, message="b")
    bad = complete_deployment(clock, beta, bad_version, linear)  # v3 live
    clock.tick(90)
    restore = services.deployment_rollback(
        actor=None,
        deployment=bad,
        reason="5xx above 2 %",
        trigger=RollbackTrigger.ALARM,
        alarm_name="checkout-5xx",
    )
    run_due(clock)
    restore = reload(restore)
    assert restore.kind == DeploymentKind.RESTORE and restore.state == DeploymentState.COMPLETE

    html = viewer_client.get(reverse("rollbacks", args=[app.key])).content.decode()
    assert entries(html) == [str(restore.pk), str(stopped.pk)]  # newest first

    first = entry(html, restore)
    assert "Beta" in first
    assert f'<span class="version-bad">v{bad.version.number}</span>' in first
    assert f'<span class="version-restored">v{restore.version.number}</span>' in first
    assert "alarm</span> checkout-5xx" in first and "5xx above 2 %" in first
    assert f'replacing <a href="{reverse("deployment_detail", args=[app.key, bad.pk])}"' in first
    live_for = re.search(r"<dt>Bad version live for</dt><dd>(.*?)</dd>", first).group(1)
    assert re.fullmatch(r"\d+ min( \d\d s)?", live_for), live_for  # the rollout, bake, then 90 s
    diff = re.search(
        r'<details class="event rollback-diff">.*?</details>\s*</article>', first, re.S
    )
    assert diff and "new-banner" in diff.group(0) and "removed" in diff.group(0)  # collapsed
    # the first rollback set the flag's working state back, so the later version lacks it
    assert flag.key not in diff.group(0)

    second = entry(html, stopped)
    assert f'<span class="version-bad">v{stopped.version.number}</span>' in second
    assert f'<span class="version-restored">v{stopped.previous_version.number}</span>' in second
    assert "editor" in second and "checkout errors" in second
    assert "Rollout <a" in second and "stopped" in second
    assert flag.key in second


def test_the_time_a_bad_rollout_was_live_runs_from_its_start_to_its_rollback(
    clock, viewer_client, app, beta, flag, linear
):
    d = deploying(clock, beta, flag, linear)
    clock.tick(125)
    services.deployment_rollback(actor=None, deployment=d, reason="slow", trigger="alarm")
    run_due(clock)
    d = reload(d)
    assert (d.finished_at - d.started_at).total_seconds() == pytest.approx(125, abs=2)
    html = viewer_client.get(reverse("rollbacks", args=[app.key])).content.decode()
    assert re.search(r"Bad version live for</dt><dd>2 min 0\d s</dd>", entry(html, d))


def test_a_rollback_in_progress_counts_the_time_so_far(
    clock, viewer_client, app, beta, flag, linear
):
    d = deploying(clock, beta, flag, linear)
    services.deployment_rollback(actor=None, deployment=d, reason="x", trigger="alarm")
    html = viewer_client.get(reverse("rollbacks", args=[app.key])).content.decode()
    assert "so far" in entry(html, d)


def test_the_page_filters_by_environment(
    clock, viewer_client, htmx, app, beta, production, flag, linear
):
    in_beta = deploying(clock, beta, flag, linear)
    services.deployment_rollback(actor=None, deployment=in_beta, reason="b", trigger="alarm")
    in_prod = deploying(clock, production, flag, linear)
    services.deployment_rollback(actor=None, deployment=in_prod, reason="p", trigger="alarm")
    response = viewer_client.get(
        reverse("rollbacks", args=[app.key]) + "?env=production", headers=htmx
    )
    html = response.content.decode()
    assert "<html" not in html and html.lstrip().startswith('<div id="results">')
    assert entries(html) == [str(in_prod.pk)]


@pytest.mark.parametrize("count", [4, 90])
def test_the_page_runs_a_fixed_number_of_queries(
    count, clock, viewer_client, app, beta, flag, linear, django_assert_max_num_queries
):
    base = complete_deployment(clock, beta, first_version(beta), linear)
    bad = complete_deployment(clock, beta, new_version(beta, flag), linear)
    now = timezone.now()
    rows = []
    for n in range(count):
        restore = n % 2 == 0
        rows.append(
            Deployment(
                environment=beta,
                version=base.version if restore else bad.version,
                previous_version=bad.version if restore else base.version,
                strategy=linear,
                plan=linear.snapshot(),
                kind=DeploymentKind.RESTORE if restore else DeploymentKind.DEPLOY,
                restores=bad if restore else None,
                state=DeploymentState.COMPLETE if restore else DeploymentState.ROLLED_BACK,
                backend_kind="local",
                created_at=now - dt.timedelta(minutes=n),
                started_at=now - dt.timedelta(minutes=n),
                finished_at=now - dt.timedelta(minutes=n) + dt.timedelta(seconds=30),
                rollback_trigger=RollbackTrigger.ALARM,
                alarm_name=f"alarm-{n}",
                rollback_reason=f"reason {n}",
            )
        )
    Deployment.objects.bulk_create(rows)
    page = reverse("rollbacks", args=[app.key])
    viewer_client.get(page)
    with django_assert_max_num_queries(8):
        response = viewer_client.get(page)
    html = response.content.decode()
    assert len(entries(html)) == min(count, 20)
    if count > 20:
        assert "Page 1 of" in html
        with django_assert_max_num_queries(8):
            second = viewer_client.get(page + "?page=2").content.decode()
        assert len(entries(second)) == 20


# --- the banner on the home page -------------------------------------------------------------


def banner(html):
    found = re.search(r'<div class="alert alert-warning rollback-banner".*?</div>', html, re.S)
    return found.group(0) if found else None


def test_the_flag_list_flags_the_most_recent_rollback(
    clock, editor, viewer_client, app, beta, flag, linear
):
    d = deploying(clock, beta, flag, linear)
    services.deployment_rollback(
        actor=None, deployment=d, reason="errors", trigger="alarm", alarm_name="checkout-5xx"
    )
    run_due(clock)
    html = viewer_client.get(reverse("flag_list", args=[app.key])).content.decode()
    text = banner(html)
    assert text is not None
    assert "Recent rollback in Beta" in text
    assert f"v{d.version.number} → v{d.previous_version.number}" in text
    assert "alarm checkout-5xx" in text and "just now" in text
    assert f'href="{reverse("rollbacks", args=[app.key])}#rollback-{d.pk}"' in text


def test_the_banner_shows_only_the_newest_and_only_for_a_week(
    clock, editor, viewer_client, app, beta, flag, linear
):
    html = viewer_client.get(reverse("flag_list", args=[app.key])).content.decode()
    assert banner(html) is None
    older = deploying(clock, beta, flag, linear)
    services.deployment_rollback(actor=editor, deployment=older, reason="one")
    run_due(clock)
    other = make_flag(app, "other-flag")
    newer = complete_deployment(clock, beta, new_version(beta, other), linear)
    restore = services.deployment_rollback(actor=editor, deployment=newer, reason="two")
    run_out(clock, 1)
    text = banner(viewer_client.get(reverse("flag_list", args=[app.key])).content.decode())
    assert f"#rollback-{restore.pk}" in text and "by editor" in text
    week_ago = timezone.now() - dt.timedelta(days=7, minutes=1)
    Deployment.objects.filter(pk=restore.pk).update(created_at=week_ago)
    Deployment.objects.filter(pk=older.pk).update(rollback_requested_at=week_ago)
    html = viewer_client.get(reverse("flag_list", args=[app.key])).content.decode()
    assert banner(html) is None
    # the htmx fragment of the list (filters, pages) does not repeat it
    assert (
        banner(
            viewer_client.get(
                reverse("flag_list", args=[app.key]), headers={"HX-Request": "true"}
            ).content.decode()
        )
        is None
    )
